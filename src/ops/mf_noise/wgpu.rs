//! wgpu glue of the MF noise generators (`shaders/mf_noise.wgsl`): one invocation per u32 word
//! of the gradient, one dispatch per window of whole state blocks that fits a binding, all
//! windows of a step in one submission.

use super::{Mechanism, STREAM_TAG, StepArgs};
use crate::Result;
use crate::backend::wgpu::{Dispatch, bind_whole, split_u64};
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
    block: u32,
    pad: [u32; 2],
}

pub(super) fn step<T: Float>(
    mech: &Mechanism,
    a: &StepArgs,
    grad: &mut Buffer<T>,
    state: &Buffer<f32>,
    params: &Buffer<f32>,
) -> Result<()> {
    let Storage::Wgpu(g) = &grad.storage else {
        return Err(super::internal("a wgpu step with the gradient elsewhere"));
    };
    let dev = g.dev.clone();
    let mut p = Params {
        len: a.len as u32,
        dtype: T::DTYPE.kernel_code(),
        index: split_u64(a.offset),
        seed: split_u64(a.seed),
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
        Mechanism::Table => 3,
    };
    p.block = a.block as u32;
    let vectors = mech.state_vectors();
    let elem = T::DTYPE.size();
    // Whole blocks per window: the gradient window and its state must each fit one binding.
    let room = (dev.chunk_bytes() as usize).saturating_sub(512);
    let per_block = (a.block * elem).max(a.block * 4 * vectors);
    let blocks = (room / per_block).max(1);
    let span = blocks * a.block;
    let (Storage::Wgpu(gs), Storage::Wgpu(ss), Storage::Wgpu(ps)) =
        (&grad.storage, &state.storage, &params.storage)
    else {
        return Err(super::internal("a wgpu step with buffers elsewhere"));
    };
    let windows: Vec<(usize, usize)> = (0..a.len)
        .step_by(span)
        .map(|first| (first, span.min(a.len - first)))
        .collect();
    let params_list: Vec<Params> = windows
        .iter()
        .map(|&(first, count)| {
            let index = a.offset + first as u64;
            let row = match mech {
                Mechanism::Table => ((a.t as usize * a.len + first) % 64) as u32,
                _ => p.row,
            };
            Params {
                len: count as u32,
                index: split_u64(index),
                row,
                ..p
            }
        })
        .collect();
    let mut work = Vec::with_capacity(windows.len());
    for (&(first, count), q) in windows.iter().zip(&params_list) {
        let state_range = if vectors == 0 {
            bind_whole(state, 2, OP, "the state")?
        } else {
            let blk0 = first / a.block;
            let nblk = count.div_ceil(a.block);
            ss.range(blk0 * vectors * a.block, nblk * vectors * a.block, 4)
                .at(2)
        };
        let words = match T::DTYPE {
            DType::F32 => count,
            _ => count.div_ceil(2),
        };
        // A table binds the window of the step's row; the others their whole coefficients.
        let coef = match mech {
            Mechanism::Table => {
                // Storage offsets must be aligned: bind from the 64-word boundary below.
                let at = a.t as usize * a.len + first;
                ps.range(at / 64 * 64, at % 64 + count, 4).at(3)
            }
            _ => bind_whole(params, 3, OP, "the coefficients")?,
        };
        work.push(Dispatch {
            params: bytemuck::bytes_of(q),
            buffers: vec![gs.range(first, count, elem).at(1), state_range, coef],
            invocations: words as u64,
        });
    }
    dev.dispatch("mf_noise", "mfn_step", &work)
}
