//! The CPU reference of clipping: norms and sums in f64, rayon over rows for the norms and over
//! column blocks for the sum. The noise is the crate's portable f32 Gaussian, added in f32 as
//! [`crate::noise::add_gaussian`] adds it, so noise on equals noise added to the noiseless sum.

use rayon::prelude::*;

use super::layout::Layout;
use super::{ClipRule, Run, factor};
use crate::backend::cpu::CHUNK;
use crate::buffer::Float;
use crate::rng;

/// Columns per rayon task of the sum: 128 KiB of f64 accumulators stay in L2 (measured best of
/// 4096 to 65536 on the 2-core EPYC of BENCHMARKS.md).
const COLUMNS: usize = 16384;

/// Clip and sum; returns the stats `[clipped, nonfinite, 0, sigma bits]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn clip<T: Float>(
    g: &[T],
    batch: usize,
    layout: &Layout,
    bounds: &[f32],
    run: &Run,
    sum: &mut [f32],
    norms: &mut [f32],
    factors: &mut [f32],
) -> [u32; 4] {
    let d = layout.dim();
    let l = layout.groups();
    let offsets = &layout.offsets;
    // Sums of squares by (row, group, column block) in parallel, then added per (row, group)
    // in block order, so a single long row still uses every core.
    let tasks: Vec<(usize, usize, usize)> = (0..batch)
        .flat_map(|i| {
            offsets.windows(2).flat_map(move |w| {
                (w[0]..w[1])
                    .step_by(CHUNK)
                    .map(move |k| (i, k, (k + CHUNK).min(w[1])))
            })
        })
        .collect();
    let partial: Vec<f64> = tasks
        .par_iter()
        .map(|&(i, a, e)| sum_squares(&g[i * d + a..i * d + e]))
        .collect();
    let mut sq = vec![0.0f64; batch * l];
    let mut t = 0;
    for (i, row) in sq.chunks_mut(l).enumerate() {
        for (k, s) in row.iter_mut().enumerate() {
            while t < tasks.len() && tasks[t].0 == i && tasks[t].1 < offsets[k + 1] {
                *s += partial[t];
                t += 1;
            }
        }
    }
    let mut c64 = vec![0.0f64; batch * l];
    let (clipped, nonfinite) = norms
        .par_chunks_mut(l)
        .zip(c64.par_chunks_mut(l))
        .zip(sq.par_chunks(l))
        .map(|((n, c), sq)| {
            let n64: Vec<f64> = sq.iter().map(|s| s.sqrt()).collect();
            for (o, v) in n.iter_mut().zip(&n64) {
                *o = *v as f32;
            }
            row_factors(&n64, bounds, run.rule, c)
        })
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    for (f, c) in factors.iter_mut().zip(&c64) {
        *f = *c as f32;
    }
    let sigma = sigma(run, bounds);
    let group_of = |k: usize| offsets.partition_point(|&o| o <= k) - 1;
    sum.par_chunks_mut(COLUMNS)
        .enumerate()
        .for_each(|(blk, out)| {
            let k0 = blk * COLUMNS;
            let mut acc = vec![0.0f64; out.len()];
            let mut k = k0;
            // One group run at a time, so a row's factor is looked up once per run.
            while k < k0 + out.len() {
                let grp = group_of(k);
                let end = offsets[grp + 1].min(k0 + out.len());
                // Rows with a factor, four at a time: one pass over the accumulators per
                // four rows keeps the f64 traffic below the gradients'.
                let rows: Vec<(usize, f64)> = (0..batch)
                    .map(|i| (i, c64[i * l + grp]))
                    .filter(|&(_, c)| c != 0.0)
                    .collect();
                let acc = &mut acc[k - k0..end - k0];
                let row = |i: usize| &g[i * d + k..i * d + end];
                let mut quads = rows.chunks_exact(4);
                for q in &mut quads {
                    let [(i0, c0), (i1, c1), (i2, c2), (i3, c3)] = [q[0], q[1], q[2], q[3]];
                    let it = row(i0).iter().zip(row(i1)).zip(row(i2)).zip(row(i3));
                    for (a, (((x0, x1), x2), x3)) in acc.iter_mut().zip(it) {
                        let f = |x: &T| f64::from(x.to_f32());
                        *a += c0 * f(x0) + c1 * f(x1) + c2 * f(x2) + c3 * f(x3);
                    }
                }
                for &(i, c) in quads.remainder() {
                    for (a, x) in acc.iter_mut().zip(row(i)) {
                        *a += c * f64::from(x.to_f32());
                    }
                }
                k = end;
            }
            let mut z = vec![0.0f32; out.len()];
            if let Some(n) = run.noise {
                rng::gaussians_into(n.seed, n.stream, n.offset + k0 as u64, &mut z);
            }
            for ((o, a), z) in out.iter_mut().zip(&acc).zip(&z) {
                let mut v = *a as f32;
                if run.noise.is_some() {
                    v += sigma * z;
                }
                *o = v * run.scale;
            }
        });
    [clipped, nonfinite, 0, sigma.to_bits()]
}

/// The sum of squares in f64, over eight interleaved accumulators so that it vectorizes.
fn sum_squares<T: Float>(x: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            let v = f64::from(v.to_f32());
            *a += v * v;
        }
    }
    for (a, v) in acc.iter_mut().zip(chunks.remainder()) {
        let v = f64::from(v.to_f32());
        *a += v * v;
    }
    acc.iter().sum()
}

/// The factors of one row from its norms; returns (clipped, nonfinite) as 0 or 1. A row with a
/// non-finite norm in any group is dropped whole.
pub(super) fn row_factors(
    norms: &[f64],
    bounds: &[f32],
    rule: ClipRule,
    out: &mut [f64],
) -> (u32, u32) {
    let mut bad = false;
    for ((n, c), o) in norms.iter().zip(bounds).zip(out.iter_mut()) {
        match factor(*n, f64::from(*c), rule) {
            Some(f) => *o = f,
            None => bad = true,
        }
    }
    if bad {
        out.fill(0.0);
        return (1, 1);
    }
    (u32::from(out.iter().any(|&c| c < 1.0)), 0)
}

/// The noise std: `multiplier * C` for one group, `multiplier * sqrt(sum C_l^2)` for several
/// (the sum in f64, rounded once).
pub(super) fn sigma(run: &Run, bounds: &[f32]) -> f32 {
    let Some(n) = run.noise else { return 0.0 };
    let total = match bounds {
        [c] => *c,
        _ => bounds
            .iter()
            .map(|&c| f64::from(c) * f64::from(c))
            .sum::<f64>()
            .sqrt() as f32,
    };
    n.multiplier * total
}
