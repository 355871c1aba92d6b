//! CUDA glue of the noise ops (`kernels/noise.ptx`).

use cudarc::driver::PushKernelArg;

use super::{Gaussian, Mode};
use crate::Result;
use crate::backend::cuda::{CudaStorage, launch_1d};
use crate::buffer::{Element, Float};

pub(super) fn gaussian<T: Float>(
    s: &mut CudaStorage<T>,
    len: usize,
    g: &Gaussian,
    mode: Mode,
) -> Result<()> {
    let dev = s.dev.clone();
    let f = dev.function("noise", "gaussian")?;
    let stream = dev.stream();
    let (ptr, _guard) = s.ptr_mut(stream);
    let (n, dtype, add) = (
        len as u64,
        T::DTYPE.kernel_code(),
        u32::from(mode == Mode::Add),
    );
    let mut b = stream.launch_builder(&f);
    b.arg(&ptr)
        .arg(&n)
        .arg(&g.offset)
        .arg(&g.seed)
        .arg(&g.stream)
        .arg(&g.std)
        .arg(&dtype)
        .arg(&add);
    // SAFETY: the argument list matches `gaussian` in noise.ptx; `ptr` holds `len` elements of
    // T and every thread writes only indices below `len`.
    unsafe { launch_1d(b, "fill_gaussian", n.div_ceil(4)) }
}

pub(super) fn bits<T: Element>(
    s: &mut CudaStorage<T>,
    len: usize,
    seed: u64,
    stream_id: u64,
    offset: u64,
) -> Result<()> {
    let dev = s.dev.clone();
    let f = dev.function("noise", "bits_u32")?;
    let stream = dev.stream();
    let (ptr, _guard) = s.ptr_mut(stream);
    let n = len as u64;
    let mut b = stream.launch_builder(&f);
    b.arg(&ptr).arg(&n).arg(&offset).arg(&seed).arg(&stream_id);
    // SAFETY: the argument list matches `bits_u32` in noise.ptx; `ptr` holds `len` u32 and
    // every thread writes only indices below `len`.
    unsafe { launch_1d(b, "fill_bits", n.div_ceil(4)) }
}
