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
    let state_arg = ptr_of(OP, state, 0, state.len())?;
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
        Mechanism::Table => (
            "mfn_table",
            vec![
                g,
                KernelArg::U64(len),
                ptr_of(OP, params, a.t as usize * a.len, a.len)?,
                sigma,
                dtype,
            ],
        ),
    };
    // SAFETY: the lists match the entries of mf_noise.ptx; thread i < len touches grad[i], its
    // own state words and the parameter ranges bound above.
    unsafe { dev.launch_1d("mf_noise", entry, OP, &args, len) }
}
