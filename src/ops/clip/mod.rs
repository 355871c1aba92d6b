//! Per-example clipping for DP-SGD (`design/clip.md`): flat and grouped (per-layer) clipping
//! fused with Gaussian noise ([`Clipper`]), ghost norms for linear layers ([`ghost_norms`],
//! [`GhostReducer`]), and the adaptive clip norm of Andrew et al. 2021 ([`AdaptiveClip`]).
//!
//! [`Clipper`] takes per-example gradients `G` (`B` rows by `d` columns, row-major, f32, f16 or
//! bf16) and writes, without a host round trip:
//!
//! - `sum[k] = scale * (sum_i c_i G[i, k] + sigma z(k))` in f32, where `z` is the crate's RNG
//!   (the same numbers as [`crate::noise::add_gaussian`] at the same seed, stream and offset)
//!   and `sigma = noise_multiplier * C`;
//! - `norms[i] = ||G[i, :]||` in f32;
//! - the counts of clipped rows (`c_i < 1`, which includes dropped rows) and of non-finite rows,
//!   in a small device buffer ([`Clipper::stats`]) that [`AdaptiveClip`] reads directly.
//!
//! The clip factor follows the table of `clip.md`: a row whose norm is NaN or infinite gets
//! `c_i = 0` and is counted as non-finite (its values never reach the sum, so the sum stays
//! finite); `C = +inf` gives 1; `C = 0` gives 0; a zero row gives 1; otherwise
//! `min(1, C / n_i)` ([`ClipRule::Exact`]) or `min(1, C / (n_i + 1e-6))` ([`ClipRule::Opacus`]).
//!
//! Grouped clipping ([`Clipper::grouped`]) cuts the columns at offsets `0 = o[0] < ... < o[L] =
//! d` (one group per parameter tensor, say), clips each (row, group) with its own bound `C_l`
//! and writes `norms` as a `B x L` matrix. Every coordinate gets noise of std
//! `noise_multiplier * sqrt(sum_l C_l^2)`, the sensitivity of the whole example: this is what
//! Opacus's per-layer optimizer does, and it means per-layer bounds buy no noise reduction. A
//! row with a non-finite value in any group is dropped whole (every `c_il = 0`) and counted
//! once; a row counts as clipped when any of its groups is.
//!
//! Accuracy: on GPUs the norms are accumulated in f32 (per-thread sums, then a fixed tree), on
//! the CPU in f64, so a row norm past about `1.8e19` overflows f32 on a GPU and that row is
//! dropped as non-finite there while the CPU keeps it. The sum over rows is accumulated in f32
//! by fused multiply-adds on GPUs and in f64 on the CPU.
//!
//! ```
//! use trainkern::{Device, clip::{Bounds, ClipNoise, ClipOptions, Clipper}};
//!
//! let dev = Device::cpu();
//! let (batch, d) = (2, 3);
//! let grads = dev.upload(&[3.0f32, 0.0, 4.0, /* norm 5 */ 0.3, 0.4, 0.0 /* norm 0.5 */])?;
//! let mut sum = dev.zeros::<f32>(d)?;
//! let mut norms = dev.zeros::<f32>(batch)?;
//! let mut clipper = Clipper::flat(&dev, batch, d)?;
//! let opts = ClipOptions::default(); // ClipRule::Exact, no noise, scale 1
//! clipper.run(&grads, Bounds::Host(&[1.0]), &opts, &mut sum, &mut norms)?;
//! assert_eq!(norms.download()?, vec![5.0, 0.5]);
//! let s = sum.download()?; // 0.2 * row 0 + row 1
//! assert!((s[0] - 0.9).abs() < 1e-6 && (s[1] - 0.4).abs() < 1e-6 && (s[2] - 0.8).abs() < 1e-6);
//! assert_eq!(clipper.counts()?.clipped, 1);
//!
//! // DP-SGD's aggregation: noise of std 1.1 * C, mean over the expected batch size.
//! let opts = ClipOptions {
//!     noise: Some(ClipNoise { multiplier: 1.1, seed: 7, stream: 0, offset: 0 }),
//!     scale: 1.0 / 256.0,
//!     ..ClipOptions::default()
//! };
//! clipper.run(&grads, Bounds::Host(&[1.0]), &opts, &mut sum, &mut norms)?;
//! # Ok::<(), trainkern::Error>(())
//! ```
//!
//! Sizes: `B >= 1` and `d >= 1` (an empty batch or gradient is an error, not a silent no-op);
//! `d < 2^32` and `B < 2^32`.

mod adaptive;
mod cpu;
mod ghost;
mod layout;
mod ptx;
#[cfg(feature = "wgpu")]
mod wgpu;

pub use adaptive::{AdaptiveClip, Update, split_noise_multiplier};
pub use ghost::{GhostMethod, GhostReducer, GhostShape, ghost_method, ghost_norms, ghost_norms_by};

use crate::backend::Device;
use crate::backend::ptx::PtxDevice;
use crate::buffer::{Buffer, Float, Storage};
use crate::{Error, Result, validate};
use layout::Layout;

const OP: &str = "clip";

/// The last rule of the clip-factor table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClipRule {
    /// `min(1, C / n)`, the careful form of jax_privacy.
    #[default]
    Exact,
    /// `min(1, C / (n + 1e-6))`, for reproducing Opacus.
    Opacus,
}

impl std::str::FromStr for ClipRule {
    type Err = Error;

    /// `exact` or `opacus`.
    fn from_str(s: &str) -> Result<ClipRule> {
        match s {
            "exact" => Ok(ClipRule::Exact),
            "opacus" => Ok(ClipRule::Opacus),
            _ => Err(Error::InvalidArgument {
                op: OP,
                what: format!("clip rule must be exact or opacus, got {s:?}"),
            }),
        }
    }
}

impl ClipRule {
    pub(crate) fn kernel_code(self) -> u32 {
        match self {
            ClipRule::Exact => 0,
            ClipRule::Opacus => 1,
        }
    }
}

/// Gaussian noise added to the clipped sum: std `multiplier * C` (grouped:
/// `multiplier * sqrt(sum C_l^2)`), element `k` of the sum drawing RNG index `offset + k`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipNoise {
    pub multiplier: f32,
    pub seed: u64,
    pub stream: u64,
    /// The global index of column 0, so shards of one model draw the numbers of the whole.
    pub offset: u64,
}

/// What a clip does besides clipping and summing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipOptions {
    pub rule: ClipRule,
    /// `None` (or a multiplier of 0) adds no noise.
    pub noise: Option<ClipNoise>,
    /// A final factor on the sum, e.g. `1 / expected_batch_size` for a mean loss.
    pub scale: f32,
}

impl Default for ClipOptions {
    fn default() -> Self {
        ClipOptions {
            rule: ClipRule::Exact,
            noise: None,
            scale: 1.0,
        }
    }
}

/// The clip bounds: one per group (one for flat clipping).
#[derive(Clone, Copy, Debug)]
pub enum Bounds<'a> {
    /// Values checked on the host (`>= 0`, not NaN; `+inf` means no clipping) and copied to
    /// the clipper's own device buffer when they differ from the last run's (on CUDA that copy
    /// waits for the stream, so a loop that changes `C` every step should keep it on the
    /// device).
    Host(&'a [f32]),
    /// A device buffer, e.g. the one [`AdaptiveClip::update`] writes. Its values cannot be
    /// checked without a host round trip: a negative or NaN bound makes every output of the
    /// sum NaN and [`Clipper::counts`] return an error.
    Device(&'a Buffer<f32>),
}

impl<'a> Bounds<'a> {
    /// Check the `count` bounds. Host values go to `own` (`None` returned); a caller's device
    /// buffer is returned.
    pub(crate) fn resolve(
        self,
        op: &'static str,
        dev: &Device,
        count: usize,
        own: &mut HostBounds,
    ) -> Result<Option<&'a Buffer<f32>>> {
        match self {
            Bounds::Host(v) => {
                validate::len(op, "bounds (one per group)", count, v.len())?;
                check_bounds(v)?;
                own.set(v)?;
                Ok(None)
            }
            Bounds::Device(buf) => {
                validate::on_device(op, "bounds", dev, buf)?;
                validate::len(op, "bounds (one per group)", count, buf.len())?;
                if let Some(v) = buf.as_host_slice() {
                    check_bounds(v)?;
                }
                Ok(Some(buf))
            }
        }
    }
}

/// A clipper's own device copy of host bounds. It is written only when the values change: a
/// host-to-device copy from pageable memory waits for the CUDA stream, and a training loop with
/// a fixed `C` should not wait every step.
pub(crate) struct HostBounds {
    pub buf: Buffer<f32>,
    last: Option<Vec<f32>>,
}

impl HostBounds {
    pub fn new(dev: &Device, count: usize) -> Result<HostBounds> {
        Ok(HostBounds {
            buf: dev.zeros(count)?,
            last: None,
        })
    }

    fn set(&mut self, v: &[f32]) -> Result<()> {
        let same = self
            .last
            .as_deref()
            .is_some_and(|l| l.iter().zip(v).all(|(a, b)| a.to_bits() == b.to_bits()));
        if !same {
            self.buf.write(v)?;
            self.last = Some(v.to_vec());
        }
        Ok(())
    }
}

/// Zero a stats buffer before a factor pass adds to it, without waiting for the device.
pub(crate) fn zero_stats(dev: &Device, stats: &mut Buffer<u32>) -> Result<()> {
    match &mut stats.storage {
        Storage::Cpu(v) => {
            v.fill(0);
            Ok(())
        }
        // A queued write: ordered before the next submission, nothing waits.
        #[cfg(feature = "wgpu")]
        Storage::Wgpu(_) => stats.write(&[0; STATS_LEN]),
        #[allow(unreachable_patterns)]
        _ => {
            let dev = PtxDevice::of(dev).ok_or_else(|| internal("no PTX device"))?;
            ptx::zero(&dev, stats)
        }
    }
}

/// The counts of the last clip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClipCounts {
    /// Rows with `c_i < 1`, dropped rows included.
    pub clipped: u32,
    /// Rows with a NaN or infinite norm, dropped from the sum.
    pub nonfinite: u32,
}

/// Layout of [`Clipper::stats`]: `[clipped, nonfinite, bad bound flag, sigma bits]`.
pub const STATS_LEN: usize = 4;

/// A planned clip for one batch size and column layout: it owns the tile table and the
/// device workspace, so a training step allocates nothing.
pub struct Clipper {
    dev: Device,
    batch: usize,
    layout: Layout,
    table: Buffer<u32>,
    partials: Buffer<f32>,
    factors: Buffer<f32>,
    stats: Buffer<u32>,
    bounds: HostBounds,
}

impl Clipper {
    /// Flat clipping of `batch` rows of `dim` columns.
    pub fn flat(dev: &Device, batch: usize, dim: usize) -> Result<Clipper> {
        Clipper::grouped(dev, batch, &[0, dim])
    }

    /// Grouped clipping: `offsets` strictly increasing from 0 to `d` (`L + 1` entries).
    pub fn grouped(dev: &Device, batch: usize, offsets: &[usize]) -> Result<Clipper> {
        check_offsets(offsets)?;
        check_batch(OP, batch)?;
        let window = column_window(dev);
        let layout = Layout::new(OP, offsets, window)?;
        let groups = layout.groups();
        let cells = batch
            .checked_mul(groups)
            .ok_or_else(|| too_large("batch x groups", batch, groups))?;
        // The CPU reference sums whole rows and keeps no partial sums.
        let partial_cells = if matches!(dev, Device::Cpu) {
            0
        } else {
            batch
                .checked_mul(layout.tiles.len())
                .ok_or_else(|| too_large("batch x tiles", batch, layout.tiles.len()))?
        };
        Ok(Clipper {
            table: dev.upload(&layout.table())?,
            partials: dev.zeros(partial_cells)?,
            factors: dev.zeros(cells)?,
            stats: dev.zeros(STATS_LEN)?,
            bounds: HostBounds::new(dev, groups)?,
            dev: dev.clone(),
            batch,
            layout,
        })
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn dim(&self) -> usize {
        self.layout.dim()
    }

    pub fn groups(&self) -> usize {
        self.layout.groups()
    }

    /// Clip the rows of `grads`, sum them into `sum` (`d`) with the options' noise and scale,
    /// and write the norms (`B x L`). Everything stays on the device.
    pub fn run<T: Float>(
        &mut self,
        grads: &Buffer<T>,
        bounds: Bounds<'_>,
        opts: &ClipOptions,
        sum: &mut Buffer<f32>,
        norms: &mut Buffer<f32>,
    ) -> Result<()> {
        let (b, d, l) = (self.batch, self.dim(), self.groups());
        validate::on_device(OP, "grads", &self.dev, grads)?;
        validate::on_device(OP, "sum", &self.dev, sum)?;
        validate::on_device(OP, "norms", &self.dev, norms)?;
        validate::len(OP, "grads (batch x d)", b * d, grads.len())?;
        validate::len(OP, "sum", d, sum.len())?;
        validate::len(OP, "norms (batch x groups)", b * l, norms.len())?;
        if !opts.scale.is_finite() {
            return Err(Error::InvalidArgument {
                op: OP,
                what: format!("scale must be finite, got {}", opts.scale),
            });
        }
        let noise = match opts.noise {
            Some(n) => {
                validate::finite_non_negative(OP, "noise multiplier", n.multiplier)?;
                validate::index_range(OP, n.offset, d)?;
                (n.multiplier > 0.0).then_some(n)
            }
            None => None,
        };
        let bounds = bounds.resolve(OP, &self.dev, l, &mut self.bounds)?;
        zero_stats(&self.dev, &mut self.stats)?;
        let bounds = bounds.unwrap_or(&self.bounds.buf);
        let run = Run {
            rule: opts.rule,
            noise,
            scale: opts.scale,
        };
        match &grads.storage {
            Storage::Cpu(g) => {
                let c = bounds.as_host_slice().unwrap_or_default().to_vec();
                let (s, n, f) = (
                    sum.host_mut(OP)?,
                    norms.host_mut(OP)?,
                    self.factors.host_mut(OP)?,
                );
                let stats = cpu::clip(g, b, &self.layout, &c, &run, s, n, f);
                self.stats.host_mut(OP)?.copy_from_slice(&stats);
                Ok(())
            }
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => wgpu::clip(self, grads, bounds, &run, sum, norms),
            #[allow(unreachable_patterns)]
            _ => {
                let dev = PtxDevice::of(&self.dev).ok_or_else(|| internal("no PTX device"))?;
                ptx::clip(&dev, self, grads, bounds, &run, sum, norms)
            }
        }
    }

    /// The factor pass of a run on a GPU backend.
    pub(crate) fn factor_pass<'a>(
        &'a self,
        bounds: &'a Buffer<f32>,
        run: &Run,
        norms: &'a Buffer<f32>,
    ) -> FactorPass<'a> {
        FactorPass {
            partials: &self.partials,
            ntiles: self.layout.tiles.len() as u32,
            table: &self.table,
            groups_at: self.layout.groups_at() as u32,
            groups: self.groups() as u32,
            batch: self.batch as u32,
            bounds,
            rule: run.rule,
            multiplier: run.noise.map_or(0.0, |n| n.multiplier),
            norms,
            factors: &self.factors,
            stats: &self.stats,
        }
    }

    /// The counts of the last run (waits for it). An error if a device bound was negative or
    /// NaN.
    pub fn counts(&self) -> Result<ClipCounts> {
        read_stats(&self.stats)
    }

    /// The device buffer `[clipped, nonfinite, bad bound flag, sigma bits]` of the last run.
    pub fn stats(&self) -> &Buffer<u32> {
        &self.stats
    }

    /// The clip factors of the last run, `B x L` (f32): what a trainer multiplies per-example
    /// losses by in the ghost-clipping recipe.
    pub fn factors(&self) -> &Buffer<f32> {
        &self.factors
    }
}

/// The arguments of the factor pass: norms, factors and counts from partial sums of squares
/// (`batch x ntiles`), the tiles of group `l` listed at `table[groups_at + 2 l ..]`. The ghost
/// reduction is the same pass with one group whose tiles are the layers.
pub(crate) struct FactorPass<'a> {
    pub partials: &'a Buffer<f32>,
    pub ntiles: u32,
    pub table: &'a Buffer<u32>,
    pub groups_at: u32,
    pub groups: u32,
    pub batch: u32,
    pub bounds: &'a Buffer<f32>,
    pub rule: ClipRule,
    pub multiplier: f32,
    pub norms: &'a Buffer<f32>,
    pub factors: &'a Buffer<f32>,
    pub stats: &'a Buffer<u32>,
}

impl FactorPass<'_> {
    /// Run on the device of the partials (wgpu or PTX; the CPU computes factors inline).
    pub(crate) fn run(&self, dev: &Device) -> Result<()> {
        match &self.partials.storage {
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => wgpu::factors(self),
            _ => {
                let dev = PtxDevice::of(dev).ok_or_else(|| internal("no PTX device"))?;
                ptx::factors(&dev, self)
            }
        }
    }
}

/// The counts in a stats buffer, or the error its flag records.
pub(crate) fn read_stats(stats: &Buffer<u32>) -> Result<ClipCounts> {
    let s = stats.download()?;
    if s[2] != 0 {
        return Err(Error::InvalidArgument {
            op: OP,
            what: "the device buffer of clip bounds held a negative or NaN bound; the sum of \
                   that run is NaN"
                .into(),
        });
    }
    Ok(ClipCounts {
        clipped: s[0],
        nonfinite: s[1],
    })
}

/// The per-run scalars every backend needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Run {
    pub rule: ClipRule,
    pub noise: Option<ClipNoise>,
    pub scale: f32,
}

/// The clip factor of `clip.md`'s table, in f64 (the reference); `None` marks a non-finite
/// norm.
pub(crate) fn factor(n: f64, c: f64, rule: ClipRule) -> Option<f64> {
    if !n.is_finite() {
        return None;
    }
    Some(if c == f64::INFINITY {
        1.0
    } else if c == 0.0 {
        0.0
    } else if n == 0.0 {
        1.0
    } else {
        match rule {
            ClipRule::Exact => (c / n).min(1.0),
            ClipRule::Opacus => (c / (n + 1e-6)).min(1.0),
        }
    })
}

fn check_bounds(v: &[f32]) -> Result<()> {
    match v.iter().position(|c| c.is_nan() || *c < 0.0) {
        Some(l) => Err(Error::InvalidArgument {
            op: OP,
            what: format!(
                "bound C[{l}] must be >= 0 and not NaN (+inf means no clipping), got {}",
                v[l]
            ),
        }),
        None => Ok(()),
    }
}

fn check_offsets(offsets: &[usize]) -> Result<()> {
    if offsets.len() < 2 || offsets[0] != 0 || offsets.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::InvalidArgument {
            op: OP,
            what: format!(
                "group offsets must start at 0 and strictly increase to d (at least one group), \
                 got {}",
                short_list(offsets)
            ),
        });
    }
    if offsets.len() - 1 > u32::MAX as usize {
        return Err(too_large("groups", offsets.len() - 1, 1));
    }
    Ok(())
}

pub(crate) fn check_batch(op: &'static str, batch: usize) -> Result<()> {
    if batch == 0 {
        return Err(Error::InvalidArgument {
            op,
            what: "batch must be at least 1".into(),
        });
    }
    if batch > u32::MAX as usize {
        return Err(Error::LimitExceeded {
            what: format!("{op}: batch"),
            requested: batch as u64,
            max: u64::from(u32::MAX),
        });
    }
    Ok(())
}

fn short_list(v: &[usize]) -> String {
    let head: Vec<String> = v.iter().take(8).map(usize::to_string).collect();
    let more = if v.len() > 8 { ", ..." } else { "" };
    format!("[{}{more}] ({} entries)", head.join(", "), v.len())
}

fn too_large(what: &str, a: usize, b: usize) -> Error {
    Error::LimitExceeded {
        what: format!("{OP}: {what}"),
        requested: (a as u64).saturating_mul(b as u64),
        max: u64::MAX,
    }
}

pub(crate) fn internal(what: &str) -> Error {
    Error::InvalidArgument {
        op: OP,
        what: format!("internal: {what}"),
    }
}

/// Columns per binding window: wgpu binds at most one chunk of a buffer at a time; the other
/// backends address everything.
fn column_window(dev: &Device) -> usize {
    match dev {
        #[cfg(feature = "wgpu")]
        Device::Wgpu(w) => wgpu::column_window(w),
        _ => usize::MAX,
    }
}
