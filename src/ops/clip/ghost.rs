//! Ghost norms for linear layers (Goodfellow 2015; Li et al. 2022; Opacus's "fast gradient
//! clipping"): per-example gradient norms without building per-example gradients.
//!
//! For a linear layer `y = x W^T + b` applied to example `i` at `T` positions, with activations
//! `A_i` (`T x p`) and output gradients `G_i` (`T x q`), [`ghost_norms`] writes per example
//!
//! - `||G_i^T A_i||_F^2`, the squared norm of the weight gradient, as `<A_i A_i^T, G_i G_i^T>_F`
//!   (the Gram form, about `T^2 (p + q)` work) or by forming `G_i^T A_i` one entry at a time (the
//!   direct form, `T p q`), whichever [`ghost_method`] says is cheaper;
//! - plus, with `bias`, `||sum_t G_i[t, :]||^2`, the squared norm of the bias gradient.
//!
//! Rounding can make the Gram form's sum slightly negative; the weight term is clamped at 0.
//! [`GhostReducer`] turns the layers' squared norms (`B x L`, one column per layer) into
//! per-example norms and clip factors `c_i`.
//!
//! The recipe, per training step (one forward, two backward passes):
//!
//! 1. forward with hooks that keep each linear layer's input `A`, and backward the summed loss
//!    with hooks that keep each layer's output gradient `G` (no parameter gradients needed);
//! 2. [`ghost_norms`] per layer into column `l` of a `B x L` buffer, then [`GhostReducer::run`]
//!    for the factors `c_i`;
//! 3. backward `sum_i c_i * loss_i` once more: its parameter gradients are the clipped sum, to
//!    which the trainer adds noise ([`crate::noise::add_gaussian`] with std
//!    `noise_multiplier * C`).
//!
//! ```
//! use trainkern::{Device, clip::{Bounds, ClipRule, GhostReducer, GhostShape, ghost_norms}};
//!
//! let dev = Device::cpu();
//! // One layer, 2 examples, T = 1 position, 2 inputs, 1 output.
//! let shape = GhostShape { batch: 2, positions: 1, inputs: 2, outputs: 1 };
//! let a = dev.upload(&[3.0f32, 4.0, 1.0, 0.0])?; // activations, B x T x p
//! let g = dev.upload(&[2.0f32, 0.5])?;           // output gradients, B x T x q
//! let mut sq = dev.zeros::<f32>(2)?;
//! ghost_norms(&dev, &a, &g, &shape, true, &mut sq)?;
//! // ||a||^2 ||g||^2 + ||g||^2: 25 * 4 + 4 and 1 * 0.25 + 0.25
//! assert_eq!(sq.download()?, vec![104.0, 0.5]);
//!
//! let mut reducer = GhostReducer::new(&dev, 2, 1)?;
//! let (mut norms, mut factors) = (dev.zeros::<f32>(2)?, dev.zeros::<f32>(2)?);
//! reducer.run(&sq, Bounds::Host(&[1.0]), ClipRule::Exact, &mut norms, &mut factors)?;
//! let c = factors.download()?; // scale example i's loss by c[i] and backward once more
//! assert!((c[0] - 1.0 / 104f32.sqrt()).abs() < 1e-7 && c[1] == 1.0);
//! # Ok::<(), trainkern::Error>(())
//! ```

use rayon::prelude::*;

use super::{
    Bounds, ClipCounts, ClipRule, FactorPass, HostBounds, STATS_LEN, cpu, internal, ptx,
    read_stats, zero_stats,
};
use crate::backend::Device;
use crate::backend::ptx::PtxDevice;
use crate::buffer::{Buffer, Float, Storage};
use crate::{Error, Result, validate};

const OP: &str = "ghost_norms";

/// The sizes of one linear layer's ghost norm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GhostShape {
    /// `B`, examples.
    pub batch: usize,
    /// `T`, positions per example (sequence length; 1 for a plain MLP).
    pub positions: usize,
    /// `p`, the layer's input features.
    pub inputs: usize,
    /// `q`, the layer's output features.
    pub outputs: usize,
}

/// How the weight term is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GhostMethod {
    /// `<A A^T, G G^T>_F`: `T^2 (p + q)` work, for short sequences.
    Gram,
    /// `||G^T A||_F^2` entry by entry: `T p q` work, for long sequences of narrow layers.
    Direct,
}

impl GhostMethod {
    pub(crate) fn kernel_code(self) -> u32 {
        match self {
            GhostMethod::Gram => 0,
            GhostMethod::Direct => 1,
        }
    }
}

/// The cheaper method for `shape`: Gram when `T^2 (p + q) <= T p q`.
pub fn ghost_method(shape: &GhostShape) -> GhostMethod {
    let (t, p, q) = (
        shape.positions as u128,
        shape.inputs as u128,
        shape.outputs as u128,
    );
    if t * (p + q) <= p * q {
        GhostMethod::Gram
    } else {
        GhostMethod::Direct
    }
}

/// Per-example squared gradient norms of one linear layer into `out` (`B`, f32), by the
/// cheaper method.
pub fn ghost_norms<T: Float>(
    dev: &Device,
    activations: &Buffer<T>,
    output_grads: &Buffer<T>,
    shape: &GhostShape,
    bias: bool,
    out: &mut Buffer<f32>,
) -> Result<()> {
    ghost_norms_by(
        dev,
        activations,
        output_grads,
        shape,
        bias,
        ghost_method(shape),
        out,
    )
}

/// [`ghost_norms`] by a chosen method (both give the same numbers up to rounding).
pub fn ghost_norms_by<T: Float>(
    dev: &Device,
    activations: &Buffer<T>,
    output_grads: &Buffer<T>,
    shape: &GhostShape,
    bias: bool,
    method: GhostMethod,
    out: &mut Buffer<f32>,
) -> Result<()> {
    check_shape(shape, method)?;
    let GhostShape {
        batch: b,
        positions: t,
        inputs: p,
        outputs: q,
    } = *shape;
    validate::on_device(OP, "activations", dev, activations)?;
    validate::on_device(OP, "output_grads", dev, output_grads)?;
    validate::on_device(OP, "out", dev, out)?;
    validate::len(OP, "activations (B x T x p)", b * t * p, activations.len())?;
    validate::len(
        OP,
        "output_grads (B x T x q)",
        b * t * q,
        output_grads.len(),
    )?;
    validate::len(OP, "out (B)", b, out.len())?;
    match &mut out.storage {
        Storage::Cpu(o) => {
            let (Some(a), Some(g)) = (activations.as_host_slice(), output_grads.as_host_slice())
            else {
                return Err(internal("CPU ghost norms with buffers elsewhere"));
            };
            o.par_iter_mut().enumerate().for_each(|(i, o)| {
                let ai = &a[i * t * p..(i + 1) * t * p];
                let gi = &g[i * t * q..(i + 1) * t * q];
                *o = reference(ai, gi, t, p, q, bias, method) as f32;
            });
            Ok(())
        }
        #[cfg(feature = "wgpu")]
        Storage::Wgpu(_) => super::wgpu::ghost(activations, output_grads, shape, method, bias, out),
        #[allow(unreachable_patterns)]
        _ => {
            let dev = PtxDevice::of(dev).ok_or_else(|| internal("no PTX device"))?;
            ptx::ghost(&dev, activations, output_grads, shape, method, bias, out)
        }
    }
}

fn check_shape(s: &GhostShape, method: GhostMethod) -> Result<()> {
    let dims = [
        ("batch", s.batch),
        ("positions T", s.positions),
        ("inputs p", s.inputs),
        ("outputs q", s.outputs),
    ];
    if let Some((name, _)) = dims.iter().find(|(_, v)| *v == 0) {
        return Err(Error::InvalidArgument {
            op: OP,
            what: format!("{name} must be at least 1"),
        });
    }
    let (b, t, p, q) = (
        s.batch as u128,
        s.positions as u128,
        s.inputs as u128,
        s.outputs as u128,
    );
    let items = match method {
        GhostMethod::Gram => t * t,
        GhostMethod::Direct => p * q,
    };
    let per_example = (t * p).max(t * q).max(items);
    let max = u128::from(u32::MAX);
    if per_example > max || b > max || b * t * p.max(q) > usize::MAX as u128 {
        return Err(Error::LimitExceeded {
            what: format!("{OP}: elements or work items per example"),
            requested: per_example.min(u128::from(u64::MAX)) as u64,
            max: u64::from(u32::MAX),
        });
    }
    Ok(())
}

/// One example's squared norm in f64: the definition (`T x p` activations, `T x q` output
/// gradients, row-major). The Gram form adds each off-diagonal pair once, doubled.
fn reference<T: Float>(
    a: &[T],
    g: &[T],
    t: usize,
    p: usize,
    q: usize,
    bias: bool,
    method: GhostMethod,
) -> f64 {
    let wide = |v: &[T]| {
        v.iter()
            .map(|x| f64::from(x.to_f32()))
            .collect::<Vec<f64>>()
    };
    let (a, g) = (wide(a), wide(g));
    let (ar, gr) = (
        |s: usize| &a[s * p..(s + 1) * p],
        |s: usize| &g[s * q..(s + 1) * q],
    );
    let mut w = 0.0;
    match method {
        GhostMethod::Gram => {
            for s in 0..t {
                for u in 0..=s {
                    let twice = if s == u { 1.0 } else { 2.0 };
                    w += twice * dot(ar(s), ar(u)) * dot(gr(s), gr(u));
                }
            }
        }
        GhostMethod::Direct => {
            let mut m = vec![0.0f64; q * p];
            for s in 0..t {
                for (r, &gv) in gr(s).iter().enumerate() {
                    for (x, &av) in m[r * p..(r + 1) * p].iter_mut().zip(ar(s)) {
                        *x += gv * av;
                    }
                }
            }
            w = m.iter().map(|x| x * x).sum();
        }
    }
    let mut total = w.max(0.0);
    if bias {
        for r in 0..q {
            let s: f64 = (0..t).map(|s| g[s * q + r]).sum();
            total += s * s;
        }
    }
    total
}

/// A dot product over four interleaved accumulators, so that it vectorizes.
fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (xc, yc) = (x.chunks_exact(4), y.chunks_exact(4));
    let tail: f64 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (u, v) in xc.zip(yc) {
        for k in 0..4 {
            acc[k] += u[k] * v[k];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Per-example norms and clip factors from the layers' squared ghost norms.
pub struct GhostReducer {
    dev: Device,
    batch: usize,
    layers: usize,
    table: Buffer<u32>,
    stats: Buffer<u32>,
    bounds: HostBounds,
}

impl GhostReducer {
    pub fn new(dev: &Device, batch: usize, layers: usize) -> Result<GhostReducer> {
        const OP: &str = "ghost_factors";
        super::check_batch(OP, batch)?;
        if layers == 0 || layers > u32::MAX as usize {
            return Err(Error::InvalidArgument {
                op: OP,
                what: format!("layers must lie in [1, 2^32), got {layers}"),
            });
        }
        Ok(GhostReducer {
            // The factor pass's group section: one group whose tiles are the layers.
            table: dev.upload(&[0, layers as u32])?,
            stats: dev.zeros(STATS_LEN)?,
            bounds: HostBounds::new(dev, 1)?,
            dev: dev.clone(),
            batch,
            layers,
        })
    }

    /// `norms[i] = sqrt(sum_l sq[i, l])` and `factors[i]` by the clip-factor table; `sq` is
    /// `B x L` (layer `l` in column `l`). A negative or non-finite entry makes the row's norm
    /// non-finite: factor 0, counted.
    pub fn run(
        &mut self,
        sq: &Buffer<f32>,
        bound: Bounds<'_>,
        rule: ClipRule,
        norms: &mut Buffer<f32>,
        factors: &mut Buffer<f32>,
    ) -> Result<()> {
        const OP: &str = "ghost_factors";
        let (b, l) = (self.batch, self.layers);
        validate::on_device(OP, "sq", &self.dev, sq)?;
        validate::on_device(OP, "norms", &self.dev, norms)?;
        validate::on_device(OP, "factors", &self.dev, factors)?;
        validate::len(OP, "sq (B x layers)", b * l, sq.len())?;
        validate::len(OP, "norms", b, norms.len())?;
        validate::len(OP, "factors", b, factors.len())?;
        let bound = bound.resolve(OP, &self.dev, 1, &mut self.bounds)?;
        zero_stats(&self.dev, &mut self.stats)?;
        let bound = bound.unwrap_or(&self.bounds.buf);
        if matches!(self.dev, Device::Cpu) {
            let (Some(s), Some(c)) = (sq.as_host_slice(), bound.as_host_slice()) else {
                return Err(internal("CPU ghost reduction with buffers elsewhere"));
            };
            let (n, f) = (norms.host_mut(OP)?, factors.host_mut(OP)?);
            let mut counts = [0u32; 2];
            for i in 0..b {
                let total: f64 = s[i * l..(i + 1) * l].iter().map(|&x| f64::from(x)).sum();
                let norm = total.sqrt();
                n[i] = norm as f32;
                let mut c64 = [0.0f64];
                let (clipped, bad) = cpu::row_factors(&[norm], c, rule, &mut c64);
                f[i] = c64[0] as f32;
                counts[0] += clipped;
                counts[1] += bad;
            }
            self.stats
                .host_mut(OP)?
                .copy_from_slice(&[counts[0], counts[1], 0, 0]);
            return Ok(());
        }
        FactorPass {
            partials: sq,
            ntiles: l as u32,
            table: &self.table,
            groups_at: 0,
            groups: 1,
            batch: b as u32,
            bounds: bound,
            rule,
            multiplier: 0.0,
            norms,
            factors,
            stats: &self.stats,
        }
        .run(&self.dev)
    }

    /// The counts of the last run (waits for it).
    pub fn counts(&self) -> Result<ClipCounts> {
        read_stats(&self.stats)
    }

    /// The device buffer `[clipped, nonfinite, bad bound flag, 0]` of the last run, for
    /// [`super::AdaptiveClip::update`].
    pub fn stats(&self) -> &Buffer<u32> {
        &self.stats
    }
}
