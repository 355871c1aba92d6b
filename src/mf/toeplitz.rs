//! Lower-triangular Toeplitz matrices by their first column: products, inverses, the power
//! series square root, and the workload filters of `design/mf.md`.

/// The first `n` coefficients of the workload filter: all ones for the prefix sum; SGD with
/// momentum `beta` gives `a_j = (1 - beta^(j+1)) / (1 - beta)`.
pub fn workload(n: usize, momentum: f64) -> Vec<f64> {
    if momentum == 0.0 {
        return vec![1.0; n];
    }
    let mut p = momentum;
    (0..n)
        .map(|_| {
            let a = (1.0 - p) / (1.0 - momentum);
            p *= momentum;
            a
        })
        .collect()
}

/// The power-series square root `y` of `a` (`y * y = a` as Toeplitz products):
/// `y_0 = sqrt(a_0)`, `y_j = (a_j - sum_{i=1}^{j-1} y_i y_{j-i}) / (2 y_0)`. For the prefix sum
/// the closed form `binom(2j, j) / 4^j` is used (exact and `O(n)`).
pub fn sqrt(a: &[f64]) -> Vec<f64> {
    if a.iter().all(|&x| x == 1.0) {
        return sqrt_prefix_sum(a.len());
    }
    let mut y = vec![0.0; a.len()];
    if a.is_empty() {
        return y;
    }
    y[0] = a[0].sqrt();
    for j in 1..a.len() {
        let s: f64 = (1..j).map(|i| y[i] * y[j - i]).sum();
        y[j] = (a[j] - s) / (2.0 * y[0]);
    }
    y
}

/// `c_j = binom(2j, j) / 4^j = c_{j-1} (2j - 1) / (2j)`.
pub fn sqrt_prefix_sum(n: usize) -> Vec<f64> {
    let mut c = Vec::with_capacity(n);
    let mut x = 1.0;
    for j in 0..n {
        if j > 0 {
            x *= (2 * j - 1) as f64 / (2 * j) as f64;
        }
        c.push(x);
    }
    c
}

/// The first column of the inverse of the Toeplitz matrix with first column `c` (`c_0 != 0`),
/// using only the first `bands` coefficients of `c` (all of them for `usize::MAX`): `O(n bands)`.
pub fn inverse(c: &[f64], bands: usize) -> Vec<f64> {
    let n = c.len();
    let mut r = vec![0.0; n];
    if n == 0 {
        return r;
    }
    r[0] = 1.0 / c[0];
    for t in 1..n {
        let top = t.min(bands.saturating_sub(1));
        let s: f64 = (1..=top).map(|i| c[i] * r[t - i]).sum();
        r[t] = -s / c[0];
    }
    r
}

/// The first `n` coefficients of `C^{-1}` for Toeplitz `C` with first column `c` (cut or
/// zero-padded to `n`): for the square root of the prefix sum the closed form
/// `r_j = -c_j / (2j - 1)` (`O(n)`), otherwise the recurrence (`O(n^2)`).
pub fn inverse_of(c: &[f64], n: usize) -> Vec<f64> {
    let mut c: Vec<f64> = c.iter().copied().take(n).collect();
    c.resize(n, 0.0);
    if c == sqrt_prefix_sum(n) {
        return (0..n)
            .map(|j| {
                if j == 0 {
                    1.0
                } else {
                    -c[j] / (2 * j - 1) as f64
                }
            })
            .collect();
    }
    inverse(&c, usize::MAX)
}

/// Column norms of the banded Toeplitz matrix with the `p` coefficients `c` (BandMF before its
/// column normalization): column `i` holds the first `min(p, n - i)` of them.
pub fn banded_column_norms(c: &[f64], n: usize) -> Vec<f64> {
    let p = c.len();
    let mut prefix = vec![0.0; p + 1];
    for (i, x) in c.iter().enumerate() {
        prefix[i + 1] = prefix[i] + x * x;
    }
    (0..n).map(|i| prefix[p.min(n - i)].sqrt()).collect()
}

/// The first `n` coefficients of the product of two Toeplitz matrices (a truncated
/// convolution), `O(n^2)`.
pub fn multiply(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    (0..n)
        .map(|t| {
            (0..=t)
                .filter(|&i| i < a.len() && t - i < b.len())
                .map(|i| a[i] * b[t - i])
                .sum()
        })
        .collect()
}

/// The dense `n x n` row-major matrix of first column `c`.
pub fn dense(c: &[f64], n: usize) -> Vec<f64> {
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            m[i * n + j] = c.get(i - j).copied().unwrap_or(0.0);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_roots_square_to_the_workload() {
        let n = 40;
        for beta in [0.0, 0.9] {
            let a = workload(n, beta);
            let y = sqrt(&a);
            let yy = multiply(&y, &y, n);
            for (u, v) in yy.iter().zip(&a) {
                assert!((u - v).abs() <= 1e-12 * v.abs().max(1.0), "{u} vs {v}");
            }
        }
        // The general recurrence and the closed form agree on the prefix sum.
        let mut a = vec![1.0; 30];
        a[0] = 1.0 + 1e-300; // not all ones: the recurrence path
        let y = sqrt(&a);
        for (u, v) in y.iter().zip(sqrt_prefix_sum(30)) {
            assert!((u - v).abs() <= 1e-14, "{u} vs {v}");
        }
    }

    #[test]
    fn inverse_of_the_square_root_has_the_known_coefficients() {
        // r_0 = 1, r_j = -c_j / (2j - 1).
        let c = sqrt_prefix_sum(12);
        let r = inverse(&c, usize::MAX);
        assert_eq!(r[0], 1.0);
        for j in 1..12 {
            let want = -c[j] / (2 * j - 1) as f64;
            assert!((r[j] - want).abs() <= 1e-15, "{j}: {} vs {want}", r[j]);
        }
        let one = multiply(&c, &r, 12);
        assert!((one[0] - 1.0).abs() < 1e-15 && one[1..].iter().all(|x| x.abs() < 1e-15));
    }
}
