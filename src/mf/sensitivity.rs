//! Sensitivity under `k` participations at least `b` apart (`design/mf.md`), with which bound
//! was used: the exact forms where their preconditions hold, otherwise the dynamic-programming
//! upper bound over `X = C^T C`, or the fixed-epoch form when `n = k b`.

use super::strategy::{Strategy, pad};
use super::{blt, fourier, toeplitz};
use crate::{Error, Result};

/// How participations are scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    /// At most `k` participations, any two at least `min_sep` steps apart.
    MinSep,
    /// Fixed epoch order, `n = k b`: an example participates exactly at `q, q + b, ...` for one
    /// `q < b`.
    FixedEpochs,
}

/// Who may participate when, over `n` steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Participation {
    pub n: usize,
    pub k: usize,
    pub min_sep: usize,
    pub schema: Schema,
}

impl Participation {
    /// At most `k` participations at least `min_sep` apart (b-min-sep).
    pub fn new(n: usize, k: usize, min_sep: usize) -> Result<Participation> {
        for (name, v) in [
            ("n (steps)", n),
            ("k (epochs)", k),
            ("b (min separation)", min_sep),
        ] {
            if v == 0 {
                return Err(Error::InvalidArgument {
                    op: "mf",
                    what: format!("{name} must be at least 1"),
                });
            }
        }
        Ok(Participation {
            n,
            k,
            min_sep,
            schema: Schema::MinSep,
        })
    }

    /// `k` epochs of `b` steps in a fixed order (`n = k b`).
    pub fn fixed_epochs(k: usize, b: usize) -> Result<Participation> {
        let n = k.checked_mul(b).ok_or_else(|| Error::InvalidArgument {
            op: "mf",
            what: format!("k b overflows: k = {k}, b = {b}"),
        })?;
        let mut p = Participation::new(n, k, b)?;
        p.schema = Schema::FixedEpochs;
        Ok(p)
    }

    /// `min(k, ceil(n / b))`, the most participations that fit.
    pub fn k_eff(&self) -> usize {
        self.k.min(self.n.div_ceil(self.min_sep))
    }
}

/// A sensitivity and how it was obtained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sensitivity {
    /// `sens^2`.
    pub squared: f64,
    /// True when `squared` is the sensitivity itself, false for an upper bound.
    pub exact: bool,
    /// Which form gave it.
    pub method: &'static str,
}

/// The sensitivity of `s` under `p`. The fast exact forms (unit orthogonal columns, the
/// worst case `0, b, 2b, ...` of a non-negative non-increasing Toeplitz `C`, one participation)
/// hold under both schemas, since their worst pattern is a fixed-epoch one.
pub fn sensitivity(s: &Strategy, p: &Participation) -> Result<Sensitivity> {
    s.check(p.n)?;
    let n = p.n;
    let k = p.k_eff();
    if let Strategy::Banded(c) = s
        && c.len() <= p.min_sep
    {
        // Columns at least b apart are orthogonal and every column has unit norm.
        return Ok(Sensitivity {
            squared: k as f64,
            exact: true,
            method: "banded, p <= b: k_eff",
        });
    }
    if let Some(c) = s.toeplitz_column(n) {
        if k == 1 {
            let squared = match s {
                Strategy::Blt { theta, omega } => blt::single_sensitivity_squared(theta, omega, n),
                _ => c.iter().map(|x| x * x).sum(),
            };
            return Ok(Sensitivity {
                squared,
                exact: true,
                method: "single participation: first column",
            });
        }
        if c.iter().all(|&x| x >= 0.0) && c.windows(2).all(|w| w[1] <= w[0]) {
            return Ok(Sensitivity {
                squared: toeplitz_worst_case(&c, k, p.min_sep),
                exact: true,
                method: "Toeplitz, non-negative non-increasing: participations 0, b, 2b, ...",
            });
        }
    }
    let gram = Gram::of(s, n);
    if p.schema == Schema::FixedEpochs {
        return Ok(fixed_epochs(&gram, p));
    }
    if k == 1 {
        let mut best = 0.0f64;
        gram.rows(|i, row| best = best.max(row[i]));
        return Ok(Sensitivity {
            squared: best,
            exact: true,
            method: "single participation: largest column",
        });
    }
    // Columns at least b apart orthogonal (to rounding): the best k_eff diagonal entries.
    let (mut diag, mut far, mut top) = (vec![0.0; n], 0.0f64, 0.0f64);
    gram.rows(|i, row| {
        diag[i] = row[i];
        top = top.max(row[i].abs());
        for (j, x) in row.iter().enumerate() {
            if i.abs_diff(j) >= p.min_sep {
                far = far.max(x.abs());
            }
        }
    });
    if far <= ROUNDING * top {
        return Ok(Sensitivity {
            squared: suffix_best(&diag, k, p.min_sep)[k],
            exact: true,
            method: "columns at least b apart orthogonal",
        });
    }
    Ok(Sensitivity {
        squared: dp_bound(&gram, p),
        exact: false,
        method: "dynamic-programming upper bound",
    })
}

/// Entries of `X` this far below its largest diagonal entry count as zero: what the reverse
/// Cholesky of an optimized `X` leaves where `X` had exact zeros.
const ROUNDING: f64 = 1e-12;

/// `||sum_{q < k} C e_{q b}||^2` for Toeplitz `C` with first column `c`.
pub fn toeplitz_worst_case(c: &[f64], k: usize, b: usize) -> f64 {
    let n = c.len();
    let mut v = vec![0.0; n];
    for q in 0..k {
        let start = q * b;
        if start >= n {
            break;
        }
        for (m, x) in v[start..].iter_mut().enumerate() {
            *x += c[m];
        }
    }
    v.iter().map(|x| x * x).sum()
}

/// `X = C^T C`, produced a row at a time from the bottom, `O(n)` memory for Toeplitz-based `C`.
pub(crate) enum Gram {
    /// `C = T diag(scale)` with `T` Toeplitz of first column `c`:
    /// `X[i, j] = scale_i scale_j (T^T T)[i, j]`, `(T^T T)[i, j] = (T^T T)[i+1, j+1] + c_{n-1-i} c_{n-1-j}`.
    Toeplitz {
        c: Vec<f64>,
        scale: Option<Vec<f64>>,
    },
    /// `X[i, j] = rho(|i - j|)`.
    Circulant(Vec<f64>),
    /// The whole `n x n` matrix.
    Dense(Vec<f64>, usize),
}

impl Gram {
    pub(crate) fn of(s: &Strategy, n: usize) -> Gram {
        match s {
            Strategy::Banded(c) => {
                let scale = toeplitz::banded_column_norms(c, n)
                    .iter()
                    .map(|nu| 1.0 / nu)
                    .collect();
                Gram::Toeplitz {
                    c: pad(c, n),
                    scale: Some(scale),
                }
            }
            Strategy::Fourier => Gram::Circulant(fourier::gram(n)),
            Strategy::Dense { c, .. } => {
                // X = sum over rows m of c_m^T c_m, each outer product along contiguous rows.
                let mut x = vec![0.0; n * n];
                for m in 0..n {
                    let row = &c[m * n..(m + 1) * n];
                    for (i, &ci) in row.iter().enumerate().take(m + 1) {
                        for (xij, cj) in x[i * n..(i + 1) * n].iter_mut().zip(row) {
                            *xij += ci * cj;
                        }
                    }
                }
                Gram::Dense(x, n)
            }
            _ => Gram::Toeplitz {
                c: s.toeplitz_column(n).unwrap_or_else(|| vec![0.0; n]),
                scale: None,
            },
        }
    }

    fn n(&self) -> usize {
        match self {
            Gram::Toeplitz { c, .. } => c.len(),
            Gram::Circulant(r) => r.len(),
            Gram::Dense(_, n) => *n,
        }
    }

    /// Call `f(i, row_i)` for `i = n - 1` down to 0.
    pub(crate) fn rows(&self, mut f: impl FnMut(usize, &[f64])) {
        let n = self.n();
        match self {
            Gram::Toeplitz { c, scale } => {
                let mut row = vec![0.0; n + 1];
                let mut out = vec![0.0; n];
                for i in (0..n).rev() {
                    // row_i[j] = row_{i+1}[j+1] + c_{n-1-i} c_{n-1-j}, built in place from the
                    // left so each read of j + 1 still holds row i + 1.
                    for j in 0..n {
                        row[j] = row[j + 1] + c[n - 1 - i] * c[n - 1 - j];
                    }
                    row[n] = 0.0;
                    match scale {
                        Some(sc) => {
                            for j in 0..n {
                                out[j] = sc[i] * sc[j] * row[j];
                            }
                        }
                        None => out.copy_from_slice(&row[..n]),
                    }
                    f(i, &out);
                }
            }
            Gram::Circulant(rho) => {
                let mut out = vec![0.0; n];
                for i in (0..n).rev() {
                    for (j, o) in out.iter_mut().enumerate() {
                        *o = rho[i.abs_diff(j)];
                    }
                    f(i, &out);
                }
            }
            Gram::Dense(x, _) => {
                for i in (0..n).rev() {
                    f(i, &x[i * n..(i + 1) * n]);
                }
            }
        }
    }
}

/// The best sum of at most `k` values of `v` at positions at least `b` apart, for every suffix:
/// `best[i][q]` over positions `>= i` (`O(n k)`). Returned flat, `(n + 1) x (k + 1)`.
fn suffix_best(v: &[f64], k: usize, b: usize) -> Vec<f64> {
    let n = v.len();
    let w = k + 1;
    let mut best = vec![0.0; (n + 1) * w];
    for i in (0..n).rev() {
        for q in 1..=k {
            let skip = best[(i + 1) * w + q];
            let next = (i + b).min(n);
            let take = v[i] + best[next * w + q - 1];
            best[i * w + q] = skip.max(take);
        }
    }
    best
}

/// The upper bound `max_P sum_{i in P} r_i`, `r_i = max_{P containing i} sum_{j in P} |X[i, j]|`.
fn dp_bound(gram: &Gram, p: &Participation) -> f64 {
    let n = gram.n();
    let (k, b) = (p.k_eff(), p.min_sep);
    let mut r = vec![0.0; n];
    gram.rows(|i, row| {
        // Only the row's non-zero window matters (a band of width 2p - 1 for BandMF).
        let lo = row.iter().position(|x| *x != 0.0).unwrap_or(i).min(i);
        let hi = row.iter().rposition(|x| *x != 0.0).unwrap_or(i).max(i);
        let v: Vec<f64> = row[lo..=hi].iter().map(|x| x.abs()).collect();
        let (ii, len) = (i - lo, v.len());
        // Right of i: positions >= i + b; left of i: positions <= i - b (reversed).
        let right = suffix_best(&v[(ii + b).min(len)..], k - 1, b);
        let left_v: Vec<f64> = if ii >= b {
            v[..=ii - b].iter().rev().copied().collect()
        } else {
            vec![]
        };
        let left = suffix_best(&left_v, k - 1, b);
        let best = (0..k)
            .map(|kl| left[kl] + right[k - 1 - kl])
            .fold(0.0f64, f64::max);
        r[i] = v[ii] + best;
    });
    let best = suffix_best(&r, k, b);
    best[k]
}

/// Fixed epochs `n = k b`: each example participates at `q, q + b, ...` for one `q < b`, so
/// `sens^2 <= max_q sum_{i, j in P_q} |X[i, j]|`, with equality when those entries are `>= 0`.
fn fixed_epochs(gram: &Gram, p: &Participation) -> Sensitivity {
    let b = p.min_sep;
    let mut sums = vec![0.0f64; b];
    let mut negative = false;
    gram.rows(|i, row| {
        let q = i % b;
        for j in (q..row.len()).step_by(b) {
            sums[q] += row[j].abs();
            negative |= row[j] < -ROUNDING * row[i].abs();
        }
    });
    Sensitivity {
        squared: sums.iter().copied().fold(0.0, f64::max),
        exact: !negative,
        method: "fixed epochs n = k b",
    }
}
