//! Plain Gaussian noise and raw RNG words (`design/clip.md`, "Plain Gaussian noise").
//!
//! - [`fill_gaussian`]: `out[j] = std * z(offset + j)`;
//! - [`add_gaussian`]: `x[j] += std * z(offset + j)`, in place;
//! - [`fill_bits`]: `out[j] = word(offset + j)`, the raw Philox words (bit-identical everywhere).
//!
//! `z` and `word` come from the crate's RNG ([`crate::rng`]) under `seed` and `stream`; `offset`
//! is the global index of element 0, so a tensor split across devices or chunks gets the same
//! numbers as the whole. Samples are computed in f32 and rounded once to the buffer's type.
//! An empty buffer is a no-op.

mod cpu;
mod ptx;
#[cfg(feature = "wgpu")]
mod wgpu;

use crate::backend::Device;
use crate::backend::ptx::with_buffer;
use crate::buffer::{Buffer, Float, Storage};
use crate::{Result, validate};

/// Gaussian noise of standard deviation `std` from RNG `seed` and `stream`, whose element 0 is
/// global element `offset`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gaussian {
    pub std: f32,
    pub seed: u64,
    pub stream: u64,
    pub offset: u64,
}

/// Whether the op overwrites its buffer or adds to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Fill,
    Add,
}

/// `out[j] = std * z(offset + j)`.
pub fn fill_gaussian<T: Float>(dev: &Device, out: &mut Buffer<T>, g: &Gaussian) -> Result<()> {
    gaussian("fill_gaussian", dev, out, g, Mode::Fill)
}

/// `x[j] += std * z(offset + j)`, in place (the sum is formed in f32 and rounded once).
pub fn add_gaussian<T: Float>(dev: &Device, x: &mut Buffer<T>, g: &Gaussian) -> Result<()> {
    gaussian("add_gaussian", dev, x, g, Mode::Add)
}

fn gaussian<T: Float>(
    op: &'static str,
    dev: &Device,
    buf: &mut Buffer<T>,
    g: &Gaussian,
    mode: Mode,
) -> Result<()> {
    validate::on_device(op, "buffer", dev, buf)?;
    validate::finite_non_negative(op, "std", g.std)?;
    validate::index_range(op, g.offset, buf.len())?;
    if buf.is_empty() {
        return Ok(());
    }
    match &mut buf.storage {
        Storage::Cpu(v) => {
            cpu::gaussian(v, g, mode);
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Storage::Wgpu(s) => wgpu::gaussian::<T>(s, buf.len, g, mode),
        #[allow(unreachable_patterns)]
        s => with_buffer(op, s, buf.len, |dev, data| {
            ptx::gaussian(dev, data, buf.len, g, mode, T::DTYPE)
        }),
    }
}

/// `out[j] = word(offset + j)`: the raw Philox words of `seed` and `stream`.
pub fn fill_bits(
    dev: &Device,
    out: &mut Buffer<u32>,
    seed: u64,
    stream: u64,
    offset: u64,
) -> Result<()> {
    const OP: &str = "fill_bits";
    validate::on_device(OP, "out", dev, out)?;
    validate::index_range(OP, offset, out.len())?;
    if out.is_empty() {
        return Ok(());
    }
    match &mut out.storage {
        Storage::Cpu(v) => {
            cpu::bits(v, seed, stream, offset);
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Storage::Wgpu(s) => wgpu::bits(s, out.len, seed, stream, offset),
        #[allow(unreachable_patterns)]
        s => with_buffer(OP, s, out.len, |dev, data| {
            ptx::bits(dev, data, out.len, seed, stream, offset)
        }),
    }
}
