//! wgpu glue of the noise ops (`shaders/noise.wgsl`): one dispatch per chunk of the buffer, all
//! in one submission.

use super::{Gaussian, Mode};
use crate::Result;
use crate::backend::wgpu::{Dispatch, WgpuStorage, split_u64 as split};
use crate::buffer::{DType, Float};

/// `Params` of noise.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    index: [u32; 2],
    seed: [u32; 2],
    stream: [u32; 2],
    len: u32,
    std: f32,
    dtype: u32,
    add: u32,
    pad: [u32; 2],
}

fn run(
    s: &WgpuStorage,
    len: usize,
    dtype: DType,
    entry: &'static str,
    make: impl Fn(u64, u32) -> Params,
) -> Result<()> {
    let chunks = s.dev.chunks(len, dtype.size());
    let params: Vec<Params> = chunks
        .iter()
        .map(|&(start, count)| make(start as u64, count as u32))
        .collect();
    let work: Vec<Dispatch<'_>> = chunks
        .iter()
        .zip(&params)
        .map(|(&(start, count), p)| Dispatch {
            params: bytemuck::bytes_of(p),
            buffers: vec![s.range(start, count, dtype.size())],
            invocations: count.div_ceil(4) as u64,
        })
        .collect();
    s.dev.dispatch("noise", entry, &work)
}

pub(super) fn gaussian<T: Float>(
    s: &WgpuStorage,
    len: usize,
    g: &Gaussian,
    mode: Mode,
) -> Result<()> {
    run(s, len, T::DTYPE, "gaussian", |start, count| Params {
        index: split(g.offset + start),
        seed: split(g.seed),
        stream: split(g.stream),
        len: count,
        std: g.std,
        dtype: T::DTYPE.kernel_code(),
        add: u32::from(mode == Mode::Add),
        pad: [0; 2],
    })
}

pub(super) fn bits(s: &WgpuStorage, len: usize, seed: u64, stream: u64, offset: u64) -> Result<()> {
    run(s, len, DType::U32, "bits_u32", |start, count| Params {
        index: split(offset + start),
        seed: split(seed),
        stream: split(stream),
        len: count,
        std: 0.0,
        dtype: 0,
        add: 0,
        pad: [0; 2],
    })
}
