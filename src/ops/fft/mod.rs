//! Batched complex FFTs of power-of-two length on every backend: the time axis of the Fourier
//! noise tables (`design/mf.md`, strategy 6) and a kernel users can check on its own.
//!
//! Data is complex f32 stored as `(re, im)` pairs, `batch` signals of `n` points each, either
//! one signal after another ([`Layout::Contiguous`]: point `k` of signal `b` at `b n + k`) or
//! with the batch as the fast axis ([`Layout::Interleaved`]: at `k batch + b`, the layout of a
//! time-major table whose columns are coordinates). The transform is rustfft's: forward
//! `X_j = sum_k x_k e^{-2 pi i j k / n}`, inverse with `+i` and no `1 / n`.
//!
//! The CPU reference runs rustfft in f64 and rounds once. The kernels (`kernels/fft.ptx`,
//! `shaders/fft.wgsl`) run `log2(n)` radix-2 Stockham stages in f32, each one launch that reads
//! one buffer and writes the other, with twiddles computed in f64 on the host; an odd number of
//! stages ends with one device copy back. Accuracy: relative L2 error of a few `1e-7` up to
//! `n = 2^20` (`tests/fft.rs` checks every power of two from 2 to 2^20 at `1e-5`).
//!
//! ```
//! use trainkern::Device;
//! use trainkern::fft::{Direction, Fft, Layout};
//!
//! let dev = Device::cpu();
//! let mut fft = Fft::new(&dev, 4, 1, Layout::Contiguous)?;
//! // An impulse at point 0 transforms to all ones.
//! let mut x = dev.upload(&[1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])?;
//! fft.process(&mut x, Direction::Forward)?;
//! assert_eq!(x.download()?, vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
//! # Ok::<(), trainkern::Error>(())
//! ```

mod cpu;
mod ptx;
#[cfg(feature = "wgpu")]
mod wgpu;

use crate::backend::Device;
use crate::backend::ptx::PtxDevice;
use crate::buffer::Buffer;
use crate::{Error, Result, validate};

const OP: &str = "fft";

/// The longest signal: `2^26` points.
pub const MAX_LEN: usize = 1 << 26;

/// Forward (`e^{-i...}`) or inverse (`e^{+i...}`, unnormalized).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Inverse,
}

/// Where point `k` of signal `b` sits, in complex elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `b n + k`: one signal after another.
    Contiguous,
    /// `k batch + b`: the batch is the fast axis.
    Interleaved,
}

/// A planned batched FFT: length, batch, layout, and what the device needs (twiddles and a
/// scratch buffer of the data's size).
pub struct Fft {
    dev: Device,
    n: usize,
    batch: usize,
    layout: Layout,
    /// `n / 2` complex twiddles `e^{-2 pi i k / n}` (device backends; empty on the CPU).
    twiddles: Option<Buffer<f32>>,
    /// The other buffer of the Stockham ping-pong (device backends).
    scratch: Option<Buffer<f32>>,
}

impl Fft {
    /// A plan for `batch >= 1` signals of `n` points, `n` a power of two in `[1, MAX_LEN]`.
    /// On wgpu the data must fit one binding.
    pub fn new(dev: &Device, n: usize, batch: usize, layout: Layout) -> Result<Fft> {
        if !n.is_power_of_two() || n > MAX_LEN {
            return Err(Error::InvalidArgument {
                op: OP,
                what: format!("n must be a power of two in [1, 2^26], got {n}"),
            });
        }
        if batch == 0 {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "batch must be at least 1".into(),
            });
        }
        let floats = floats_of(n, batch)?;
        let device = !matches!(dev, Device::Cpu);
        if let Some(limit) = binding_limit(dev)
            && floats as u64 * 4 > limit
        {
            return Err(Error::LimitExceeded {
                what: format!("{OP} on wgpu: bytes of the data (one binding)"),
                requested: floats as u64 * 4,
                max: limit,
            });
        }
        let (twiddles, scratch) = if device && n > 1 {
            (Some(dev.upload(&twiddles(n))?), Some(dev.zeros(floats)?))
        } else {
            (None, None)
        };
        Ok(Fft {
            dev: dev.clone(),
            n,
            batch,
            layout,
            twiddles,
            scratch,
        })
    }

    /// Points per signal.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Never: a plan has at least one point.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Signals per call.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The f32 elements of the data: `2 n batch`.
    pub fn floats(&self) -> usize {
        2 * self.n * self.batch
    }

    /// Transform `data` (`2 n batch` f32, on the plan's device) in place.
    pub fn process(&mut self, data: &mut Buffer<f32>, dir: Direction) -> Result<()> {
        validate::on_device(OP, "data", &self.dev, data)?;
        validate::len(OP, "data", self.floats(), data.len())?;
        if self.n == 1 {
            return Ok(());
        }
        let inverse = dir == Direction::Inverse;
        let (Some(tw), Some(scratch)) = (&self.twiddles, &mut self.scratch) else {
            let host = data.host_mut(OP)?;
            cpu::process(self.n, self.batch, self.layout, host, inverse);
            return Ok(());
        };
        let stages = Stages {
            log_half: self.n.trailing_zeros() - 1,
            batch: self.batch as u32,
            interleaved: self.layout == Layout::Interleaved,
            inverse,
        };
        run_stages(&self.dev, &stages, data, scratch, tw)?;
        // Stage s reads the data when s is even: an odd count leaves the result in scratch.
        if self.n.trailing_zeros() % 2 == 1 {
            self.dev.copy(scratch, data)?;
        }
        Ok(())
    }
}

/// Every stage of one call on the plan's device backend.
fn run_stages(
    dev: &Device,
    stages: &Stages,
    data: &Buffer<f32>,
    scratch: &Buffer<f32>,
    tw: &Buffer<f32>,
) -> Result<()> {
    #[cfg(feature = "wgpu")]
    if let Device::Wgpu(_) = dev {
        return wgpu::process(stages, data, scratch, tw);
    }
    let ptx = PtxDevice::of(dev).ok_or_else(|| Error::Unsupported {
        op: OP,
        backend: "this",
        what: "no PTX device behind the plan".into(),
    })?;
    ptx::process(&ptx, stages, data, scratch, tw)
}

/// What every stage of one call shares.
pub(crate) struct Stages {
    pub log_half: u32,
    pub batch: u32,
    pub interleaved: bool,
    pub inverse: bool,
}

impl Stages {
    /// Butterflies per stage.
    pub fn threads(&self) -> u64 {
        u64::from(self.batch) << self.log_half
    }
}

/// `2 n batch`, refused past what u32 thread arithmetic on every backend can index.
fn floats_of(n: usize, batch: usize) -> Result<usize> {
    let max = 1u64 << 32;
    let floats = (n as u64)
        .checked_mul(batch as u64)
        .and_then(|c| c.checked_mul(2))
        .filter(|&f| f <= max)
        .ok_or_else(|| Error::LimitExceeded {
            what: format!("{OP}: f32 elements of {batch} signals of {n} points"),
            requested: (n as u64).saturating_mul(batch as u64).saturating_mul(2),
            max,
        })?;
    Ok(floats as usize)
}

/// The bytes one binding can hold on `dev`, where the kernels bind whole buffers.
#[cfg_attr(not(feature = "wgpu"), allow(unused_variables))]
fn binding_limit(dev: &Device) -> Option<u64> {
    match dev {
        #[cfg(feature = "wgpu")]
        Device::Wgpu(w) => Some(w.chunk_bytes()),
        _ => None,
    }
}

/// `e^{-2 pi i k / n}` for `k < n / 2`, in f64 and rounded once, as `(re, im)` pairs. The
/// angle is reduced to the first octant so that cos and sin are evaluated where they are
/// exact to the last bit and the table keeps the symmetries of the circle.
fn twiddles(n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    for k in 0..n / 2 {
        let (s, c) = sincos_turns(k as f64 / n as f64);
        out.push(c as f32);
        out.push(-s as f32);
    }
    out
}

/// `(sin, cos)` of `2 pi x` for `x` in `[0, 1/2)`, through the octant `x` falls in.
fn sincos_turns(x: f64) -> (f64, f64) {
    use std::f64::consts::TAU;
    // x in [0, 1/2): reflect into [0, 1/8] with exact arithmetic on x (a dyadic fraction).
    let (mut y, mut swap, mut neg_cos) = (x, false, false);
    if y > 0.25 {
        y = 0.5 - y;
        neg_cos = true;
    }
    if y > 0.125 {
        y = 0.25 - y;
        swap = true;
    }
    let (s, c) = (TAU * y).sin_cos();
    let (s, c) = if swap { (c, s) } else { (s, c) };
    (s, if neg_cos { -c } else { c })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twiddles_are_the_roots_of_unity() {
        for n in [2usize, 8, 1024, 1 << 20] {
            let tw = twiddles(n);
            for k in (0..n / 2).step_by((n / 64).max(1)) {
                let a = -std::f64::consts::TAU * k as f64 / n as f64;
                assert!((f64::from(tw[2 * k]) - a.cos()).abs() <= 1e-7, "{n} {k}");
                assert!(
                    (f64::from(tw[2 * k + 1]) - a.sin()).abs() <= 1e-7,
                    "{n} {k}"
                );
            }
        }
        // Exact where the circle is: 1, -i at n / 4.
        let tw = twiddles(16);
        assert_eq!((tw[0], tw[1]), (1.0, -0.0));
        assert_eq!((tw[8], tw[9]), (0.0, -1.0));
    }
}
