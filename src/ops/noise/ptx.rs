//! PTX glue of the noise ops (`kernels/noise.ptx`), shared by CUDA and the PTX emulator.

use super::{Gaussian, Mode};
use crate::Result;
use crate::backend::ptx::{KernelArg, PtxDevice};
use crate::buffer::DType;

pub(super) fn gaussian(
    dev: &PtxDevice,
    data: KernelArg,
    len: usize,
    g: &Gaussian,
    mode: Mode,
    dtype: DType,
) -> Result<()> {
    let n = len as u64;
    let args = [
        data,
        KernelArg::U64(n),
        KernelArg::U64(g.offset),
        KernelArg::U64(g.seed),
        KernelArg::U64(g.stream),
        KernelArg::F32(g.std),
        KernelArg::U32(dtype.kernel_code()),
        KernelArg::U32(u32::from(mode == Mode::Add)),
    ];
    // SAFETY: the list matches `gaussian` in noise.ptx; `data` holds `len` elements of `dtype`
    // and every thread writes only indices below `len`.
    unsafe { dev.launch_1d("noise", "gaussian", "fill_gaussian", &args, n.div_ceil(4)) }
}

pub(super) fn bits(
    dev: &PtxDevice,
    data: KernelArg,
    len: usize,
    seed: u64,
    stream: u64,
    offset: u64,
) -> Result<()> {
    let n = len as u64;
    let args = [
        data,
        KernelArg::U64(n),
        KernelArg::U64(offset),
        KernelArg::U64(seed),
        KernelArg::U64(stream),
    ];
    // SAFETY: the list matches `bits_u32` in noise.ptx; `data` holds `len` u32 and every thread
    // writes only indices below `len`.
    unsafe { dev.launch_1d("noise", "bits_u32", "fill_bits", &args, n.div_ceil(4)) }
}
