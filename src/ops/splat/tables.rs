//! What the GPU kernels read besides the data (`shaders/splat.wgsl`, `kernels/splat.ptx`): the
//! grid table and the parameter block, the same words on both backends.

use super::{OP, Splatter};
use crate::buffer::DType;
use crate::{Error, Result};

/// The splat kernels' parameter block (the same words in splat.wgsl and splat.ptx).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    pub rays: u32,
    pub samples: u32,
    pub samples_inf: u32,
    pub flags: u32,
    pub dai: f32,
    pub ngrids: u32,
    pub c: u32,
    pub batch: u32,
    pub ray0: u32,
    pub nr: u32,
    pub j0: u32,
    pub nj: u32,
    pub len: u32,
    pub first: u32,
    pub item0: u32,
    pub count: u32,
    pub slots: u32,
    pub cin: u32,
    pub ngin: u32,
    pub dtype: u32,
    pub layers: u32,
    pub plen: u32,
    pub act_out: u32,
    pub sc_ga: u32,
    pub sc_gb: u32,
    pub gin_at: u32,
    pub lt_at: u32,
    pub log_terms: u32,
    /// splat.wgsl's `splat_fw` and `splat_mlp_bw`: the steps `d0 .. d1` of each item or
    /// sample a dispatch runs (the shader's header, "Steps").
    pub d0: u32,
    pub d1: u32,
    pub pad: [u32; 2],
}

pub(crate) const CONTRACT: u32 = 1;
pub(crate) const MASK: u32 = 2;
pub(crate) const WEIGHTS_ONLY: u32 = 4;
pub(crate) const MLP: u32 = 8;
pub(crate) const ENCODING: u32 = 16;
pub(crate) const FIXED: u32 = 32;

/// Everything a launch needs besides the buffers.
pub(crate) struct Tables {
    /// `[D, H, W, element offset, cell offset]` per output grid.
    pub words: Vec<u32>,
    /// The block with the per-dispatch fields (`ray0` to `first`) zero.
    pub params: Params,
    /// Cells of the whole output list (the weights' length).
    pub cells: usize,
    /// f32 of scratch per invocation of the MLP splatter (0 without one).
    pub per_slot: usize,
}

impl Tables {
    /// Refuses lists and ray counts whose indices would pass u32 (`backend` names the backend);
    /// `dtype` is the MLP splatter's input grids' storage type.
    pub fn new(s: &Splatter, rays: usize, dtype: DType, backend: &'static str) -> Result<Tables> {
        let out = &s.out;
        let too_big = |what: &str, n: usize| Error::LimitExceeded {
            what: format!("{OP} on {backend}: {what}"),
            requested: n as u64,
            max: u32::MAX as u64,
        };
        let c = out.channels();
        if out.len() > u32::MAX as usize {
            return Err(too_big("elements of the output grids", out.len()));
        }
        let widest = c.max(3).max(s.encoding_len());
        if rays.saturating_mul(widest) > u32::MAX as usize {
            return Err(too_big("rays x channels", rays.saturating_mul(widest)));
        }
        let items = rays.saturating_mul(s.opts.samples + s.opts.samples_inf);
        if items > u32::MAX as usize {
            return Err(too_big("rays x samples", items));
        }
        let mut words = Vec::with_capacity(5 * out.shapes().len());
        for (i, sh) in out.shapes().iter().enumerate() {
            words.extend([sh[1], sh[2], sh[3], out.offset(i), out.offset(i) / c].map(|x| x as u32));
        }
        let gin_at = words.len();
        let (mut lt_at, mut per_slot, mut act_out, mut wmax, mut plen) = (gin_at, 0, 0, 0, 0);
        let mut layers = 0;
        if let Some(m) = &s.mlp {
            if m.input.len() > u32::MAX as usize {
                return Err(too_big("elements of the input grids", m.input.len()));
            }
            for (i, sh) in m.input.shapes().iter().enumerate() {
                words.extend([sh[1], sh[2], sh[3], m.input.offset(i)].map(|x| x as u32));
            }
            lt_at = words.len();
            let mut at = m.mlp.input();
            for l in 0..m.mlp.layers() {
                let (n_in, n_out) = (m.mlp.dims[l], m.mlp.dims[l + 1]);
                words
                    .extend([n_in, n_out, m.mlp.w[l], m.mlp.b[l], at - n_in, at].map(|x| x as u32));
                act_out = at;
                at += n_out;
            }
            wmax = m.mlp.dims.iter().copied().max().unwrap_or(1);
            per_slot = at + 2 * wmax;
            plen = s.params_len();
            layers = m.mlp.layers();
        }
        let o = &s.opts;
        let params = Params {
            rays: rays as u32,
            samples: o.samples as u32,
            samples_inf: o.samples_inf as u32,
            flags: if o.contract { CONTRACT } else { 0 }
                | if o.mask_out_of_bounds { MASK } else { 0 },
            dai: o.disparity_at_inf,
            ngrids: out.shapes().len() as u32,
            c: c as u32,
            batch: out.batch() as u32,
            ray0: 0,
            nr: 0,
            j0: 0,
            nj: 0,
            len: out.len() as u32,
            first: 0,
            item0: 0,
            count: 0,
            slots: 0,
            cin: s.mlp.as_ref().map_or(0, |m| m.input.channels()) as u32,
            ngin: s.mlp.as_ref().map_or(0, |m| m.input.shapes().len()) as u32,
            dtype: dtype.kernel_code(),
            layers: layers as u32,
            plen: plen as u32,
            act_out: act_out as u32,
            sc_ga: (per_slot - 2 * wmax) as u32,
            sc_gb: (per_slot - wmax) as u32,
            gin_at: gin_at as u32,
            lt_at: lt_at as u32,
            // Terms per cell at most: one per (ray, sample); the fixed point's headroom.
            log_terms: (usize::BITS - items.leading_zeros()),
            d0: 0,
            d1: u32::MAX,
            pad: [0; 2],
        };
        Ok(Tables {
            words,
            params,
            cells: out.len() / c,
            per_slot,
        })
    }
}

/// The error a raised status bit stands for (render's bits).
pub(crate) fn check_status(status: u32, batch: usize) -> Result<()> {
    crate::ops::render::tables::check_status(OP, status, batch)
}
