//! Noise calibration: the noise multiplier `z` (`sigma = z * clip_norm * sens`) for a target
//! `(epsilon, delta)` and the reverse, unamplified by the analytic Gaussian mechanism (Balle &
//! Wang 2018) and amplified by Poisson sampling through RDP of the subsampled Gaussian (Mironov,
//! Talwar & Zhang 2019, integer orders 2..=256), converted with Balle et al. 2020's bound.

use crate::{Error, Result};

const OP: &str = "mf calibrate";

fn check_target(epsilon: f64, delta: f64) -> Result<()> {
    if !(epsilon.is_finite() && epsilon > 0.0 && delta > 0.0 && delta < 1.0) {
        return Err(Error::InvalidArgument {
            op: OP,
            what: format!("need epsilon > 0 (finite) and 0 < delta < 1, got {epsilon} and {delta}"),
        });
    }
    Ok(())
}

/// `erfc(x)` to about 1e-15 relative: the Taylor series of `erf` near 0, a continued fraction
/// (modified Lentz) elsewhere.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 0.5 {
        let (mut term, mut sum, x2) = (x, x, x * x);
        for n in 1..60 {
            term *= -x2 / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        return 1.0 - sum * 2.0 / std::f64::consts::PI.sqrt();
    }
    // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
    let tiny = 1e-300;
    let mut f = x;
    let (mut c, mut d) = (x, 0.0);
    for n in 1..5000 {
        let a = n as f64 / 2.0;
        d = x + a * d;
        d = if d.abs() < tiny { tiny } else { d };
        c = x + a / c;
        c = if c.abs() < tiny { tiny } else { c };
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / f
}

/// The standard normal CDF.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// The `delta` of the Gaussian mechanism with sensitivity 1 and noise std `z` at `epsilon`
/// (Balle & Wang 2018, Theorem 8): `Phi(1/(2z) - eps z) - e^eps Phi(-1/(2z) - eps z)`.
pub fn gaussian_delta(z: f64, epsilon: f64) -> f64 {
    let a = 1.0 / (2.0 * z);
    (normal_cdf(a - epsilon * z) - epsilon.exp() * normal_cdf(-a - epsilon * z)).max(0.0)
}

/// Bisection for an increasing predicate's threshold in `[lo, hi]` to relative 1e-12.
fn bisect(mut lo: f64, mut hi: f64, mut ok: impl FnMut(f64) -> bool) -> f64 {
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if ok(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
        if hi - lo <= 1e-12 * hi {
            break;
        }
    }
    hi
}

/// The smallest noise multiplier meeting `(epsilon, delta)` without amplification.
pub fn noise_multiplier(epsilon: f64, delta: f64) -> Result<f64> {
    check_target(epsilon, delta)?;
    Ok(bisect(1e-4, 1e4, |z| gaussian_delta(z, epsilon) <= delta))
}

/// The smallest epsilon of the Gaussian mechanism with multiplier `z` at `delta`.
pub fn epsilon(z: f64, delta: f64) -> Result<f64> {
    check_target(1.0, delta)?;
    check_z(z)?;
    Ok(bisect(0.0, 1e4, |e| gaussian_delta(z, e) <= delta))
}

fn check_z(z: f64) -> Result<()> {
    if z.is_finite() && z > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            op: OP,
            what: format!("noise multiplier must be finite and > 0, got {z}"),
        })
    }
}

fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        hi
    } else {
        hi + (lo - hi).exp().ln_1p()
    }
}

/// RDP at integer order `alpha >= 2` of the Poisson-subsampled Gaussian with rate `q` and
/// multiplier `z`: `log(sum_k C(alpha, k) (1-q)^(alpha-k) q^k exp((k^2 - k) / (2 z^2))) / (alpha - 1)`.
pub fn subsampled_rdp(q: f64, z: f64, alpha: u32) -> f64 {
    if q >= 1.0 {
        return f64::from(alpha) / (2.0 * z * z);
    }
    let a = f64::from(alpha);
    let mut log_binom = 0.0f64;
    let mut total = f64::NEG_INFINITY;
    for k in 0..=alpha {
        let kf = f64::from(k);
        if k > 0 {
            log_binom += ((a - kf + 1.0) / kf).ln();
        }
        let term =
            log_binom + (a - kf) * (-q).ln_1p() + kf * q.ln() + (kf * kf - kf) / (2.0 * z * z);
        total = log_add(total, term);
    }
    total / (a - 1.0)
}

/// Epsilon of `steps` compositions of the subsampled Gaussian at `delta`: the best integer
/// order of `rdp + log((a-1)/a) - (log delta + log a) / (a - 1)`.
pub fn amplified_epsilon(z: f64, q: f64, steps: usize, delta: f64) -> Result<f64> {
    check_target(1.0, delta)?;
    check_z(z)?;
    if !(q > 0.0 && q <= 1.0) {
        return Err(Error::InvalidArgument {
            op: OP,
            what: format!("sample rate must lie in (0, 1], got {q}"),
        });
    }
    let best = (2..=256u32)
        .map(|alpha| {
            let a = f64::from(alpha);
            steps as f64 * subsampled_rdp(q, z, alpha) + ((a - 1.0) / a).ln()
                - (delta.ln() + a.ln()) / (a - 1.0)
        })
        .fold(f64::INFINITY, f64::min);
    Ok(best.max(0.0))
}

/// The smallest multiplier with [`amplified_epsilon`] at most `epsilon`.
pub fn amplified_noise_multiplier(epsilon: f64, delta: f64, q: f64, steps: usize) -> Result<f64> {
    check_target(epsilon, delta)?;
    amplified_epsilon(1.0, q, steps, delta)?;
    Ok(bisect(1e-2, 1e3, |z| {
        amplified_epsilon(z, q, steps, delta).is_ok_and(|e| e <= epsilon)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_matches_known_values() {
        // Python's math.erfc (the C library's), an independent implementation.
        for (x, want) in [
            (0.0, 1.0),
            (0.3, 0.6713732405408726),
            (0.5, 0.4795001221869535),
            (1.0, 0.15729920705028513),
            (2.0, 0.004677734981047265),
            (3.0, 2.2090496998585438e-05),
            (6.0, 2.1519736712498916e-17),
            (10.0, 2.088487583762545e-45),
            (-1.0, 1.842700792949715),
        ] {
            let got = erfc(x);
            assert!(
                (got - want).abs() <= 1e-14 * want,
                "erfc({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn rdp_closed_forms() {
        // q = 1: the Gaussian mechanism, alpha / (2 z^2); alpha = 2: log(1 + q^2 (e^(1/z^2) - 1)).
        assert_eq!(subsampled_rdp(1.0, 2.0, 8), 1.0);
        for (q, z) in [(0.01, 1.0), (0.2, 0.7), (0.5, 3.0)] {
            let want = (1.0 + q * q * ((1.0f64 / (z * z)).exp() - 1.0)).ln();
            let got = subsampled_rdp(q, z, 2);
            // The terms are added in log space: about 1e-16 absolute on the log of 1 + 2e-4.
            assert!(
                (got - want).abs() <= 1e-15 + 1e-10 * want,
                "{got} vs {want}"
            );
        }
    }

    #[test]
    fn calibration_inverts() {
        let z = noise_multiplier(1.0, 1e-5).unwrap();
        assert!((gaussian_delta(z, 1.0) - 1e-5).abs() <= 1e-9 * 1e-5 * 1e3);
        let e = epsilon(z, 1e-5).unwrap();
        assert!((e - 1.0).abs() < 1e-9, "{e}");
        let za = amplified_noise_multiplier(2.0, 1e-5, 0.01, 1000).unwrap();
        let ea = amplified_epsilon(za, 0.01, 1000, 1e-5).unwrap();
        assert!(ea <= 2.0 && ea > 1.99, "{ea}");
    }
}
