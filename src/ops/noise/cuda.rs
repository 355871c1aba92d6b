//! CUDA glue of the noise ops (`kernels/noise.ptx`).

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::{Gaussian, Mode};
use crate::Result;
use crate::backend::cuda::{BLOCK_SIZE, CudaStorage, grid_for};
use crate::buffer::{DType, Element, Float};

fn dtype_code(d: DType) -> u32 {
    match d {
        DType::F32 | DType::U32 => 0,
        DType::F16 => 1,
        DType::BF16 => 2,
    }
}

pub(super) fn gaussian<T: Float>(
    s: &mut CudaStorage<T>,
    len: usize,
    g: &Gaussian,
    mode: Mode,
) -> Result<()> {
    let grid = grid_for("fill_gaussian", (len as u64).div_ceil(4))?;
    let dev = s.dev.clone();
    let f = dev.function("noise", "gaussian")?;
    let stream = dev.stream();
    let (ptr, _guard) = s.ptr_mut(stream);
    let (n, dtype, add) = (
        len as u64,
        dtype_code(T::DTYPE),
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
    unsafe {
        b.launch(LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (BLOCK_SIZE, 1, 1),
            shared_mem_bytes: 0,
        })
    }?;
    Ok(())
}

pub(super) fn bits<T: Element>(
    s: &mut CudaStorage<T>,
    len: usize,
    seed: u64,
    stream_id: u64,
    offset: u64,
) -> Result<()> {
    let grid = grid_for("fill_bits", (len as u64).div_ceil(4))?;
    let dev = s.dev.clone();
    let f = dev.function("noise", "bits_u32")?;
    let stream = dev.stream();
    let (ptr, _guard) = s.ptr_mut(stream);
    let n = len as u64;
    let mut b = stream.launch_builder(&f);
    b.arg(&ptr).arg(&n).arg(&offset).arg(&seed).arg(&stream_id);
    // SAFETY: the argument list matches `bits_u32` in noise.ptx; `ptr` holds `len` u32 and
    // every thread writes only indices below `len`.
    unsafe {
        b.launch(LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (BLOCK_SIZE, 1, 1),
            shared_mem_bytes: 0,
        })
    }?;
    Ok(())
}
