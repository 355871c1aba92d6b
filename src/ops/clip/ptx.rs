//! PTX glue of clipping (`kernels/clip.ptx`), shared by CUDA and the PTX emulator: three
//! launches per clip (norms by tile, factors by row, the sum by column), one per ghost norm,
//! one per adaptive update. Stream order keeps them in order; nothing waits on the host.

use super::{Clipper, FactorPass, GhostMethod, GhostShape, Run};
use crate::Result;
use crate::backend::ptx::{BLOCK_SIZE, KernelArg, PtxDevice, ptr_of};
use crate::buffer::{Buffer, Float};

const OP: &str = "clip";

fn ptr<T: crate::Element>(b: &Buffer<T>) -> Result<KernelArg> {
    ptr_of(OP, b, 0, b.len())
}

pub(super) fn clip<T: Float>(
    dev: &PtxDevice,
    c: &Clipper,
    grads: &Buffer<T>,
    bounds: &Buffer<f32>,
    run: &Run,
    sum: &mut Buffer<f32>,
    norms: &mut Buffer<f32>,
) -> Result<()> {
    let (b, d, l) = (c.batch as u64, c.dim() as u64, c.groups() as u32);
    let ntiles = c.layout.tiles.len() as u32;
    let dtype = KernelArg::U32(T::DTYPE.kernel_code());
    let g = ptr(grads)?;
    let table = ptr(&c.table)?;
    let args = [
        g,
        KernelArg::U64(d),
        table,
        KernelArg::U32(ntiles),
        ptr(&c.partials)?,
        dtype,
    ];
    // SAFETY: the list matches clip_sumsq; block row * ntiles + tile reads the tile's columns
    // of its row (the table's tiles lie inside [0, d)) and writes partials[block].
    unsafe {
        dev.launch_1d(
            "clip",
            "clip_sumsq",
            OP,
            &args,
            b * u64::from(ntiles) * u64::from(BLOCK_SIZE),
        )?
    };
    factors(dev, &c.factor_pass(bounds, run, norms))?;
    let noise = run.noise.unwrap_or(super::ClipNoise {
        multiplier: 0.0,
        seed: 0,
        stream: 0,
        offset: 0,
    });
    let args = [
        g,
        KernelArg::U64(d),
        KernelArg::U32(c.batch as u32),
        ptr(&c.factors)?,
        KernelArg::U32(l),
        table,
        KernelArg::U32(c.layout.offsets_at() as u32),
        ptr(sum)?,
        ptr(&c.stats)?,
        KernelArg::F32(run.scale),
        KernelArg::U32(u32::from(run.noise.is_some())),
        KernelArg::U64(noise.seed),
        KernelArg::U64(noise.stream),
        KernelArg::U64(noise.offset),
        dtype,
    ];
    // SAFETY: the list matches clip_sum; thread k < d reads column k of every row and the
    // factors of its group (the offsets section lies in the table), and writes sum[k].
    unsafe { dev.launch_1d("clip", "clip_sum", OP, &args, d) }
}

/// The factor pass: one thread per row.
pub(super) fn factors(dev: &PtxDevice, f: &FactorPass<'_>) -> Result<()> {
    let args = [
        ptr(f.partials)?,
        KernelArg::U32(f.ntiles),
        ptr(f.table)?,
        KernelArg::U32(f.groups_at),
        KernelArg::U32(f.groups),
        KernelArg::U32(f.batch),
        ptr(f.bounds)?,
        KernelArg::U32(f.rule.kernel_code()),
        KernelArg::F32(f.multiplier),
        ptr(f.norms)?,
        ptr(f.factors)?,
        ptr(f.stats)?,
    ];
    // SAFETY: the list matches clip_factors; thread row < batch reads its partials row and the
    // group section of the table, writes its norms and factors row and adds to stats.
    unsafe { dev.launch_1d("clip", "clip_factors", OP, &args, u64::from(f.batch)) }
}

/// Zero the four stats words (one thread), so nothing waits for the stream.
pub(super) fn zero(dev: &PtxDevice, stats: &Buffer<u32>) -> Result<()> {
    let args = [ptr(stats)?];
    // SAFETY: the list matches clip_zero; thread 0 writes the four words of stats.
    unsafe { dev.launch_1d("clip", "clip_zero", OP, &args, 1) }
}

pub(super) fn ghost<T: Float>(
    dev: &PtxDevice,
    a: &Buffer<T>,
    g: &Buffer<T>,
    shape: &GhostShape,
    method: GhostMethod,
    bias: bool,
    out: &mut Buffer<f32>,
) -> Result<()> {
    let args = [
        ptr(a)?,
        ptr(g)?,
        KernelArg::U32(shape.positions as u32),
        KernelArg::U32(shape.inputs as u32),
        KernelArg::U32(shape.outputs as u32),
        KernelArg::U32(method.kernel_code()),
        KernelArg::U32(u32::from(bias)),
        ptr(out)?,
        KernelArg::U32(T::DTYPE.kernel_code()),
    ];
    // SAFETY: the list matches clip_ghost; block i reads example i of A (T x p) and G (T x q)
    // and thread 0 writes out[i].
    unsafe {
        dev.launch_1d(
            "clip",
            "clip_ghost",
            "ghost_norms",
            &args,
            shape.batch as u64 * u64::from(BLOCK_SIZE),
        )
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn adapt(
    dev: &PtxDevice,
    stats: &Buffer<u32>,
    batch: u32,
    bound: &mut Buffer<f32>,
    a: &super::AdaptiveClip,
    step: u64,
) -> Result<()> {
    let f = KernelArg::F32;
    let args = [
        ptr(stats)?,
        KernelArg::U32(batch),
        ptr(bound)?,
        f(a.target_quantile),
        f(a.lr),
        f(a.count_noise),
        KernelArg::U32(u32::from(a.update == super::Update::Linear)),
        f(a.min),
        f(a.max),
        KernelArg::U64(a.seed),
        KernelArg::U64(a.stream),
        KernelArg::U64(step),
    ];
    // SAFETY: the list matches clip_adapt; one thread reads stats[0], stats[2] and writes
    // bound[0].
    unsafe { dev.launch_1d("clip", "clip_adapt", "adaptive_clip", &args, 1) }
}
