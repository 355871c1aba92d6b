//! What the GPU kernels read besides the data (`shaders/splat.wgsl`, `kernels/splat.ptx`): the
//! grid table and the parameter block, the same words on both backends.

use super::{OP, Splatter};
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
    pub pad: [u32; 2],
}

pub(crate) const CONTRACT: u32 = 1;
pub(crate) const MASK: u32 = 2;
pub(crate) const WEIGHTS_ONLY: u32 = 4;

/// Everything a launch needs besides the buffers.
pub(crate) struct Tables {
    /// `[D, H, W, element offset, cell offset]` per output grid.
    pub words: Vec<u32>,
    /// The block with the per-dispatch fields (`ray0` to `first`) zero.
    pub params: Params,
    /// Cells of the whole output list (the weights' length).
    pub cells: usize,
}

impl Tables {
    /// Refuses lists and ray counts whose indices would pass u32 (`backend` names the backend).
    pub fn new(s: &Splatter, rays: usize, backend: &'static str) -> Result<Tables> {
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
        if rays.saturating_mul(c.max(3)) > u32::MAX as usize {
            return Err(too_big("rays x channels", rays.saturating_mul(c.max(3))));
        }
        let mut words = Vec::with_capacity(5 * out.shapes().len());
        for (i, sh) in out.shapes().iter().enumerate() {
            words.extend([sh[1], sh[2], sh[3], out.offset(i), out.offset(i) / c].map(|x| x as u32));
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
            pad: [0; 2],
        };
        Ok(Tables {
            words,
            params,
            cells: out.len() / c,
        })
    }
}

/// The error a raised status bit stands for (render's bits).
pub(crate) fn check_status(status: u32, batch: usize) -> Result<()> {
    crate::ops::render::tables::check_status(OP, status, batch)
}
