//! Buffered linear Toeplitz (BLT) strategies (Dvijotham et al. 2024; McMahan et al. 2024):
//! `C`'s coefficients `t_0 = 1`, `t_j = sum_i omega_i theta_i^(j-1)`, and `C^{-1}` by the same
//! `m`-buffer recurrence the noise kernels run.

use crate::{Error, Result};

pub(crate) fn check(theta: &[f64], omega: &[f64]) -> Result<()> {
    let ok = !theta.is_empty()
        && theta.len() == omega.len()
        && theta.iter().all(|&t| t > 0.0 && t < 1.0)
        && omega.iter().all(|&w| w > 0.0 && w.is_finite());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            op: "mf",
            what: format!(
                "BLT needs as many decays theta in (0, 1) as scales omega > 0 (at least one), \
                 got theta = {theta:?}, omega = {omega:?}"
            ),
        })
    }
}

/// The first `n` coefficients of `C`.
pub fn coefficients(theta: &[f64], omega: &[f64], n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    let mut pow: Vec<f64> = vec![1.0; theta.len()];
    for j in 0..n {
        if j == 0 {
            out.push(1.0);
            continue;
        }
        out.push(pow.iter().zip(omega).map(|(p, w)| p * w).sum());
        for (p, t) in pow.iter_mut().zip(theta) {
            *p *= t;
        }
    }
    out
}

/// The first `n` coefficients of `C^{-1}`: the response of `x_t = z_t - sum_i omega_i S_i`,
/// `S_i <- theta_i S_i + x_t` to a unit impulse, `O(n m)`.
pub fn inverse(theta: &[f64], omega: &[f64], n: usize) -> Vec<f64> {
    let mut s = vec![0.0; theta.len()];
    (0..n)
        .map(|t| {
            let z = if t == 0 { 1.0 } else { 0.0 };
            let x = z - s.iter().zip(omega).map(|(s, w)| s * w).sum::<f64>();
            for (s, th) in s.iter_mut().zip(theta) {
                *s = th * *s + x;
            }
            x
        })
        .collect()
}

/// Single-participation sensitivity, the squared norm of `C`'s first column in closed form:
/// `1 + sum_{i,j} omega_i omega_j (1 - (theta_i theta_j)^(n-1)) / (1 - theta_i theta_j)`.
pub fn single_sensitivity_squared(theta: &[f64], omega: &[f64], n: usize) -> f64 {
    let mut s = 1.0;
    for (ti, wi) in theta.iter().zip(omega) {
        for (tj, wj) in theta.iter().zip(omega) {
            let r = ti * tj;
            s += wi * wj * (1.0 - r.powi(n as i32 - 1)) / (1.0 - r);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mf::toeplitz;

    #[test]
    fn closed_forms_match_direct_sums() {
        let (theta, omega) = ([0.9, 0.4, 0.99], [0.3, 0.1, 0.05]);
        let n = 300;
        let c = coefficients(&theta, &omega, n);
        let direct: f64 = c.iter().map(|x| x * x).sum();
        let closed = single_sensitivity_squared(&theta, &omega, n);
        assert!(
            (direct - closed).abs() <= 1e-12 * direct,
            "{direct} vs {closed}"
        );
        let r = inverse(&theta, &omega, n);
        let one = toeplitz::multiply(&c, &r, n);
        assert!((one[0] - 1.0).abs() < 1e-14);
        assert!(one[1..].iter().all(|x| x.abs() < 1e-12));
        let want = toeplitz::inverse(&c, usize::MAX);
        for (a, b) in r.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12);
        }
    }
}
