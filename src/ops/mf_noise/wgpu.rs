//! wgpu glue of the MF noise generators (`shaders/mf_noise.wgsl`): one dispatch per step, one
//! invocation per u32 word of the gradient. Buffers are bound whole (a clear error past one
//! binding: 32 M f32 coordinates, or a state of that many elements, at lavapipe's 128 MiB).

use super::{Mechanism, STREAM_TAG, StepArgs};
use crate::Result;
use crate::backend::wgpu::{Dispatch, bind_whole};
use crate::buffer::{Buffer, DType, Float, Storage};

const OP: &str = "mf_noise";

/// `Params` of mf_noise.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    taps: u32,
    row: u32,
    dtype: u32,
    index: [u32; 2],
    seed: [u32; 2],
    tag_hi: u32,
    t: u32,
    nu: f32,
    sigma: f32,
    kind: u32,
    pad: [u32; 3],
}

pub(super) fn step<T: Float>(
    mech: &Mechanism,
    a: &StepArgs,
    grad: &mut Buffer<T>,
    state: &Buffer<f32>,
    params: &Buffer<f32>,
) -> Result<()> {
    let Storage::Wgpu(s) = &grad.storage else {
        return Err(super::internal("a wgpu step with the gradient elsewhere"));
    };
    let dev = s.dev.clone();
    let mut p = Params {
        len: a.len as u32,
        dtype: T::DTYPE.kernel_code(),
        index: [a.offset as u32, (a.offset >> 32) as u32],
        seed: [a.seed as u32, (a.seed >> 32) as u32],
        tag_hi: (STREAM_TAG >> 32) as u32,
        t: a.t as u32,
        sigma: a.sigma,
        ..Params::default()
    };
    p.kind = match mech {
        Mechanism::Fir { weights, dense } => {
            let (row, taps) = if *dense {
                (a.t as usize * a.n, a.t as usize + 1)
            } else {
                (0, weights.len().min(a.t as usize + 1))
            };
            p.row = row as u32;
            p.taps = taps as u32;
            0
        }
        Mechanism::Band { c, nu } => {
            p.taps = c.len() as u32;
            p.nu = nu[a.t as usize];
            1
        }
        Mechanism::Blt { theta, .. } => {
            p.taps = theta.len() as u32;
            2
        }
    };
    let words = match T::DTYPE {
        DType::F32 => a.len,
        _ => a.len.div_ceil(2),
    };
    let work = [Dispatch {
        params: bytemuck::bytes_of(&p),
        buffers: vec![
            bind_whole(grad, 1, OP, "the gradient")?,
            bind_whole(state, 2, OP, "the state")?,
            bind_whole(params, 3, OP, "the coefficients")?,
        ],
        invocations: words as u64,
    }];
    dev.dispatch("mf_noise", "mfn_step", &work)
}
