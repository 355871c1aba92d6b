//! The dense strategy optimizer over `X = C^T C` (Denisov et al. 2022; Choquette-Choo et al.
//! 2023), for small `n`: minimize the mean error `tr(A X^{-1} A^T) / n` of the prefix-sum
//! workload by L-BFGS on a linear subspace that fixes the sensitivity:
//!
//! - b-min-sep: `X[i, j] = 0` for `|i - j| >= b` and `X[i, i] = 1`, so columns at least `b` apart
//!   are orthogonal with unit norms and `sens^2 = k_eff` exactly;
//! - fixed epochs (`n = k b`): `X[i, j] = 0` for `i != j` in the same class mod `b`, and the
//!   diagonal of each class summing to 1, so `sens^2 = 1` exactly.
//!
//! The gradient `-X^{-1} A^T A X^{-1} / n` is projected onto the subspace; a step that leaves the
//! positive-definite cone fails its Cholesky factorization and the line search halves it.
//! `C` is recovered by the reverse Cholesky, `C = rev(chol(rev(X)))^T`, so that `C`'s columns
//! carry the norms `X` prescribes. Each evaluation is `O(n^3)`: meant for `n` up to a few hundred.

use rayon::prelude::*;

use super::lbfgs::{Minimum, minimize_with_progress};
use super::{Participation, Schema, Strategy};
use crate::{Error, Result};

/// A dot product over four interleaved accumulators (vectorizes; the order differs from a
/// plain sum only in rounding).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ac, bc) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    acc[0] + acc[1] + acc[2] + acc[3] + tail
}

/// Lower Cholesky factor of the `n x n` row-major `x`, or `None` if it is not positive definite.
pub(crate) fn cholesky(x: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for j in 0..n {
        let lj: Vec<f64> = l[j * n..j * n + j].to_vec();
        let d = x[j * n + j] - dot(&lj, &lj);
        if d.is_nan() || d <= 0.0 || d.is_infinite() {
            return None;
        }
        let djj = d.sqrt();
        l[j * n + j] = djj;
        for i in j + 1..n {
            let s = dot(&l[i * n..i * n + j], &lj);
            l[i * n + j] = (x[i * n + j] - s) / djj;
        }
    }
    Some(l)
}

/// The loss `tr(A X^{-1} A^T) / n` and its gradient, for the prefix-sum `A`.
fn loss(x: &[f64], n: usize, want_grad: bool) -> (f64, Vec<f64>) {
    let Some(l) = cholesky(x, n) else {
        return (f64::INFINITY, Vec::new());
    };
    // H = X^{-1} A^T, column t of A^T is the indicator of 0..=t: solve L L^T h = e_{0..=t}.
    // The backward pass reads L^T by rows, so both passes walk memory in order.
    let mut lt = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            lt[j * n + i] = l[i * n + j];
        }
    }
    let h: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|t| {
            let mut y = vec![0.0; n];
            for i in 0..n {
                let rhs = if i <= t { 1.0 } else { 0.0 };
                let s = dot(&l[i * n..i * n + i], &y[..i]);
                y[i] = (rhs - s) / l[i * n + i];
            }
            for i in (0..n).rev() {
                let s = dot(&lt[i * n + i + 1..(i + 1) * n], &y[i + 1..]);
                y[i] = (y[i] - s) / l[i * n + i];
            }
            y
        })
        .collect();
    // tr(A H) = sum_t (A H)[t, t] = sum_t sum_{i <= t} H[i, t].
    let value = (0..n).map(|t| h[t][..=t].iter().sum::<f64>()).sum::<f64>() / n as f64;
    if !want_grad {
        return (value, Vec::new());
    }
    // G = -(1/n) sum_t h_t h_t^T, a row at a time (the inner loop runs along h_t).
    let mut g = vec![0.0; n * n];
    g.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        for ht in &h {
            let a = -ht[i] / n as f64;
            for (gij, hj) in row.iter_mut().zip(ht) {
                *gij += a * hj;
            }
        }
    });
    (value, g)
}

/// Project a gradient onto the subspace of `schema` (see the module docs).
fn project(g: &mut [f64], n: usize, b: usize, schema: Schema) {
    match schema {
        Schema::MinSep => {
            for i in 0..n {
                for j in 0..n {
                    if i == j || i.abs_diff(j) >= b {
                        g[i * n + j] = 0.0;
                    }
                }
            }
        }
        Schema::FixedEpochs => {
            for q in 0..b {
                let class: Vec<usize> = (q..n).step_by(b).collect();
                let mean = class.iter().map(|&i| g[i * n + i]).sum::<f64>() / class.len() as f64;
                for &i in &class {
                    g[i * n + i] -= mean;
                    for &j in &class {
                        if i != j {
                            g[i * n + j] = 0.0;
                        }
                    }
                }
            }
        }
    }
}

/// The optimized dense strategy for `part` (`n <= 2048`).
pub fn optimize(part: &Participation, max_iter: usize) -> Result<(Strategy, Minimum)> {
    optimize_with_progress(part, max_iter, &mut |_, _| {})
}

/// [`optimize`], telling `progress` the iteration and the loss as it goes (minutes at `n = 1000`).
pub fn optimize_with_progress(
    part: &Participation,
    max_iter: usize,
    progress: &mut dyn FnMut(usize, f64),
) -> Result<(Strategy, Minimum)> {
    let (n, b) = (part.n, part.min_sep);
    if n > 2048 {
        return Err(Error::LimitExceeded {
            what: "mf dense optimizer: n (O(n^3) per evaluation)".into(),
            requested: n as u64,
            max: 2048,
        });
    }
    let start: Vec<f64> = {
        let diag = match part.schema {
            Schema::MinSep => 1.0,
            Schema::FixedEpochs => 1.0 / part.k as f64,
        };
        let mut x = vec![0.0; n * n];
        (0..n).for_each(|i| x[i * n + i] = diag);
        x
    };
    let schema = part.schema;
    let m = minimize_with_progress(
        |x, want| {
            let (v, mut g) = loss(x, n, want);
            if want && !g.is_empty() {
                project(&mut g, n, b, schema);
            }
            (v, g)
        },
        &start,
        max_iter,
        1e-9,
        progress,
    );
    // Symmetrize against rounding, then C = rev(chol(rev(X)))^T.
    let mut x = m.x.clone();
    for i in 0..n {
        for j in 0..i {
            let v = 0.5 * (x[i * n + j] + x[j * n + i]);
            x[i * n + j] = v;
            x[j * n + i] = v;
        }
    }
    let rev: Vec<f64> = (0..n * n).map(|e| x[n * n - 1 - e]).collect();
    let l = cholesky(&rev, n).ok_or_else(|| Error::InvalidArgument {
        op: "mf dense optimizer",
        what: "the optimized X is not positive definite".into(),
    })?;
    // rev(L)^T: C[i][j] = L[n-1-j][n-1-i].
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            c[i * n + j] = l[(n - 1 - j) * n + (n - 1 - i)];
        }
    }
    Ok((Strategy::Dense { n, c }, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_central_differences() {
        let n = 5;
        let mut x = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                x[i * n + j] = if i == j {
                    2.0
                } else {
                    0.3 / (1.0 + i.abs_diff(j) as f64)
                };
            }
        }
        let (_, g) = loss(&x, n, true);
        // Symmetric perturbations: an off-diagonal pair moves by g_ij + g_ji.
        for (i, j) in [(0, 0), (3, 1), (4, 2)] {
            let h = 1e-6;
            let mut a = x.clone();
            let mut b = x.clone();
            let cells = if i == j {
                vec![(i, i)]
            } else {
                vec![(i, j), (j, i)]
            };
            for (r, c) in cells {
                a[r * n + c] += h;
                b[r * n + c] -= h;
            }
            let fd = (loss(&a, n, false).0 - loss(&b, n, false).0) / (2.0 * h);
            let want = if i == j {
                g[i * n + i]
            } else {
                g[i * n + j] + g[j * n + i]
            };
            assert!((want - fd).abs() < 1e-7, "({i},{j}): {want} vs {fd}");
        }
    }
}
