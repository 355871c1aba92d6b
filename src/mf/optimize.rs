//! Strategy optimizers (`design/mf.md`, "Planning"), L-BFGS in f64, deterministic.
//!
//! - [`bandmf`]: BandMF coefficients for `n` steps and `p <= b` bands (so the sensitivity is
//!   exactly `k_eff` and only the error moves). The loss is the banded Toeplitz strategy's:
//!   with `c_0 = 1` and `nu^2 = sum c_i^2`, `A C^{-1} = nu W`, `W` Toeplitz of `w = cumsum(r)`,
//!   `r` from the banded recurrence, so the mean error is `nu^2 sum_j (n - j) w_j^2 / n` and the
//!   max error (the last row) `nu^2 sum_j w_j^2`: `O(n p)` per evaluation, with the gradient by
//!   the adjoint of the recurrence. Column normalization changes only the last `p - 1` columns;
//!   the plan reports the exact normalized loss.
//! - [`blt`]: BLT parameters for `n` steps and `m` buffers, `theta = sigmoid(a)` and
//!   `omega = exp(b)` (scaled to sum below 1 when `k > 1`, so `C` is non-negative and
//!   non-increasing and its sensitivity exact); the loss from the `O(n m)` recurrences, the
//!   gradient by central differences over the `2m` parameters.

use super::lbfgs::{Minimum, minimize};
use super::sensitivity::toeplitz_worst_case;
use super::{Objective, Participation, Strategy, blt as bltmod, toeplitz};
use crate::{Error, Result};

const OP: &str = "mf optimize";

/// The surrogate loss of the banded Toeplitz strategy with coefficients `[1, x...]` and its
/// gradient with respect to `x`.
pub fn bandmf_loss(x: &[f64], n: usize, objective: Objective) -> (f64, Vec<f64>) {
    let p = x.len() + 1;
    let c = |i: usize| if i == 0 { 1.0 } else { x[i - 1] };
    let mut r = vec![0.0; n];
    r[0] = 1.0;
    for t in 1..n {
        let top = t.min(p - 1);
        r[t] = -(1..=top).map(|i| c(i) * r[t - i]).sum::<f64>();
    }
    let lambda = |j: usize| match objective {
        Objective::Mean => (n - j) as f64 / n as f64,
        Objective::Max => 1.0,
    };
    let mut w = 0.0;
    let mut q = 0.0;
    let mut gw = vec![0.0; n];
    for t in 0..n {
        w += r[t];
        q += lambda(t) * w * w;
        gw[t] = 2.0 * lambda(t) * w;
    }
    let nu2 = 1.0 + x.iter().map(|v| v * v).sum::<f64>();
    // Adjoint: gr_t = sum_{j >= t} gw_j; rho_t = gr_t - sum_i c_i rho_{t+i}.
    let mut rho = vec![0.0; n];
    let mut suffix = 0.0;
    for t in (0..n).rev() {
        suffix += gw[t];
        let ahead: f64 = (1..p)
            .filter(|i| t + i < n)
            .map(|i| c(i) * rho[t + i])
            .sum();
        rho[t] = suffix - ahead;
    }
    let grad = (1..p)
        .map(|i| {
            let dq: f64 = -(i..n).map(|t| rho[t] * r[t - i]).sum::<f64>();
            2.0 * c(i) * q + nu2 * dq
        })
        .collect();
    (nu2 * q, grad)
}

/// Optimized BandMF for `part` (`p <= b`), from the truncated square root; the coefficients are
/// returned normalized to unit norm.
pub fn bandmf(
    part: &Participation,
    bands: usize,
    objective: Objective,
) -> Result<(Strategy, Minimum)> {
    if bands == 0 || bands > part.n || bands > part.min_sep {
        return Err(Error::InvalidArgument {
            op: OP,
            what: format!(
                "BandMF optimization needs 1 <= bands <= min(n, b) (so the sensitivity is exactly \
                 k_eff), got bands = {bands}, n = {}, b = {}",
                part.n, part.min_sep
            ),
        });
    }
    let start = toeplitz::sqrt_prefix_sum(bands);
    let m = minimize(
        |x, _| bandmf_loss(x, part.n, objective),
        &start[1..],
        2000,
        1e-12,
    );
    let mut c = vec![1.0];
    c.extend_from_slice(&m.x);
    let norm = c.iter().map(|v| v * v).sum::<f64>().sqrt();
    Ok((Strategy::Banded(c.iter().map(|v| v / norm).collect()), m))
}

fn sigmoid(a: f64) -> f64 {
    1.0 / (1.0 + (-a).exp())
}

/// BLT parameters from the unconstrained `[a (m), b (m)]`.
fn blt_params(y: &[f64], constrained: bool) -> (Vec<f64>, Vec<f64>) {
    let m = y.len() / 2;
    let theta: Vec<f64> = y[..m].iter().map(|&a| sigmoid(a)).collect();
    let mut omega: Vec<f64> = y[m..].iter().map(|&b| b.exp()).collect();
    if constrained {
        // sum omega < 1: t_1 < t_0, so C is non-increasing.
        let s: f64 = omega.iter().sum();
        let scale = sigmoid(s.ln()) / s; // maps the sum s to s / (1 + s)
        omega.iter_mut().for_each(|w| *w *= scale);
    }
    (theta, omega)
}

/// The BLT loss `sens^2 * reduce(e)` (infinite when the inverse recurrence blows up).
pub fn blt_loss(theta: &[f64], omega: &[f64], part: &Participation, objective: Objective) -> f64 {
    let n = part.n;
    let k = part.k_eff();
    let sens2 = if k == 1 {
        bltmod::single_sensitivity_squared(theta, omega, n)
    } else {
        toeplitz_worst_case(&bltmod::coefficients(theta, omega, n), k, part.min_sep)
    };
    let r = bltmod::inverse(theta, omega, n);
    let (mut w, mut e, mut sum) = (0.0, 0.0, 0.0);
    for x in r {
        w += x;
        e += w * w;
        sum += e;
    }
    let reduced = match objective {
        Objective::Mean => sum / n as f64,
        Objective::Max => e,
    };
    let loss = sens2 * reduced;
    if loss.is_finite() {
        loss
    } else {
        f64::INFINITY
    }
}

/// Optimized BLT with `m` buffers for `part`.
pub fn blt(
    part: &Participation,
    buffers: usize,
    objective: Objective,
) -> Result<(Strategy, Minimum)> {
    if !(1..=16).contains(&buffers) {
        return Err(Error::InvalidArgument {
            op: OP,
            what: format!("BLT buffers must lie in [1, 16], got {buffers}"),
        });
    }
    let constrained = part.k_eff() > 1;
    let n = part.n as f64;
    let mut y = Vec::with_capacity(2 * buffers);
    for i in 0..buffers {
        // Decays spread between 1 - n^(-1/(m+1)) and 1 - n^(-m/(m+1)).
        let theta = 1.0 - n.powf(-((i + 1) as f64) / (buffers + 1) as f64);
        let theta = theta.clamp(0.05, 1.0 - 1e-9);
        y.push((theta / (1.0 - theta)).ln());
    }
    y.extend((0..buffers).map(|_| (0.3 / buffers as f64).ln()));
    let f = |y: &[f64]| {
        let (t, w) = blt_params(y, constrained);
        blt_loss(&t, &w, part, objective)
    };
    let m = minimize(
        |y, want_grad| {
            let fy = f(y);
            if !want_grad {
                return (fy, Vec::new());
            }
            let grad = (0..y.len())
                .map(|i| {
                    let h = 1e-6 * y[i].abs().max(1.0);
                    let mut a = y.to_vec();
                    let mut b = y.to_vec();
                    a[i] += h;
                    b[i] -= h;
                    (f(&a) - f(&b)) / (2.0 * h)
                })
                .collect();
            (fy, grad)
        },
        &y,
        500,
        1e-9,
    );
    let (theta, omega) = blt_params(&m.x, constrained);
    Ok((Strategy::Blt { theta, omega }, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandmf_gradient_matches_central_differences() {
        let x = [0.4, 0.3, -0.1, 0.2];
        for objective in [Objective::Mean, Objective::Max] {
            let (_, g) = bandmf_loss(&x, 37, objective);
            for i in 0..x.len() {
                let h = 1e-6;
                let mut a = x;
                let mut b = x;
                a[i] += h;
                b[i] -= h;
                let fd = (bandmf_loss(&a, 37, objective).0 - bandmf_loss(&b, 37, objective).0)
                    / (2.0 * h);
                assert!(
                    (g[i] - fd).abs() <= 1e-6 * fd.abs().max(1.0),
                    "{i}: {} vs {fd}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn surrogate_is_the_unnormalized_toeplitz_error() {
        // The loss equals nu^2 times the Toeplitz strategy's errors reduced.
        let x = [0.5, 0.25];
        let n = 20;
        let c = [1.0, 0.5, 0.25];
        let e = Strategy::Toeplitz(c.to_vec()).errors(n);
        let nu2: f64 = c.iter().map(|v| v * v).sum();
        let mean = e.iter().sum::<f64>() / n as f64;
        let (f, _) = bandmf_loss(&x, n, Objective::Mean);
        assert!((f - nu2 * mean).abs() < 1e-12 * f);
        let (f, _) = bandmf_loss(&x, n, Objective::Max);
        assert!((f - nu2 * e[n - 1]).abs() < 1e-12 * f);
    }
}
