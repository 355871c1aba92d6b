//! trainkern: fused kernels for the hot paths of a training step, each written three times — a
//! CPU reference in Rust, hand-written PTX run through cudarc, and a WGSL shader run through
//! wgpu — behind one safe API.
//!
//! ```
//! use trainkern::{Device, noise::{self, Gaussian}};
//!
//! let dev = Device::best()?;                       // CUDA, a GPU adapter, or the CPU
//! let mut x = dev.upload(&vec![1.0f32; 1000])?;
//! let g = Gaussian { std: 0.5, seed: 42, stream: 7, offset: 0 };
//! noise::add_gaussian(&dev, &mut x, &g)?;
//! let got = x.download()?;
//!
//! let mut want = Device::cpu().upload(&vec![1.0f32; 1000])?; // the CPU reference
//! noise::add_gaussian(&Device::cpu(), &mut want, &g)?;
//! for (a, b) in got.iter().zip(want.download()?) {
//!     assert!((a - b).abs() <= 1e-5 + 1e-5 * b.abs());
//! }
//! # Ok::<(), trainkern::Error>(())
//! ```

pub mod backend;
pub mod bench;
pub mod buffer;
pub mod check;
mod error;
pub mod mf;
pub mod ops;
#[cfg(feature = "ptx-emu")]
pub mod ptx;
pub mod rng;
pub mod sources;
mod validate;

pub use backend::memory::MemoryUse;
pub use backend::{Backend, Device};
pub use buffer::{Buffer, DType, Element, Float};
pub use error::{Error, Result};
pub use ops::{clip, fft, mf_noise, noise, render, splat, upgd};

/// The README's Rust examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
