//! The adaptive clip norm of Andrew et al. 2021 ("Differentially private learning with adaptive
//! clipping"): `C` tracks a quantile of the per-example norms, updated on the device from the
//! count the clip already produced, so a training loop never waits for the host.
//!
//! ```
//! use trainkern::{Device, clip::{AdaptiveClip, Bounds, ClipOptions, Clipper}};
//!
//! let dev = Device::cpu();
//! let (batch, d) = (4, 2);
//! let mut clipper = Clipper::flat(&dev, batch, d)?;
//! let adaptive = AdaptiveClip::new(batch, 11, 0);
//! let mut bound = dev.upload(&[1.0f32])?; // C, read and written on the device
//! let grads = dev.upload(&[0.1f32, 0.0, 2.0, 0.0, 3.0, 4.0, 3.0, 0.0])?;
//! let (mut sum, mut norms) = (dev.zeros(d)?, dev.zeros(batch)?);
//! for step in 0..3 {
//!     clipper.run(&grads, Bounds::Device(&bound), &ClipOptions::default(), &mut sum, &mut norms)?;
//!     adaptive.update(&dev, clipper.stats(), batch, &mut bound, step)?;
//! }
//! assert!(bound.download()?[0] > 1.0); // 3 of 4 rows clipped at C = 1: C grows
//! # Ok::<(), trainkern::Error>(())
//! ```
//!
//! With total noise multiplier `z` for the step, the gradient sum must use the multiplier of
//! [`split_noise_multiplier`], because the count is a private release too.

use super::{OP, internal, ptx};
use crate::backend::Device;
use crate::backend::ptx::PtxDevice;
use crate::buffer::{Buffer, Storage};
use crate::{Error, Result, rng, validate};

/// How `C` moves towards the quantile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Update {
    /// `C <- C * exp(-eta * (b - gamma))`, the paper's default.
    #[default]
    Geometric,
    /// `C <- C - eta * (b - gamma)`.
    Linear,
}

/// The update rule's parameters and the count noise's RNG stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveClip {
    /// `gamma`, the target fraction of unclipped rows.
    pub target_quantile: f32,
    /// `eta`.
    pub lr: f32,
    /// `sigma_b`, the std of the noise on the unclipped count.
    pub count_noise: f32,
    pub update: Update,
    /// The clamp `[min, max]` applied after each update (`max` may be `+inf`).
    pub min: f32,
    pub max: f32,
    /// The count noise of step `t` is the Gaussian of index `t` in (`seed`, `stream`); give it a
    /// stream of its own, apart from the gradient noise.
    pub seed: u64,
    pub stream: u64,
}

impl AdaptiveClip {
    /// The paper's defaults: `gamma = 0.5`, `eta = 0.2`, `sigma_b = batch / 20`, geometric,
    /// no clamp beyond `[0, +inf]`.
    pub fn new(batch: usize, seed: u64, stream: u64) -> AdaptiveClip {
        AdaptiveClip {
            target_quantile: 0.5,
            lr: 0.2,
            count_noise: batch as f32 / 20.0,
            update: Update::Geometric,
            min: 0.0,
            max: f32::INFINITY,
            seed,
            stream,
        }
    }

    /// Update the one-element `bound` from the stats of the clip that just ran with it
    /// ([`super::Clipper::stats`]), drawing the count noise of `step`. Unclipped rows are
    /// `batch - clipped`, with the clip's own rule (so a dropped non-finite row counts as
    /// clipped, and with `C = 0` even a zero row does). A clip whose bound was bad leaves it.
    pub fn update(
        &self,
        dev: &Device,
        stats: &Buffer<u32>,
        batch: usize,
        bound: &mut Buffer<f32>,
        step: u64,
    ) -> Result<()> {
        const OP: &str = "adaptive_clip";
        self.check()?;
        super::check_batch(OP, batch)?;
        validate::on_device(OP, "stats", dev, stats)?;
        validate::on_device(OP, "bound", dev, bound)?;
        validate::len(OP, "stats", super::STATS_LEN, stats.len())?;
        validate::len(OP, "bound", 1, bound.len())?;
        match &mut bound.storage {
            Storage::Cpu(c) => {
                let s = stats.as_host_slice().ok_or_else(|| internal("CPU stats"))?;
                if s[2] == 0 {
                    c[0] = self.next(s[0], batch, c[0], step)?;
                }
                Ok(())
            }
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => super::wgpu::adapt(stats, batch as u32, bound, self, step),
            #[allow(unreachable_patterns)]
            _ => {
                let dev = PtxDevice::of(dev).ok_or_else(|| internal("no PTX device"))?;
                ptx::adapt(&dev, stats, batch as u32, bound, self, step)
            }
        }
    }

    /// The reference update in f64 (rounded to f32 once): the new bound after a clip with
    /// `clipped` of `batch` rows clipped at bound `c`.
    pub fn next(&self, clipped: u32, batch: usize, c: f32, step: u64) -> Result<f32> {
        self.check()?;
        if clipped as usize > batch {
            return Err(Error::InvalidArgument {
                op: "adaptive_clip",
                what: format!("clipped count {clipped} exceeds the batch {batch}"),
            });
        }
        let z = f64::from(
            rng::gaussians_f32(rng::block(self.seed, self.stream, step / 4))[(step % 4) as usize],
        );
        let unclipped = (batch - clipped as usize) as f64;
        let b = (unclipped + f64::from(self.count_noise) * z) / batch as f64;
        let delta = f64::from(self.lr) * (b - f64::from(self.target_quantile));
        let c = f64::from(c);
        let next = match self.update {
            Update::Geometric => c * (-delta).exp(),
            Update::Linear => c - delta,
        };
        Ok(next.max(f64::from(self.min)).min(f64::from(self.max)) as f32)
    }

    fn check(&self) -> Result<()> {
        const OP: &str = "adaptive_clip";
        let bad = |what: String| Err(Error::InvalidArgument { op: OP, what });
        if !(0.0..=1.0).contains(&self.target_quantile) {
            return bad(format!(
                "target quantile must lie in [0, 1], got {}",
                self.target_quantile
            ));
        }
        validate::finite_non_negative(OP, "lr", self.lr)?;
        validate::finite_non_negative(OP, "count noise sigma_b", self.count_noise)?;
        validate::finite_non_negative(OP, "min", self.min)?;
        if self.max.is_nan() || self.max < self.min {
            return bad(format!(
                "max must be >= min ({}), got {}",
                self.min, self.max
            ));
        }
        Ok(())
    }
}

/// The noise multiplier of the gradient sum when the count is released with std `sigma_b` and
/// the whole step's multiplier is `z`: `(z^-2 - (2 sigma_b)^-2)^(-1/2)`. It exists only when
/// `z < 2 sigma_b`.
pub fn split_noise_multiplier(z: f64, sigma_b: f64) -> Result<f64> {
    let ok = z.is_finite() && z > 0.0 && sigma_b.is_finite() && sigma_b > 0.0;
    if !ok || z >= 2.0 * sigma_b {
        return Err(Error::InvalidArgument {
            op: OP,
            what: format!(
                "the noise multiplier z = {z} cannot be split with count noise sigma_b = \
                 {sigma_b}: it needs 0 < z < 2 sigma_b = {}",
                2.0 * sigma_b
            ),
        });
    }
    Ok((z.powi(-2) - (2.0 * sigma_b).powi(-2)).powf(-0.5))
}
