//! What the GPU kernels read besides the data: a table of the grids' shapes and offsets, where
//! each MLP's parameters and activations start, and the layout of each invocation's scratch
//! (`shaders/render.wgsl`, header). Each layer's widths and offsets follow from these and the
//! decoder's shape, as `decoder::Mlp` lays them out.

use super::decoder::Layout;
use super::{GridList, NOISE_TAG, OP, Renderer};
use crate::buffer::Float;
use crate::{Error, Result};

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
    /// The gradient of `o_raw` (render.wgsl keeps it here between split dispatches).
    pub go: u32,
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
            go: (enc + lay.encoding_len()) as u32,
            per_slot: enc + lay.encoding_len() + 1,
        }
    }
}

/// The parameter block of render.wgsl and render.ptx (the same words in both).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    pub rays: u32,
    pub samples: u32,
    pub samples_inf: u32,
    pub flags: u32,
    pub gain: f32,
    pub dai: f32,
    pub sigma: f32,
    pub dtype: u32,
    pub seed: [u32; 2],
    pub stream: [u32; 2],
    pub ngrids: u32,
    pub ncolor: u32,
    pub c: u32,
    pub cc: u32,
    pub batch: u32,
    pub k: u32,
    pub e: u32,
    pub slots: u32,
    pub params_at: [u32; 3],
    pub plen: u32,
    pub lt: u32,
    pub lo: u32,
    pub lc: u32,
    pub sc_f: u32,
    pub sc_fc: u32,
    pub sc_ga: u32,
    pub sc_gb: u32,
    pub sc_gh: u32,
    pub sc_c: u32,
    pub sc_enc: u32,
    pub unused: u32,
    pub sc_go: u32,
    pub acts_at: [u32; 3],
    pub hidden: u32,
    pub cout: u32,
    /// render.wgsl: the first ray, the samples `j0 .. j1` and the steps `d0 .. d1` of each
    /// (its header, "Steps") a dispatch runs; `pass` 0 or 1 of the backward.
    pub ray0: u32,
    pub j0: u32,
    pub j1: u32,
    pub pass: u32,
    pub d0: u32,
    pub d1: u32,
    pub pad: u32,
}

impl Params {
    /// The block for `rays` rays (with or without an `encoding`) and `slots` threads
    /// (invocations) over grids of type `T`; refuses sizes whose indices would pass u32
    /// (`backend` names the backend in errors).
    pub fn new<T: Float>(
        re: &Renderer,
        lay: &Layout,
        t: &Tables,
        rays: usize,
        encoding: bool,
        slots: usize,
        backend: &str,
    ) -> Result<Params> {
        let o = &re.opts;
        let mut flags = 0;
        for (on, bit) in [
            (o.contract, 1),
            (o.mask_out_of_bounds, 2),
            (o.noise.is_some(), 4),
            (re.color.is_some(), 8),
            (encoding, F_ENC),
        ] {
            if on {
                flags |= bit;
            }
        }
        let noise = o.noise.unwrap_or(super::OpacityNoise {
            sigma: 0.0,
            seed: 0,
            stream: 0,
        });
        let limit = |what: &str, n: usize| {
            u32::try_from(n).map_err(|_| Error::LimitExceeded {
                what: format!("{OP} on {backend}: {what}"),
                requested: n as u64,
                max: u64::from(u32::MAX),
            })
        };
        let total = re.grids.len() + re.color.as_ref().map_or(0, |g| g.len());
        limit("grid elements", total)?;
        limit(
            "rays x samples",
            rays.saturating_mul(o.samples + o.samples_inf),
        )?;
        limit("scratch elements", t.per_slot * slots)?;
        // The shader indexes features and encodings per ray in u32.
        let per_ray = lay.color_channels.max(lay.encoding_len()).max(4);
        limit(
            "rays x (color channels or encoding width)",
            rays.saturating_mul(per_ray),
        )?;
        Ok(Params {
            rays: limit("rays", rays)?,
            samples: o.samples as u32,
            samples_inf: o.samples_inf as u32,
            flags,
            gain: o.gain,
            dai: o.disparity_at_inf,
            sigma: noise.sigma,
            dtype: T::DTYPE.kernel_code(),
            seed: [noise.seed as u32, (noise.seed >> 32) as u32],
            stream: [
                (NOISE_TAG ^ noise.stream) as u32,
                ((NOISE_TAG ^ noise.stream) >> 32) as u32,
            ],
            ngrids: re.grids.shapes().len() as u32,
            ncolor: re.color.as_ref().map_or(0, |g| g.shapes().len()) as u32,
            c: re.grids.channels() as u32,
            cc: re.color.as_ref().map_or(0, |g| g.channels()) as u32,
            batch: re.grids.batch() as u32,
            k: lay.color_channels as u32,
            e: lay.encoding_len() as u32,
            slots: slots as u32,
            params_at: t.params_at,
            plen: lay.len as u32,
            lt: lay.trunk.layers() as u32,
            lo: lay.opacity.layers() as u32,
            lc: lay.color.layers() as u32,
            sc_f: t.f,
            sc_fc: t.fc,
            sc_ga: t.ga,
            sc_gb: t.gb,
            sc_gh: t.gh,
            sc_c: t.c,
            sc_enc: t.enc,
            unused: 0,
            sc_go: t.go,
            acts_at: t.acts_at,
            hidden: re.decoder.hidden as u32,
            cout: lay.color.output() as u32,
            ray0: 0,
            j0: 0,
            j1: 0,
            pass: 0,
            d0: 0,
            d1: u32::MAX,
            pad: 0,
        })
    }
}

/// The flag bit of a call whose rays carry an encoding.
const F_ENC: u32 = 16;

/// The error a kernel's status word stands for: bit 1 a batch index out of range, bit 2 a
/// non-finite or reversed ray (the kernels give such rays NaN outputs and no gradient).
pub(crate) fn check_status(op: &'static str, bits: u32, batch: usize) -> Result<()> {
    if bits & 1 != 0 {
        return Err(Error::InvalidArgument {
            op,
            what: format!(
                "rays.batch holds an index out of range for grids of batch {batch} (found on the device)"
            ),
        });
    }
    if bits & 2 != 0 {
        return Err(Error::InvalidArgument {
            op,
            what: "a ray's near and far must be finite with near <= far, and its origin and \
                   direction finite (found on the device)"
                .into(),
        });
    }
    Ok(())
}
