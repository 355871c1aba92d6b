//! The Fourier (FFT) mechanism (Choquette-Choo et al. 2023): the prefix-sum workload embedded in
//! a circulant of size `N = next_power_of_two(2n)`, and `S`, the circulant principal square root
//! of it: `B = S[:n, :]`, `C = S[:, :n]`, `B C = A`, the transforms by `rustfft` in f64.

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

/// `N` for `n` steps.
pub fn size(n: usize) -> usize {
    (2 * n).next_power_of_two()
}

/// `sqrt(lambda)`: the principal square root of the DFT of the embedding's first column
/// (`n` ones, then zeros), which is also the DFT of `s`.
pub(crate) fn root(n: usize) -> Vec<Complex<f64>> {
    let big = size(n);
    let mut v: Vec<Complex<f64>> = (0..big)
        .map(|j| Complex::new(if j < n { 1.0 } else { 0.0 }, 0.0))
        .collect();
    FftPlanner::<f64>::new()
        .plan_fft_forward(big)
        .process(&mut v);
    v.iter().map(|l| l.sqrt()).collect()
}

/// The real parts of the inverse DFT of `v`, normalized.
fn inverse_real(mut v: Vec<Complex<f64>>) -> Vec<f64> {
    let big = v.len();
    FftPlanner::<f64>::new()
        .plan_fft_inverse(big)
        .process(&mut v);
    v.iter().map(|c| c.re / big as f64).collect()
}

/// The first column `s` of `S` (length `N`): `s = IDFT(sqrt(DFT(a)))` by FFTs. `S` is real: the
/// imaginary parts cancel to rounding.
pub fn first_column(n: usize) -> Vec<f64> {
    inverse_real(root(n))
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
/// (indices mod `N`), the circular autocorrelation of `s`: `IDFT(|DFT(s)|^2)`. Returns
/// `rho(0 .. n)`; `rho(-d) = rho(d)`.
pub fn gram(n: usize) -> Vec<f64> {
    let power: Vec<Complex<f64>> = root(n)
        .iter()
        .map(|r| Complex::new(r.norm_sqr(), 0.0))
        .collect();
    let mut rho = inverse_real(power);
    rho.truncate(n);
    rho
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
