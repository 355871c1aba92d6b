//! Fourier noise tables (Choquette-Choo et al. 2023, `design/mf.md` strategy 6): for each
//! coordinate, the cumulative noise `Y = (S Z)[:n]` with `S` the circulant square root of the
//! prefix sum's embedding (size `N = next_power_of_two(2n)`) and `Z` the RNG's Gaussians along
//! time; step `t`'s noise is `Y_t - Y_{t-1}`. `S Z` is a circular convolution, done with
//! `rustfft` in f64 on the host: `IFFT(sqrt(lambda) FFT(z))`, `lambda` the DFT of the embedding's
//! first column, in blocks of 64 coordinates in parallel, two coordinates per transform
//! as on the devices below (here always a global pair, so that shards give the same bits).
//!
//! The generator keeps the table as its state, one vector per step (`build`). On the CPU the
//! reference table comes from [`steps`]; on a device the table is built there, a chunk of
//! coordinates at a time: the chunk's Gaussians (`N x cols`, time-major, complex f32), the
//! crate's batched FFT along time ([`crate::fft`], interleaved layout), the root (with `1 / N`)
//! multiplied in, the inverse FFT, and the differences of the first `n` rows written into the
//! table. Each column of the spectrum carries two coordinates, one in the real part and one in
//! the imaginary: `S` is a real circulant, so `S (z + i z') = S z + i S z'`, and a chunk needs
//! half the FFTs and half the memory of one column per coordinate. As on the CPU the pairs are
//! global (`2k, 2k + 1`), so a device gives a coordinate the same bits in any shard or chunk.
//! The chunk is as wide as a state block, or narrower where `N x cols` complex values would
//! pass 256 MiB (one binding on wgpu).

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
    /// Columns of the spectrum buffer (the FFT's batch), two coordinates each, always a global
    /// pair `(2k, 2k + 1)`; the chunk's `count <= 2 cols - index % 2` coordinates are kept
    /// (with an odd `index`, the first column's real part is the coordinate before the chunk).
    pub cols: usize,
    pub count: usize,
    /// Steps `n`: vectors per coordinate of the table.
    pub steps: usize,
    /// Coordinates per state block.
    pub block: usize,
    pub blk: usize,
    pub col0: usize,
    /// Global RNG index of the chunk's first coordinate.
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
    // A block of `w` coordinates from an odd index spans ceil((w + 1) / 2) pairs.
    let cols = ((budget / (8 * big as u64)) as usize).min((block.min(len) + 1).div_ceil(2));
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
        let mut col0 = 0;
        while col0 < width {
            let index = offset + (blk * block + col0) as u64;
            let c = Chunk {
                big,
                cols,
                count: (2 * cols - (index % 2) as usize).min(width - col0),
                steps: n,
                block,
                blk,
                col0,
                index,
            };
            kernel(dev, Pass::Gaussians, &c, seed, &spec)?;
            fft.process(&mut spec, Direction::Forward)?;
            kernel(dev, Pass::Root(&root), &c, seed, &spec)?;
            fft.process(&mut spec, Direction::Inverse)?;
            kernel(dev, Pass::Diff(state), &c, seed, &spec)?;
            col0 += c.count;
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
    by_blocks(n, len, offset, seed, |cols, y| {
        let mut x = vec![0.0f32; n * cols];
        for t in 0..n {
            for i in 0..cols {
                let prev = if t > 0 { y[(t - 1) * cols + i] } else { 0.0 };
                x[t * cols + i] = (y[t * cols + i] - prev) as f32;
            }
        }
        x
    })
}

/// The table `Y` (`n x len`, time-major, f64) for coordinates `offset ..` under `seed`:
/// `z_j[i]` is the Gaussian of global index `offset + i` in stream [`STREAM_TAG`]` | j`.
pub fn cumulative(n: usize, len: usize, offset: u64, seed: u64) -> Vec<f64> {
    by_blocks(n, len, offset, seed, |_, y| y)
}

/// Coordinates per rayon task of the CPU table: their Gaussians (`N x COLS` f32) stay in cache
/// while they are transformed.
const COLS: usize = 64;

/// `n x len` values, time-major, made block by block in parallel: `f(cols, y)` turns the `Y`
/// of a block of up to [`COLS`] coordinates (`n x cols`, time-major, f64) into the block's
/// `n x cols` values.
fn by_blocks<T: Copy + Default + Send>(
    n: usize,
    len: usize,
    offset: u64,
    seed: u64,
    f: impl Fn(usize, Vec<f64>) -> Vec<T> + Sync,
) -> Vec<T> {
    let big = crate::mf::fourier::size(n);
    let mut planner = FftPlanner::<f64>::new();
    let plan = Transforms {
        big,
        fft: planner.plan_fft_forward(big),
        ifft: planner.plan_fft_inverse(big),
        root: crate::mf::fourier::root(n),
    };
    let starts: Vec<usize> = (0..len).step_by(COLS).collect();
    let blocks: Vec<Vec<T>> = starts
        .par_iter()
        .map(|&c0| {
            let cols = COLS.min(len - c0);
            f(cols, plan.block(n, offset + c0 as u64, cols, seed))
        })
        .collect();
    let mut out = vec![T::default(); n * len];
    for (c0, block) in starts.into_iter().zip(blocks) {
        let cols = COLS.min(len - c0);
        for t in 0..n {
            out[t * len + c0..][..cols].copy_from_slice(&block[t * cols..][..cols]);
        }
    }
    out
}

/// The transforms of the CPU table: `S z = IFFT(root FFT(z))`, `root` with `1 / N` left out.
struct Transforms {
    big: usize,
    fft: std::sync::Arc<dyn rustfft::Fft<f64>>,
    ifft: std::sync::Arc<dyn rustfft::Fft<f64>>,
    root: Vec<Complex<f64>>,
}

impl Transforms {
    /// `Y` of the global coordinates `first .. first + cols` (`n x cols`, time-major). Two
    /// coordinates per transform, one in the real part and one in the imaginary (`S` is a real
    /// circulant: `S (z + i z') = S z + i S z'`), always the global pairs `(2k, 2k + 1)`: a
    /// coordinate's value does not depend on where its shard or block starts (the other half of
    /// a pair cut by either end is drawn and dropped).
    fn block(&self, n: usize, first: u64, cols: usize, seed: u64) -> Vec<f64> {
        let big = self.big;
        let (lo, end) = (first & !1, first + cols as u64);
        let width = ((end - lo) as usize).next_multiple_of(2);
        // Z, time-major: row j holds z_j of the block's pairs. The partner past the last index
        // (u64::MAX, whose range end the RNG cannot take) stays zero.
        let drawn = width - usize::from(end == u64::MAX && width > (end - lo) as usize);
        let mut z = vec![0.0f32; big * width];
        for (j, row) in z.chunks_mut(width).enumerate() {
            rng::gaussians_into(seed, STREAM_TAG | j as u64, lo, &mut row[..drawn]);
        }
        let mut y = vec![0.0f64; n * cols];
        let mut v = vec![Complex::new(0.0, 0.0); big];
        for k in (0..width).step_by(2) {
            for (j, vj) in v.iter_mut().enumerate() {
                let zj = &z[j * width + k..];
                *vj = Complex::new(f64::from(zj[0]), f64::from(zj[1]));
            }
            self.fft.process(&mut v);
            for (x, r) in v.iter_mut().zip(&self.root) {
                *x *= r;
            }
            self.ifft.process(&mut v);
            for (part, g) in [(0, lo + k as u64), (1, lo + k as u64 + 1)] {
                if (first..first + cols as u64).contains(&g) {
                    let i = (g - first) as usize;
                    for t in 0..n {
                        let value = if part == 0 { v[t].re } else { v[t].im };
                        y[t * cols + i] = value / big as f64;
                    }
                }
            }
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two coordinates share a transform, always a global pair: a coordinate's `Y` (f64) and
    /// noise are the same bits whether it is computed alone, in a shard cut inside a pair, or in
    /// a block of a longer run (blocks starting at odd coordinates here).
    #[test]
    fn shards_cut_inside_a_pair_give_the_same_bits() {
        let (n, len, offset, seed) = (7, 200, 41, 3);
        let whole = cumulative(n, len, offset, seed);
        for i in [0, 1, 2, 63, 64, 65, 198, 199] {
            let alone = cumulative(n, 1, offset + i as u64, seed);
            for t in 0..n {
                assert_eq!(alone[t].to_bits(), whole[t * len + i].to_bits(), "{t},{i}");
            }
        }
        let whole = steps(n, len, offset, seed);
        let (a, b) = (
            steps(n, 3, offset, seed),
            steps(n, len - 3, offset + 3, seed),
        );
        for t in 0..n {
            assert_eq!(&a[t * 3..][..3], &whole[t * len..][..3]);
            assert_eq!(
                &b[t * (len - 3)..][..len - 3],
                &whole[t * len + 3..][..len - 3]
            );
        }
    }

    #[test]
    fn table_is_the_circulant_root_applied_to_the_rng() {
        // The second range ends at the last RNG index, cutting its last pair.
        for (n, len, offset, seed) in [(5, 3, 40, 9), (4, 3, u64::MAX - 3, 2)] {
            table_matches_the_direct_product(n, len, offset, seed);
        }
    }

    fn table_matches_the_direct_product(n: usize, len: usize, offset: u64, seed: u64) {
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
