//! PTX glue of the MF noise generators (`kernels/mf_noise.ptx`), shared by CUDA and the PTX
//! emulator: one launch per step, one thread per coordinate.

use super::fourier::{Chunk, Pass};
use super::state::State;
use super::{Mechanism, STREAM_TAG, StepArgs};
use crate::Result;
use crate::backend::ptx::{KernelArg, PtxDevice, ptr_of};
use crate::buffer::{Buffer, Float};

const OP: &str = "mf_noise";

pub(super) fn step<T: Float>(
    dev: &PtxDevice,
    mech: &Mechanism,
    a: &StepArgs,
    grad: &mut Buffer<T>,
    state: &State,
    params: &Buffer<f32>,
) -> Result<()> {
    let len = a.len as u64;
    let g = ptr_of(OP, grad, 0, a.len)?;
    // The arguments every generator entry starts with.
    let head = || {
        vec![
            g,
            KernelArg::U64(len),
            KernelArg::U64(a.offset),
            KernelArg::U64(a.seed),
            KernelArg::U64(STREAM_TAG),
            KernelArg::U64(a.t),
        ]
    };
    let dtype = KernelArg::U32(T::DTYPE.kernel_code());
    let sigma = KernelArg::F32(a.sigma);
    let state_arg = state.ptr(0, state.len())?;
    let sdtype = KernelArg::U32(state.dtype().kernel_code());
    let block = KernelArg::U64(a.block as u64);
    let (entry, args) = match mech {
        Mechanism::Fir { weights, dense } => {
            let (row, taps) = if *dense {
                (a.t as usize * a.n, a.t as usize + 1)
            } else {
                (0, weights.len().min(a.t as usize + 1))
            };
            let mut args = head();
            args.extend([
                ptr_of(OP, params, row, taps)?,
                KernelArg::U32(taps as u32),
                sigma,
                dtype,
            ]);
            ("mfn_fir", args)
        }
        Mechanism::Band { c, nu } => {
            let mut args = head();
            args.extend([
                ptr_of(OP, params, 0, c.len())?,
                KernelArg::U32(c.len() as u32),
                state_arg,
                block,
                KernelArg::F32(nu[a.t as usize]),
                sigma,
                dtype,
                sdtype,
            ]);
            ("mfn_band", args)
        }
        Mechanism::Blt { theta, .. } => {
            let mut args = head();
            args.extend([
                ptr_of(OP, params, 0, 2 * theta.len())?,
                KernelArg::U32(theta.len() as u32),
                state_arg,
                block,
                sigma,
                dtype,
            ]);
            ("mfn_blt", args)
        }
        Mechanism::Table { steps } => (
            "mfn_table",
            vec![
                g,
                KernelArg::U64(len),
                state_arg,
                block,
                KernelArg::U64(*steps as u64),
                KernelArg::U64(a.t),
                sigma,
                dtype,
                sdtype,
            ],
        ),
    };
    // SAFETY: the lists match the entries of mf_noise.ptx; thread i < len touches grad[i], its
    // own state words (the table's included) and the parameter ranges bound above.
    unsafe { dev.launch_1d("mf_noise", entry, OP, &args, len) }
}

/// One kernel of a Fourier table build over chunk `c` (see `kernels/mf_noise.ptx`).
pub(super) fn fourier(
    dev: &PtxDevice,
    pass: Pass<'_>,
    c: &Chunk,
    seed: u64,
    spec: &Buffer<f32>,
) -> Result<()> {
    let total = (c.big * c.cols) as u64;
    let spec_arg = ptr_of(OP, spec, 0, spec.len())?;
    let (args, threads) = match pass {
        Pass::Gaussians => (
            vec![
                spec_arg,
                KernelArg::U64(c.cols as u64),
                KernelArg::U64(total),
                KernelArg::U64(c.index),
                KernelArg::U64(seed),
                KernelArg::U64(STREAM_TAG),
            ],
            total,
        ),
        Pass::Root(root) => (
            vec![
                spec_arg,
                ptr_of(OP, root, 0, root.len())?,
                KernelArg::U64(c.cols as u64),
                KernelArg::U64(total),
            ],
            total,
        ),
        Pass::Diff(state) => {
            // The chunk's columns of its block, rows 0 .. steps.
            let first = c.blk * c.steps * c.block + c.col0;
            let span = (c.steps - 1) * c.block + c.count;
            (
                vec![
                    spec_arg,
                    state.ptr(first, span)?,
                    KernelArg::U64(c.cols as u64),
                    KernelArg::U64(c.count as u64),
                    KernelArg::U64(c.steps as u64),
                    KernelArg::U64(c.block as u64),
                    KernelArg::U64(c.index),
                    KernelArg::U32(state.dtype().kernel_code()),
                ],
                (c.steps * c.count) as u64,
            )
        }
    };
    // SAFETY: the lists match the entries; spec holds `total` complex values and a thread
    // g < total touches element g (and root element g / cols < big); a diff thread (t, c) <
    // (steps, count) reads a part of spec element t cols + e / 2 (e = c + index % 2, e / 2 <
    // cols, as count <= 2 cols - index % 2) and of the one a row before, and writes table word
    // t block + c < span.
    unsafe { dev.launch_1d("mf_noise", pass.entry(), OP, &args, threads) }
}
