//! Fourier noise tables (Choquette-Choo et al. 2023, `design/mf.md` strategy 6): for each
//! coordinate, the cumulative noise `Y = (S Z)[:n]` with `S` the circulant square root of the
//! prefix sum's embedding (size `N = next_power_of_two(2n)`) and `Z` the RNG's Gaussians along
//! time; step `t`'s noise is `Y_t - Y_{t-1}`. `S Z` is a circular convolution, done with
//! `rustfft` in f64 on the host: `IFFT(sqrt(lambda) FFT(z))`, `lambda` the DFT of the embedding's
//! first column.
//!
//! The generator keeps the table as its state, one vector per step (`build`). On the CPU the
//! reference table comes from [`steps`]; on a device the table is built there, a chunk of
//! coordinates at a time: the chunk's Gaussians (`N x cols`, time-major, complex f32), the
//! crate's batched FFT along time ([`crate::fft`], interleaved layout), the root (with `1 / N`)
//! multiplied in, the inverse FFT, and the differences of the first `n` rows written into the
//! table. Each column of the spectrum carries two coordinates, one in the real part and one in
//! the imaginary: `S` is a real circulant, so `S (z + i z') = S z + i S z'`, and a chunk needs
//! half the FFTs and half the memory of one column per coordinate. The chunk is as wide as a
//! state block, or narrower where `N x cols` complex values would pass 256 MiB (one binding on
//! wgpu).

use rayon::prelude::*;
use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

use super::state::State;
use super::{OP, STREAM_TAG};
use crate::backend::Device;
use crate::backend::ptx::PtxDevice;
use crate::buffer::{Buffer, Float};
use crate::fft::{Direction, Fft, Layout};
use crate::{Error, Result, rng};

/// One chunk of a device build: columns `col0 .. col0 + count` of state block `blk`.
pub(super) struct Chunk {
    /// `N`, the circulant's size.
    pub big: usize,
    /// Columns of the spectrum buffer (the FFT's batch), two coordinates each; the chunk's
    /// `count <= 2 cols` coordinates are kept.
    pub cols: usize,
    pub count: usize,
    /// Steps `n`: vectors per coordinate of the table.
    pub steps: usize,
    /// Coordinates per state block.
    pub block: usize,
    pub blk: usize,
    pub col0: usize,
    /// Global RNG index of the chunk's first column.
    pub index: u64,
}

/// Write the per-step table of `n` steps for coordinates `offset .. offset + len` into `state`
/// (vector `t` of coordinate `i` at `((i / block) n + t) block + i % block`).
pub(super) fn build(
    dev: &Device,
    n: usize,
    len: usize,
    offset: u64,
    seed: u64,
    block: usize,
    state: &mut State,
) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    if dev.backend() == crate::Backend::Cpu {
        let x = steps(n, len, offset, seed);
        fn put<S: Float>(host: &mut [S], x: &[f32], n: usize, len: usize, block: usize) {
            for i in 0..len {
                let (b, r) = (i / block, i % block);
                for t in 0..n {
                    host[(b * n + t) * block + r] = S::from_f32(x[t * len + i]);
                }
            }
        }
        match state {
            State::F32(s) => put(s.host_mut(OP)?, &x, n, len, block),
            State::Bf16(s) => put(s.host_mut(OP)?, &x, n, len, block),
        }
        return Ok(());
    }
    let big = crate::mf::fourier::size(n);
    let budget: u64 = match dev {
        #[cfg(feature = "wgpu")]
        Device::Wgpu(w) => w.chunk_bytes().min(1 << 28),
        _ => 1 << 28,
    };
    let cols = ((budget / (8 * big as u64)) as usize)
        .min(block.div_ceil(2))
        .min(len.div_ceil(2));
    if cols == 0 {
        return Err(Error::LimitExceeded {
            what: format!("{OP}: bytes of one coordinate's Fourier spectrum (N = {big})"),
            requested: 8 * big as u64,
            max: budget,
        });
    }
    let mut fft = Fft::new(dev, big, cols, Layout::Interleaved)?;
    let scale = 1.0 / big as f64;
    let root: Vec<f32> = crate::mf::fourier::root(n)
        .iter()
        .flat_map(|c| [(c.re * scale) as f32, (c.im * scale) as f32])
        .collect();
    let root = dev.upload(&root)?;
    let mut spec = dev.zeros::<f32>(2 * big * cols)?;
    for blk in 0..len.div_ceil(block) {
        let width = block.min(len - blk * block);
        for col0 in (0..width).step_by(2 * cols) {
            let c = Chunk {
                big,
                cols,
                count: (2 * cols).min(width - col0),
                steps: n,
                block,
                blk,
                col0,
                index: offset + (blk * block + col0) as u64,
            };
            kernel(dev, Pass::Gaussians, &c, seed, &spec)?;
            fft.process(&mut spec, Direction::Forward)?;
            kernel(dev, Pass::Root(&root), &c, seed, &spec)?;
            fft.process(&mut spec, Direction::Inverse)?;
            kernel(dev, Pass::Diff(state), &c, seed, &spec)?;
        }
    }
    Ok(())
}

/// The build kernels of one chunk, each with what it reads besides the spectrum.
pub(super) enum Pass<'a> {
    /// `mfn_fourier_z`: the chunk's Gaussians into the spectrum buffer.
    Gaussians,
    /// `mfn_fourier_root`: the spectrum times the root.
    Root(&'a Buffer<f32>),
    /// `mfn_fourier_diff`: the per-step differences into the state (the table).
    Diff(&'a State),
}

impl Pass<'_> {
    pub fn entry(&self) -> &'static str {
        match self {
            Pass::Gaussians => "mfn_fourier_z",
            Pass::Root(_) => "mfn_fourier_root",
            Pass::Diff(_) => "mfn_fourier_diff",
        }
    }
}

/// One build kernel on the device's backend.
fn kernel(dev: &Device, pass: Pass<'_>, c: &Chunk, seed: u64, spec: &Buffer<f32>) -> Result<()> {
    #[cfg(feature = "wgpu")]
    if let Device::Wgpu(_) = dev {
        return super::wgpu::fourier(pass, c, seed, spec);
    }
    let ptx = PtxDevice::of(dev).ok_or_else(|| super::internal("no PTX device"))?;
    super::ptx::fourier(&ptx, pass, c, seed, spec)
}

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
