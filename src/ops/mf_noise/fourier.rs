//! Fourier noise tables (Choquette-Choo et al. 2023, `design/mf.md` strategy 6): for each
//! coordinate, the cumulative noise `Y = (S Z)[:n]` with `S` the circulant square root of the
//! prefix sum's embedding (size `N = next_power_of_two(2n)`) and `Z` the RNG's Gaussians along
//! time; step `t`'s noise is `Y_t - Y_{t-1}`. `S Z` is a circular convolution, done with
//! `rustfft` in f64 on the host: `IFFT(sqrt(lambda) FFT(z))`, `lambda` the DFT of the embedding's
//! first column.

use rayon::prelude::*;
use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

use super::STREAM_TAG;
use crate::rng;

/// The per-step noise `x_t = Y_t - Y_{t-1}` (`n x len`, time-major, f32, differences taken in
/// f64) for coordinates `offset ..` under `seed`.
pub fn steps(n: usize, len: usize, offset: u64, seed: u64) -> Vec<f32> {
    let y = cumulative(n, len, offset, seed);
    let mut x = vec![0.0f32; n * len];
    for t in 0..n {
        for i in 0..len {
            let prev = if t > 0 { y[(t - 1) * len + i] } else { 0.0 };
            x[t * len + i] = (y[t * len + i] - prev) as f32;
        }
    }
    x
}

/// The table `Y` (`n x len`, time-major, f64) for coordinates `offset ..` under `seed`:
/// `z_j[i]` is the Gaussian of global index `offset + i` in stream [`STREAM_TAG`]` | j`.
pub fn cumulative(n: usize, len: usize, offset: u64, seed: u64) -> Vec<f64> {
    let big = crate::mf::fourier::size(n);
    let mut planner = FftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(big);
    let ifft = planner.plan_fft_inverse(big);
    let root = crate::mf::fourier::root(n);
    // Z, time-major: row j holds z_j for every coordinate.
    let z: Vec<Vec<f32>> = (0..big as u64)
        .into_par_iter()
        .map(|j| {
            let mut row = vec![0.0f32; len];
            rng::gaussians_into(seed, STREAM_TAG | j, offset, &mut row);
            row
        })
        .collect();
    let columns: Vec<Vec<f64>> = (0..len)
        .into_par_iter()
        .map(|i| {
            let mut v: Vec<Complex<f64>> = (0..big)
                .map(|j| Complex::new(f64::from(z[j][i]), 0.0))
                .collect();
            fft.process(&mut v);
            for (x, r) in v.iter_mut().zip(&root) {
                *x *= r;
            }
            ifft.process(&mut v);
            v[..n].iter().map(|c| c.re / big as f64).collect()
        })
        .collect();
    let mut y = vec![0.0f64; n * len];
    for (i, col) in columns.iter().enumerate() {
        for (t, v) in col.iter().enumerate() {
            y[t * len + i] = *v;
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_the_circulant_root_applied_to_the_rng() {
        let (n, len, offset, seed) = (5, 3, 40, 9);
        let big = crate::mf::fourier::size(n);
        let s = crate::mf::fourier::first_column(n);
        let y = cumulative(n, len, offset, seed);
        let x = steps(n, len, offset, seed);
        for i in 0..len {
            let z: Vec<f64> = (0..big as u64)
                .map(|j| crate::rng::gaussian_f64(seed, STREAM_TAG | j, offset + i as u64))
                .collect();
            for t in 0..n {
                // (S z)_t = sum_m s[(t - m) mod N] z_m.
                let want: f64 = (0..big).map(|m| s[(t + big - m) % big] * z[m]).sum();
                let got = y[t * len + i];
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{t},{i}: {got} vs {want}"
                );
                let prev = if t > 0 { y[(t - 1) * len + i] } else { 0.0 };
                assert_eq!(x[t * len + i], (got - prev) as f32);
            }
        }
    }
}
