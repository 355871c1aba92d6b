//! The strategies of `design/mf.md` and what every one of them answers: its matrices (for small
//! `n`), `C^{-1} z`, and the per-query errors `e_t = ||(A C^{-1})[t, :]||^2` for the prefix-sum
//! workload.

use super::{blt, fourier, toeplitz};
use crate::{Error, Result};

const OP: &str = "mf";

/// A factorization `A = B C` of the prefix-sum workload.
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    /// Toeplitz `C` with this first column (the square root, or any other).
    Toeplitz(Vec<f64>),
    /// BandMF: banded Toeplitz with these `p` coefficients, each column then divided by its
    /// norm (only the last `p - 1` columns are shorter).
    Banded(Vec<f64>),
    /// BISR: `C^{-1}` is banded Toeplitz with these `p` coefficients; `C` is dense Toeplitz.
    Bisr(Vec<f64>),
    /// BLT: `t_0 = 1`, `t_j = sum_i omega_i theta_i^(j-1)`.
    Blt { theta: Vec<f64>, omega: Vec<f64> },
    /// Any lower-triangular `n x n` `C`, row-major.
    Dense { n: usize, c: Vec<f64> },
    /// The Fourier mechanism: `C = S[:, :n]`, `B = S[:n, :]` with `S` the principal square root
    /// of the circulant embedding of `A` (size `N = next_power_of_two(2n)`).
    Fourier,
}

impl Strategy {
    /// The square root of the prefix sum (`momentum = 0`) or of SGD with momentum.
    pub fn sqrt(n: usize, momentum: f64) -> Strategy {
        Strategy::Toeplitz(toeplitz::sqrt(&toeplitz::workload(n, momentum)))
    }

    /// BandMF with the square root truncated to `p` bands (BSR), normalized to unit norm.
    pub fn banded_sqrt(p: usize) -> Strategy {
        let c = toeplitz::sqrt_prefix_sum(p);
        let norm = c.iter().map(|x| x * x).sum::<f64>().sqrt();
        Strategy::Banded(c.iter().map(|x| x / norm).collect())
    }

    /// BISR: the square root's inverse coefficients truncated to `p` bands.
    pub fn bisr(p: usize) -> Strategy {
        Strategy::Bisr(toeplitz::inverse(&toeplitz::sqrt_prefix_sum(p), usize::MAX))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Toeplitz(_) => "toeplitz",
            Strategy::Banded(_) => "bandmf",
            Strategy::Bisr(_) => "bisr",
            Strategy::Blt { .. } => "blt",
            Strategy::Dense { .. } => "dense",
            Strategy::Fourier => "fourier",
        }
    }

    /// Refuse parameters no strategy can use: non-finite values, a zero leading coefficient,
    /// BLT decays outside (0, 1) or non-positive scales, a dense `C` of the wrong size.
    pub fn check(&self, n: usize) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument { op: OP, what });
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        match self {
            Strategy::Toeplitz(c) | Strategy::Banded(c) | Strategy::Bisr(c) => {
                if c.is_empty() || !finite(c) || c[0] == 0.0 {
                    return bad(format!(
                        "{} coefficients must be finite with c_0 != 0 (got {} values)",
                        self.name(),
                        c.len()
                    ));
                }
                if matches!(self, Strategy::Banded(_) | Strategy::Bisr(_)) && c.len() > n {
                    return bad(format!(
                        "{} bands p = {} exceed n = {n}",
                        self.name(),
                        c.len()
                    ));
                }
            }
            Strategy::Blt { theta, omega } => blt::check(theta, omega)?,
            Strategy::Dense { n: m, c } => {
                if *m != n || c.len() != n * n || !finite(c) {
                    return bad(format!("dense C must be {n} x {n} and finite"));
                }
                if (0..n).any(|i| c[i * n + i] == 0.0) {
                    return bad("dense C must have a non-zero diagonal".into());
                }
            }
            Strategy::Fourier => {}
        }
        Ok(())
    }

    /// The first column of `C` when `C` is Toeplitz (`n` coefficients).
    pub fn toeplitz_column(&self, n: usize) -> Option<Vec<f64>> {
        match self {
            Strategy::Toeplitz(c) => Some(pad(c, n)),
            Strategy::Bisr(r) => Some(toeplitz::inverse(&pad(r, n), r.len())),
            Strategy::Blt { theta, omega } => Some(blt::coefficients(theta, omega, n)),
            _ => None,
        }
    }

    /// `x = C^{-1} z` (`z` of length `n`; the Fourier strategy's `C` is not square: `None`).
    pub fn solve(&self, z: &[f64]) -> Option<Vec<f64>> {
        let n = z.len();
        match self {
            Strategy::Banded(c) => Some(banded_solve(c, z)),
            Strategy::Bisr(r) => Some(toeplitz::multiply(r, z, n)),
            Strategy::Dense { c, .. } => Some(lower_solve(c, z)),
            Strategy::Fourier => None,
            _ => {
                let col = self.toeplitz_column(n)?;
                Some(lower_solve(&toeplitz::dense(&col, n), z))
            }
        }
    }

    /// The `n x n` matrix `C` (the Fourier strategy's is `N x n`), row-major, for small `n`.
    pub fn c_matrix(&self, n: usize) -> Vec<f64> {
        match self {
            Strategy::Banded(c) => {
                let mut m = toeplitz::dense(&pad(c, n), n);
                for j in 0..n {
                    let norm = (j..n).map(|i| m[i * n + j].powi(2)).sum::<f64>().sqrt();
                    (j..n).for_each(|i| m[i * n + j] /= norm);
                }
                m
            }
            Strategy::Dense { c, .. } => c.clone(),
            Strategy::Fourier => fourier::c_matrix(n),
            _ => toeplitz::dense(&self.toeplitz_column(n).unwrap_or_default(), n),
        }
    }

    /// The per-query errors `e_t` for the prefix-sum workload, `O(n p)` for BandMF, `O(n)` from
    /// `C^{-1}`'s coefficients for the Toeplitz strategies, `O(n^2)` for a dense `C`.
    pub fn errors(&self, n: usize) -> Vec<f64> {
        match self {
            Strategy::Banded(c) => banded_errors(c, n),
            Strategy::Dense { c, .. } => dense_errors(c, n),
            Strategy::Fourier => fourier::errors(n),
            Strategy::Bisr(r) => toeplitz_errors(&pad(r, n)),
            Strategy::Blt { theta, omega } => toeplitz_errors(&blt::inverse(theta, omega, n)),
            Strategy::Toeplitz(c) => toeplitz_errors(&toeplitz::inverse_of(c, n)),
        }
    }
}

impl Strategy {
    /// The per-query errors for the Toeplitz workload with first column `a` (the prefix sum when
    /// all ones; see [`toeplitz::workload`]). Other workloads need `C^{-1}` Toeplitz (the square
    /// root, Toeplitz, BISR, BLT strategies): `A C^{-1}` is then Toeplitz with first column
    /// `a * r`, `O(n^2)`.
    pub fn errors_for(&self, a: &[f64]) -> Result<Vec<f64>> {
        let n = a.len();
        if a.iter().all(|&x| x == 1.0) {
            return Ok(self.errors(n));
        }
        let r = match self {
            Strategy::Bisr(r) => pad(r, n),
            Strategy::Blt { theta, omega } => blt::inverse(theta, omega, n),
            Strategy::Toeplitz(c) => toeplitz::inverse_of(c, n),
            _ => {
                return Err(Error::InvalidArgument {
                    op: OP,
                    what: format!(
                        "errors under a workload other than the prefix sum are computed for                          Toeplitz strategies (sqrt, bisr, blt), not {}",
                        self.name()
                    ),
                });
            }
        };
        let w = toeplitz::multiply(a, &r, n);
        let mut e = 0.0;
        Ok(w.iter()
            .map(|x| {
                e += x * x;
                e
            })
            .collect())
    }
}

/// `c` cut or zero-padded to `n` coefficients.
pub(crate) fn pad(c: &[f64], n: usize) -> Vec<f64> {
    let mut v: Vec<f64> = c.iter().copied().take(n).collect();
    v.resize(n, 0.0);
    v
}

/// Errors when `C^{-1}` is Toeplitz with first column `r`: `A C^{-1}` is Toeplitz with first
/// column `w = cumsum(r)`, so `e_t = sum_{j <= t} w_j^2`.
fn toeplitz_errors(r: &[f64]) -> Vec<f64> {
    let mut w = 0.0;
    let mut e = 0.0;
    r.iter()
        .map(|&x| {
            w += x;
            e += w * w;
            e
        })
        .collect()
}

/// `x = C^{-1} z` for column-normalized BandMF: `C = T D` with `D = diag(1 / nu)`, so
/// `x = D^{-1} T^{-1} z`, the banded recurrence then the scale.
fn banded_solve(c: &[f64], z: &[f64]) -> Vec<f64> {
    let n = z.len();
    let p = c.len();
    let mut y = vec![0.0; n];
    for t in 0..n {
        let s: f64 = (1..p.min(t + 1)).map(|i| c[i] * y[t - i]).sum();
        y[t] = (z[t] - s) / c[0];
    }
    let nu = toeplitz::banded_column_norms(c, n);
    y.iter().zip(&nu).map(|(v, s)| v * s).collect()
}

/// BandMF errors: `(A C^{-1})[t, j] = nu w_{t-j} + corr_t[j]`, where `w = cumsum(r)` for the
/// full-norm columns and `corr_t` adds the last `p - 1` columns' norm deficits, one row at a
/// time: `O(n p)`.
fn banded_errors(c: &[f64], n: usize) -> Vec<f64> {
    let p = c.len();
    let r = toeplitz::inverse(&pad(c, n), p);
    let nu = toeplitz::banded_column_norms(c, n);
    let full = nu[0];
    let mut w = Vec::with_capacity(n);
    let mut acc = 0.0;
    for &x in &r {
        acc += x;
        w.push(acc);
    }
    let mut e = Vec::with_capacity(n);
    let mut plain = 0.0;
    let mut short = false;
    let mut corr = vec![0.0; n];
    for t in 0..n {
        plain += (full * w[t]).powi(2);
        // Row t: M[t, j] = full * w_{t-j} + corr[j], corr += (nu_t - full) r_{t-j}.
        let delta = nu[t] - full;
        short |= delta != 0.0;
        if !short {
            e.push(plain);
            continue;
        }
        for j in 0..=t {
            corr[j] += delta * r[t - j];
        }
        e.push((0..=t).map(|j| (full * w[t - j] + corr[j]).powi(2)).sum());
    }
    e
}

/// `C^{-1} z` for a dense lower-triangular `C` by forward substitution.
fn lower_solve(c: &[f64], z: &[f64]) -> Vec<f64> {
    let n = z.len();
    let mut x = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|j| c[i * n + j] * x[j]).sum();
        x[i] = (z[i] - s) / c[i * n + i];
    }
    x
}

/// Errors for a dense `C`: `C^{-1}` row by row, `A C^{-1}` as running row sums.
fn dense_errors(c: &[f64], n: usize) -> Vec<f64> {
    let mut inv = vec![0.0; n * n];
    for col in 0..n {
        let mut e = vec![0.0; n];
        e[col] = 1.0;
        let x = lower_solve(c, &e);
        for i in 0..n {
            inv[i * n + col] = x[i];
        }
    }
    let mut row = vec![0.0; n];
    (0..n)
        .map(|t| {
            for j in 0..n {
                row[j] += inv[t * n + j];
            }
            row.iter().map(|x| x * x).sum()
        })
        .collect()
}
