//! What the GPU kernels read besides the data: a table of the grids' shapes and offsets, where
//! each MLP's parameters and activations start, and the layout of each invocation's scratch
//! (`shaders/render.wgsl`, header). Each layer's widths and offsets follow from these and the
//! decoder's shape, as `decoder::Mlp` lays them out.

use super::GridList;
use super::decoder::Layout;

/// The grid table (D, H, W, element offset per grid, the color list after the grid list) and
/// the scratch layout (offsets in f32 elements of one invocation's scratch).
pub(crate) struct Tables {
    pub words: Vec<u32>,
    /// Where each MLP's parameters start in `mlp_params` (trunk, opacity, color).
    pub params_at: [u32; 3],
    /// Where each MLP's activations start in scratch: its input, then each layer's output.
    pub acts_at: [u32; 3],
    pub f: u32,
    pub fc: u32,
    pub ga: u32,
    pub gb: u32,
    pub gh: u32,
    pub c: u32,
    pub enc: u32,
    /// Four words the kernels may use for per-ray state.
    pub state: u32,
    /// f32 elements of scratch per invocation.
    pub per_slot: usize,
}

impl Tables {
    pub fn new(grids: &GridList, color: Option<&GridList>, lay: &Layout) -> Tables {
        let mut words = Vec::new();
        for list in std::iter::once(grids).chain(color) {
            for (i, s) in list.shapes().iter().enumerate() {
                words.extend([s[1], s[2], s[3], list.offset(i)].map(|x| x as u32));
            }
        }
        let c = grids.channels();
        let cc = color.map_or(0, GridList::channels);
        let mlps = [&lay.trunk, &lay.opacity, &lay.color];
        let mut at = c + cc;
        let mut acts_at = [0u32; 3];
        for (slot, m) in mlps.iter().enumerate() {
            acts_at[slot] = at as u32;
            at += m.dims.iter().sum::<usize>();
        }
        let params_at = mlps.map(|m| m.w.first().copied().unwrap_or(0) as u32);
        let wmax = mlps
            .iter()
            .flat_map(|m| m.dims.iter().copied())
            .chain([c, cc])
            .max()
            .unwrap_or(1);
        let ga = at;
        let gb = ga + wmax;
        let gh = gb + wmax;
        let col = gh + wmax;
        let enc = col + lay.color.output();
        let state = enc + lay.encoding_len();
        Tables {
            words,
            params_at,
            acts_at,
            f: 0,
            fc: c as u32,
            ga: ga as u32,
            gb: gb as u32,
            gh: gh as u32,
            c: col as u32,
            enc: enc as u32,
            state: state as u32,
            per_slot: state + 4,
        }
    }
}
