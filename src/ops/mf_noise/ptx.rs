//! PTX glue of the MF noise generators (`kernels/mf_noise.ptx`), shared by CUDA and the PTX
//! emulator: one launch per step, one thread per coordinate.

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
    state: &Buffer<f32>,
    params: &Buffer<f32>,
) -> Result<()> {
    let len = a.len as u64;
    let g = ptr_of(OP, grad, 0, a.len)?;
    let head = [
        g,
        KernelArg::U64(len),
        KernelArg::U64(a.offset),
        KernelArg::U64(a.seed),
        KernelArg::U64(STREAM_TAG),
        KernelArg::U64(a.t),
    ];
    let dtype = KernelArg::U32(T::DTYPE.kernel_code());
    let sigma = KernelArg::F32(a.sigma);
    let state_arg = ptr_of(OP, state, 0, state.len())?;
    let (entry, tail) = match mech {
        Mechanism::Fir { weights, dense } => {
            let (row, taps) = if *dense {
                (a.t as usize * a.n, a.t as usize + 1)
            } else {
                (0, weights.len().min(a.t as usize + 1))
            };
            let w = ptr_of(OP, params, row, taps)?;
            (
                "mfn_fir",
                vec![w, KernelArg::U32(taps as u32), sigma, dtype],
            )
        }
        Mechanism::Band { c, nu } => (
            "mfn_band",
            vec![
                ptr_of(OP, params, 0, c.len())?,
                KernelArg::U32(c.len() as u32),
                state_arg,
                KernelArg::U64(a.block as u64),
                KernelArg::F32(nu[a.t as usize]),
                sigma,
                dtype,
            ],
        ),
        Mechanism::Blt { theta, .. } => (
            "mfn_blt",
            vec![
                ptr_of(OP, params, 0, 2 * theta.len())?,
                KernelArg::U32(theta.len() as u32),
                state_arg,
                KernelArg::U64(a.block as u64),
                sigma,
                dtype,
            ],
        ),
    };
    let args: Vec<KernelArg> = head.into_iter().chain(tail).collect();
    // SAFETY: the lists match the entries of mf_noise.ptx; thread i < len touches grad[i], its
    // own state column and the parameter ranges bound above.
    unsafe { dev.launch_1d("mf_noise", entry, OP, &args, len) }
}
