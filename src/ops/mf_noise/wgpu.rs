//! wgpu glue of the MF noise generators (`shaders/mf_noise.wgsl`): one invocation per u32 word
//! of the gradient, one dispatch per window of whole state blocks that fits a binding, all
//! windows of a step in one submission.

use super::fourier::{Chunk, Pass};
use super::state::State;
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
    col0: u32,
    sdtype: u32,
}

pub(super) fn step<T: Float>(
    mech: &Mechanism,
    a: &StepArgs,
    grad: &mut Buffer<T>,
    state: &State,
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
        Mechanism::Table { steps } => {
            p.taps = *steps as u32;
            3
        }
    };
    p.block = a.block as u32;
    p.sdtype = state.dtype().kernel_code();
    let vectors = mech.state_vectors();
    let elem = T::DTYPE.size();
    // Whole blocks per window: the gradient window and its state must each fit one binding.
    let room = (dev.chunk_bytes() as usize).saturating_sub(512);
    let per_block = (a.block * elem).max(a.block * state.dtype().size() * vectors);
    let blocks = (room / per_block).max(1);
    let span = blocks * a.block;
    let Storage::Wgpu(gs) = &grad.storage else {
        return Err(super::internal("a wgpu step with buffers elsewhere"));
    };
    let windows: Vec<(usize, usize)> = (0..a.len)
        .step_by(span)
        .map(|first| (first, span.min(a.len - first)))
        .collect();
    let params_list: Vec<Params> = windows
        .iter()
        .map(|&(first, count)| Params {
            len: count as u32,
            index: split_u64(a.offset + first as u64),
            ..p
        })
        .collect();
    let mut work = Vec::with_capacity(windows.len());
    for (&(first, count), q) in windows.iter().zip(&params_list) {
        let state_range = if vectors == 0 {
            state.range(0, 1)?.at(2)
        } else {
            let blk0 = first / a.block;
            let nblk = count.div_ceil(a.block);
            state
                .range(blk0 * vectors * a.block, nblk * vectors * a.block)?
                .at(2)
        };
        let words = match T::DTYPE {
            DType::F32 => count,
            _ => count.div_ceil(2),
        };
        work.push(Dispatch {
            params: bytemuck::bytes_of(q),
            buffers: vec![
                gs.range(first, count, elem).at(1),
                state_range,
                bind_whole(params, 3, OP, "the coefficients")?,
            ],
            invocations: words as u64,
        });
    }
    dev.dispatch("mf_noise", "mfn_step", &work)
}

/// The parameters every Fourier build kernel of one chunk reads.
fn chunk_params(c: &Chunk, seed: u64) -> Params {
    Params {
        len: c.cols as u32,
        taps: c.big as u32,
        row: c.count as u32,
        index: split_u64(c.index),
        seed: split_u64(seed),
        tag_hi: (STREAM_TAG >> 32) as u32,
        t: c.steps as u32,
        block: c.block as u32,
        col0: c.col0 as u32,
        ..Params::default()
    }
}

/// One kernel of a Fourier table build over chunk `c` (see `shaders/mf_noise.wgsl`).
pub(super) fn fourier(pass: Pass<'_>, c: &Chunk, seed: u64, spec: &Buffer<f32>) -> Result<()> {
    let Storage::Wgpu(sp) = &spec.storage else {
        return Err(super::internal(
            "a wgpu Fourier build with the spectrum elsewhere",
        ));
    };
    let mut p = chunk_params(c, seed);
    let mut buffers = vec![bind_whole(spec, 4, OP, "the Fourier spectrum")?];
    let mut invocations = (c.big * c.cols) as u64;
    match pass {
        Pass::Gaussians => {}
        Pass::Root(root) => buffers.push(bind_whole(root, 5, OP, "the root")?),
        Pass::Diff(state) => {
            // The chunk's whole block: one binding by the choice of the block size.
            let elems = c.steps * c.block;
            buffers.push(state.range(c.blk * elems, elems)?.at(2));
            p.sdtype = state.dtype().kernel_code();
            invocations = (c.steps * c.count) as u64;
        }
    }
    sp.dev.dispatch(
        "mf_noise",
        pass.entry(),
        &[Dispatch {
            params: bytemuck::bytes_of(&p),
            buffers,
            invocations,
        }],
    )
}
