//! The CPU reference of clipping: norms and sums in f64, rayon over rows for the norms and over
//! column blocks for the sum. The noise is the crate's portable f32 Gaussian, added in f32 as
//! [`crate::noise::add_gaussian`] adds it, so noise on equals noise added to the noiseless sum.

use rayon::prelude::*;

use super::layout::Layout;
use super::{ClipRule, Run, factor};
use crate::buffer::Float;
use crate::rng;

/// Columns per rayon task of the sum: the f64 accumulators stay in L1.
const COLUMNS: usize = 2048;

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
    let mut c64 = vec![0.0f64; batch * l];
    let (clipped, nonfinite) = norms
        .par_chunks_mut(l)
        .zip(c64.par_chunks_mut(l))
        .enumerate()
        .map(|(i, (n, c))| {
            let row = &g[i * d..(i + 1) * d];
            let n64: Vec<f64> = (0..l)
                .map(|k| sum_squares(&row[offsets[k]..offsets[k + 1]]).sqrt())
                .collect();
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
                for i in 0..batch {
                    let c = c64[i * l + grp];
                    if c == 0.0 {
                        continue;
                    }
                    let row = &g[i * d + k..i * d + end];
                    for (a, x) in acc[k - k0..end - k0].iter_mut().zip(row) {
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

fn sum_squares<T: Float>(x: &[T]) -> f64 {
    x.iter()
        .map(|v| {
            let v = f64::from(v.to_f32());
            v * v
        })
        .sum()
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
