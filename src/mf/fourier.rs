//! The Fourier (FFT) mechanism (Choquette-Choo et al. 2023): the prefix-sum workload embedded in
//! a circulant of size `N = next_power_of_two(2n)`, and `S`, the circulant principal square root
//! of it: `B = S[:n, :]`, `C = S[:, :n]`, `B C = A`. The transforms here are direct `O(N^2)`
//! sums, enough for planning sizes; the noise tables of the device issue use FFTs.

use std::f64::consts::PI;

/// `N` for `n` steps.
pub fn size(n: usize) -> usize {
    (2 * n).next_power_of_two()
}

/// The first column `s` of `S` (length `N`): `s = IDFT(sqrt(DFT(a)))` with `a` the first column
/// of the circulant (`n` ones, then zeros) and the principal square root. `S` is real: the
/// imaginary parts cancel to rounding.
pub fn first_column(n: usize) -> Vec<f64> {
    let big = size(n);
    // DFT of a: lambda_k = sum_{j<n} e^{-2 pi i j k / N}.
    let lambda: Vec<(f64, f64)> = (0..big)
        .map(|k| {
            (0..n).fold((0.0, 0.0), |(re, im), j| {
                let ang = -2.0 * PI * ((j * k) % big) as f64 / big as f64;
                (re + ang.cos(), im + ang.sin())
            })
        })
        .collect();
    let root: Vec<(f64, f64)> = lambda
        .iter()
        .map(|&(re, im)| {
            // Principal square root of re + i im.
            let m = (re * re + im * im).sqrt();
            let r = ((m + re) / 2.0).max(0.0).sqrt();
            let i = ((m - re) / 2.0)
                .max(0.0)
                .sqrt()
                .copysign(if im == 0.0 { 1.0 } else { im });
            (r, i)
        })
        .collect();
    (0..big)
        .map(|j| {
            let s: f64 = root
                .iter()
                .enumerate()
                .map(|(k, &(re, im))| {
                    let ang = 2.0 * PI * ((j * k) % big) as f64 / big as f64;
                    re * ang.cos() - im * ang.sin()
                })
                .sum();
            s / big as f64
        })
        .collect()
}

/// `C = S[:, :n]`, `N x n` row-major.
pub fn c_matrix(n: usize) -> Vec<f64> {
    let big = size(n);
    let s = first_column(n);
    let mut c = vec![0.0; big * n];
    for i in 0..big {
        for j in 0..n {
            c[i * n + j] = s[(i + big - j) % big];
        }
    }
    c
}

/// `B = S[:n, :]`, `n x N` row-major.
pub fn b_matrix(n: usize) -> Vec<f64> {
    let big = size(n);
    let s = first_column(n);
    let mut b = vec![0.0; n * big];
    for i in 0..n {
        for j in 0..big {
            b[i * big + j] = s[(i + big - j) % big];
        }
    }
    b
}

/// Every row of a circulant has the same norm: `e_t = ||s||^2`.
pub fn errors(n: usize) -> Vec<f64> {
    let s = first_column(n);
    vec![s.iter().map(|x| x * x).sum(); n]
}

/// `X = C^T C` depends on `i - j` only: `X[i, j] = rho(i - j)`, `rho(d) = sum_u s_u s_{u + d}`
/// (indices mod `N`). Returns `rho(0 .. n)`; `rho(-d) = rho(d)`.
pub fn gram(n: usize) -> Vec<f64> {
    let big = size(n);
    let s = first_column(n);
    (0..n)
        .map(|d| (0..big).map(|u| s[u] * s[(u + d) % big]).sum())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_first_column_and_factorization() {
        let s = first_column(4);
        let want = [
            0.84112, 0.50186, 0.42378, 0.38742, -0.34112, -0.00186, 0.07622, 0.11258,
        ];
        for (a, b) in s.iter().zip(want) {
            assert!((a - b).abs() < 5e-6, "{a} vs {b}");
        }
        for n in [4, 7, 16] {
            let (b, c, big) = (b_matrix(n), c_matrix(n), size(n));
            for i in 0..n {
                for j in 0..n {
                    let v: f64 = (0..big).map(|m| b[i * big + m] * c[m * n + j]).sum();
                    let want = if j <= i { 1.0 } else { 0.0 };
                    assert!((v - want).abs() < 1e-12, "n={n} ({i},{j}): {v}");
                }
            }
        }
    }
}
