//! UPGD optimizer updates (`design/upgd.md`): utility-based perturbed gradient descent
//! (Elsayed & Mahmood, ICLR 2024), every weight-level variant, the adaptive one and
//! feature-level UPGD ([`Upgd::new_feature`]), over a whole model held in one flat buffer.
//!
//! The model's parameters are one flat buffer `w` with a [`TensorSpec`] `(offset, len,
//! last_dim)` per tensor; gradients `g` (and, for second order, the Hessian diagonal `h`) share
//! that layout. A model kept as one buffer per tensor steps with [`Upgd::step_list`] over a
//! layout from [`TensorSpec::packed`] (offsets on 256-element boundaries, used for the traces and
//! the noise indices), with the same results and no copies. One [`Upgd::step`] updates every
//! tensor: pass 1 updates the utility trace `u`
//! and reduces its maximum (global scaling) or the row norms (local scaling); pass 2 draws the
//! noise from the crate's RNG and updates `w`. The step count, the traces and the seed live in
//! the optimizer, so [`Upgd::save`] and [`Upgd::restore`] continue a run exactly.
//!
//! Options: [`Upgd::set_one_pass`] fuses the two passes (a documented change of semantics:
//! each step scales by the previous step's reductions); [`Upgd::set_trace_dtype`] stores the
//! traces in bf16. On wgpu a model larger than one storage binding runs in binding windows.
//!
//! A minimal loop:
//!
//! ```
//! use trainkern::{Device, upgd::{Hyper, TensorSpec, Upgd, Variant}};
//!
//! let dev = Device::cpu();
//! // A 4x3 Linear weight and its bias, one flat buffer of 15 elements.
//! let tensors = [
//!     TensorSpec { offset: 0, len: 12, last_dim: 3 },
//!     TensorSpec { offset: 12, len: 3, last_dim: 3 },
//! ];
//! let hyper = Hyper { lr: 0.01, weight_decay: 0.001, beta_utility: 0.999, sigma: 0.001 };
//! let variant = Variant::parse("first-global-protect")?;
//! let mut opt = Upgd::new(&dev, variant, hyper, &tensors, 15, 42)?;
//! let mut w = dev.upload(&[0.1f32; 15])?;
//! for _ in 0..3 {
//!     let g = dev.upload(&[0.01f32; 15])?; // the trainer's flat gradient
//!     opt.step(&mut w, &g, None)?;
//! }
//! assert_eq!(opt.steps(), 3);
//! # Ok::<(), trainkern::Error>(())
//! ```
//!
//! Noise: element `i` of the flat buffer at step `t` (from 1) uses the Gaussian of global index
//! `i` in stream `STREAM_TAG | t`, so it is independent of how the model is split into tensors
//! and reproducible on every backend. It cannot match PyTorch's generator; compare with the
//! public optimizer at `sigma = 0`.
//!
//! The one deviation from the public code (see the design file): where the global maximum
//! `eta` is exactly 0 the public optimizer divides 0 by 0 and writes NaN weights; here every
//! scaled utility is 0.5 for that step.
//!
//! A non-finite gradient (or Hessian) entry is not hidden: the update follows IEEE arithmetic
//! as PyTorch's does, and [`Upgd::nonfinite`] counts the entries seen.

mod cpu;
mod ptx;
#[cfg(feature = "wgpu")]
mod wgpu;

use crate::backend::Device;
use crate::backend::ptx::{BLOCK_SIZE, PtxDevice};
use crate::buffer::{Buffer, DType, Float, Storage};
use crate::{Error, Result, validate};

/// The high half of every UPGD noise stream ("UPGD"); the low half is the step count.
pub const STREAM_TAG: u64 = 0x5550_4744 << 32;

const OP: &str = "upgd";

/// How utilities are scaled into (0, 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scaling {
    /// `sigmoid((u / bc) / eta)`, `eta` the maximum raw trace over the whole model.
    Global,
    /// `sigmoid(v)`, `v` the bias-corrected trace normalized over each row (last dimension).
    Local,
}

/// How the scaled utility gates the update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The paper's UPGD: `w -= lr * (g + xi) * (1 - s)`.
    Protect,
    /// `w -= lr * (g + xi * (1 - s))`.
    NoProtect,
}

/// An UPGD variant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Variant {
    /// First order (`U = -g w`) or second order (`U = h w^2 / 2 - g w`), global or local
    /// scaling, protecting or not: eight variants.
    Upgd {
        second_order: bool,
        scaling: Scaling,
        rule: Rule,
    },
    /// Adam-style moments with global first-order utilities; `k` scales the step (the
    /// authors' README and RL code use 2). Defaults: `beta1 = 0.9`, `beta2 = 0.999`, `eps = 1e-5`.
    Adaptive {
        k: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
    },
}

impl Variant {
    /// Parse the names of `trainkern run upgd --variant`: `{first,second}-{global,local}-
    /// {protect,noprotect}` or `adaptive` (with the default moments and `k = 1`).
    pub fn parse(name: &str) -> Result<Variant> {
        if name == "adaptive" {
            return Ok(Variant::Adaptive {
                k: 1.0,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-5,
            });
        }
        let bad = || Error::InvalidArgument {
            op: OP,
            what: format!(
                "unknown variant {name:?}; expected {{first,second}}-{{global,local}}-{{protect,noprotect}} or adaptive"
            ),
        };
        let parts: Vec<&str> = name.split('-').collect();
        let [order, scaling, rule] = parts.as_slice() else {
            return Err(bad());
        };
        Ok(Variant::Upgd {
            second_order: match *order {
                "first" => false,
                "second" => true,
                _ => return Err(bad()),
            },
            scaling: match *scaling {
                "global" => Scaling::Global,
                "local" => Scaling::Local,
                _ => return Err(bad()),
            },
            rule: match *rule {
                "protect" => Rule::Protect,
                "noprotect" => Rule::NoProtect,
                _ => return Err(bad()),
            },
        })
    }

    /// The name `parse` reads back (adaptive parameters are not part of it).
    pub fn name(&self) -> String {
        match self {
            Variant::Adaptive { .. } => "adaptive".into(),
            Variant::Upgd {
                second_order,
                scaling,
                rule,
            } => format!(
                "{}-{}-{}",
                if *second_order { "second" } else { "first" },
                if *scaling == Scaling::Global {
                    "global"
                } else {
                    "local"
                },
                if *rule == Rule::Protect {
                    "protect"
                } else {
                    "noprotect"
                }
            ),
        }
    }

    /// Every weight-level variant and the adaptive one.
    pub fn all() -> Vec<Variant> {
        let mut v = Vec::new();
        for second_order in [false, true] {
            for scaling in [Scaling::Global, Scaling::Local] {
                for rule in [Rule::Protect, Rule::NoProtect] {
                    v.push(Variant::Upgd {
                        second_order,
                        scaling,
                        rule,
                    });
                }
            }
        }
        v.push(Variant::parse("adaptive").expect("a known name"));
        v
    }

    pub fn second_order(&self) -> bool {
        matches!(
            self,
            Variant::Upgd {
                second_order: true,
                ..
            }
        )
    }

    /// What the device kernels need to know of the variant.
    pub(crate) fn kernel(&self) -> KernelVariant {
        let local = self.scaling() == Scaling::Local;
        match *self {
            Variant::Adaptive {
                beta1, beta2, eps, ..
            } => KernelVariant {
                trace_flags: 0,
                update_flags: 4,
                beta1,
                beta2,
                eps,
            },
            Variant::Upgd {
                second_order, rule, ..
            } => KernelVariant {
                trace_flags: u32::from(second_order) | (u32::from(local) << 1),
                update_flags: u32::from(rule == Rule::NoProtect) | (u32::from(local) << 1),
                beta1: 0.0,
                beta2: 0.0,
                eps: 1.0,
            },
        }
    }

    pub fn scaling(&self) -> Scaling {
        match self {
            Variant::Upgd { scaling, .. } => *scaling,
            Variant::Adaptive { .. } => Scaling::Global,
        }
    }
}

/// The variant as the kernels take it: flag words (trace: 1 second order, 2 local; update:
/// 1 non-protecting, 2 local, 4 adaptive) and the adaptive constants (unused otherwise).
#[derive(Clone, Copy, Debug)]
pub(crate) struct KernelVariant {
    pub trace_flags: u32,
    pub update_flags: u32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

/// Hyperparameters. The defaults are the public optimizer classes': `lr = 1e-5`,
/// `weight_decay = 0`, `beta_utility = 0`, `sigma = 1` (the README uses 0.001, 0.999, 0.001).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hyper {
    pub lr: f32,
    pub weight_decay: f32,
    pub beta_utility: f32,
    pub sigma: f32,
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper {
            lr: 1e-5,
            weight_decay: 0.0,
            beta_utility: 0.0,
            sigma: 1.0,
        }
    }
}

/// What a tensor is in feature-level UPGD (`design/upgd.md`, "Feature-level UPGD").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An ordinary parameter with no gate after it: plain SGD with weight decay, no noise.
    Param,
    /// A gate: one value per hidden unit multiplying its activation (a single row). Its
    /// utility is traced and scaled; it is never updated.
    Gate,
    /// A parameter whose rows are the units of the gate at index `gate` of the tensor list (a
    /// Linear weight with rows of `in_features`, or a bias with `last_dim` 1): row `j` takes
    /// the gate's scaled utility `s_j`, by the variant's protecting or non-protecting rule.
    Gated { gate: usize },
}

/// One tensor of the flat parameter buffer: `len` elements from `offset`, rows of `last_dim`
/// (a Linear weight's row per output unit, the whole vector for a bias).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub offset: usize,
    pub len: usize,
    pub last_dim: usize,
}

impl TensorSpec {
    /// A flat layout for tensors of `(len, last_dim)`, in order, each starting at a multiple of
    /// [`TensorSpec::ALIGN`] elements: the layout [`Upgd::step_list`] needs. Returns the specs
    /// and the flat length (the traces' size). The gaps are never read or written.
    pub fn packed(shapes: &[(usize, usize)]) -> (Vec<TensorSpec>, usize) {
        let mut at = 0usize;
        let specs = shapes
            .iter()
            .map(|&(len, last_dim)| {
                let s = TensorSpec {
                    offset: at,
                    len,
                    last_dim,
                };
                at = (at + len).next_multiple_of(Self::ALIGN);
                s
            })
            .collect();
        (specs, at)
    }

    /// The alignment of [`TensorSpec::packed`] offsets, in elements: 256, so that every
    /// tensor's first element starts a kernel block and, on wgpu, a binding window.
    pub const ALIGN: usize = 256;
}

/// The weights, gradients and Hessian diagonals of one step: one flat buffer each, or one
/// buffer per tensor.
enum Params<'a, W: Float, G: Float> {
    Flat {
        w: &'a mut Buffer<W>,
        g: &'a Buffer<G>,
        h: Option<&'a Buffer<G>>,
    },
    List {
        w: &'a mut [Buffer<W>],
        g: &'a [Buffer<G>],
        h: Option<&'a [Buffer<G>]>,
    },
}

/// `buf` cut into one slice per tensor, in the order of `tensors` (which do not overlap).
pub(super) fn split_mut<'a, T>(buf: &'a mut [T], tensors: &[TensorSpec]) -> Vec<&'a mut [T]> {
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&k| tensors[k].offset);
    let mut out: Vec<Option<&'a mut [T]>> = (0..tensors.len()).map(|_| None).collect();
    let mut rest = buf;
    let mut at = 0;
    for k in order {
        let s = tensors[k];
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(s.offset - at);
        let (mine, tail) = tail.split_at_mut(s.len);
        out[k] = Some(mine);
        rest = tail;
        at = s.offset + s.len;
    }
    out.into_iter().map(|s| s.unwrap_or_default()).collect()
}

/// A step's reductions: the maximum raw trace and the per-row sums of squares of the
/// bias-corrected trace (rows of all tensors in order; empty for global scaling).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Scale {
    pub eta: f32,
    pub rowsq: Vec<f32>,
}

/// The rotating accumulator slots of a step on a device: step t reduces into `cur` = t % 3,
/// scales by `scale` (= `cur`, or t - 1's slot in the one-pass mode) and resets `next` for
/// step t + 1. Three slots, so that nothing read in a launch is reset in it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slots {
    pub cur: usize,
    pub scale: usize,
    pub next: usize,
    /// One fused launch instead of two (the one-pass mode, from step 2).
    pub fused: bool,
}

impl Slots {
    fn of(t: u64, one_pass: bool) -> Slots {
        let cur = (t % 3) as usize;
        let fused = one_pass && t >= 2;
        Slots {
            cur,
            scale: if fused { (cur + 2) % 3 } else { cur },
            next: (cur + 1) % 3,
            fused,
        }
    }
}

/// The per-step scalars every backend uses, computed once on the host in f64 and rounded to
/// f32 as PyTorch rounds its Python-float scalars.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scalars {
    pub stream: u64,
    /// `1 - beta^t` (1 when `beta = 0`).
    pub bc: f32,
    pub beta: f32,
    pub one_minus_beta: f32,
    /// `1 - lr * weight_decay`.
    pub decay: f32,
    /// `-lr`, times `k` for adaptive.
    pub neg_lr: f32,
    pub sigma: f32,
    /// Adaptive only: `1 - beta1^t`, `sqrt(1 - beta2^t)`, `1 - beta1`, `1 - beta2`.
    pub bc1: f32,
    pub sqrt_bc2: f32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
}

/// The UPGD optimizer state for one model on one device.
pub struct Upgd {
    dev: Device,
    variant: Variant,
    hyper: Hyper,
    tensors: Vec<TensorSpec>,
    /// Feature-level UPGD: the role of each tensor (`None`: weight-level).
    roles: Option<Vec<Role>>,
    /// Scale step t by step t - 1's reductions, in one pass (see [`Upgd::set_one_pass`]).
    one_pass: bool,
    /// The last step's reductions, kept by the CPU backend for the one-pass mode.
    scale: Option<Scale>,
    /// The CPU backend's row sums from the step before the last, whose storage the next step
    /// refills: a fresh vector each step cost a page fault per 4 KiB (rows of 3 at 2^26
    /// weights: 89 MB, about 4% of the step).
    spare_rows: Vec<f32>,
    len: usize,
    seed: u64,
    t: u64,
    traces: TraceStore,
    /// Non-finite inputs counted on the host (CPU backend, and the count restored from a save).
    nonfinite: u64,
    /// The chunk table and reduction buffers of the GPU backends.
    gpu: Option<DeviceState>,
}

/// The traces `u` and, for adaptive, the moments `m` and `v`, in one storage type.
pub(crate) struct Traces<U: Float> {
    pub u: Buffer<U>,
    pub m: Option<Buffer<U>>,
    pub v: Option<Buffer<U>>,
}

impl<U: Float> Traces<U> {
    fn new(dev: &Device, len: usize, moments: bool) -> Result<Self> {
        Ok(Traces {
            u: dev.zeros(len)?,
            m: if moments { Some(dev.zeros(len)?) } else { None },
            v: if moments { Some(dev.zeros(len)?) } else { None },
        })
    }

    fn buffers(&self) -> impl Iterator<Item = &Buffer<U>> {
        [Some(&self.u), self.m.as_ref(), self.v.as_ref()]
            .into_iter()
            .flatten()
    }

    fn buffers_mut(&mut self) -> impl Iterator<Item = &mut Buffer<U>> {
        [Some(&mut self.u), self.m.as_mut(), self.v.as_mut()]
            .into_iter()
            .flatten()
    }
}

/// The traces in f32 (the default) or bf16 ([`Upgd::set_trace_dtype`]).
enum TraceStore {
    F32(Traces<f32>),
    BF16(Traces<half::bf16>),
}

impl TraceStore {
    fn dtype(&self) -> DType {
        match self {
            TraceStore::F32(_) => DType::F32,
            TraceStore::BF16(_) => DType::BF16,
        }
    }

    /// Every trace buffer (u, then m and v), widened to f32.
    fn download(&self) -> Result<Vec<Vec<f32>>> {
        match self {
            TraceStore::F32(t) => t.buffers().map(|b| b.download()).collect(),
            TraceStore::BF16(t) => t
                .buffers()
                .map(|b| Ok(b.download()?.iter().map(|x| x.to_f32()).collect()))
                .collect(),
        }
    }

    /// Overwrite every trace buffer from f32 values, rounded to the storage type.
    fn write(&mut self, values: &[Vec<f32>]) -> Result<()> {
        match self {
            TraceStore::F32(t) => {
                for (b, v) in t.buffers_mut().zip(values) {
                    b.write(v)?;
                }
            }
            TraceStore::BF16(t) => {
                for (b, v) in t.buffers_mut().zip(values) {
                    let r: Vec<half::bf16> = v.iter().map(|&x| half::bf16::from_f32(x)).collect();
                    b.write(&r)?;
                }
            }
        }
        Ok(())
    }
}

/// What the device kernels keep besides the traces.
pub(crate) struct DeviceState {
    /// 8 u32 per chunk: start, count, row_base, last_dim, row_in_first, gate_offset, gate_row,
    /// kind (0 weight-level, 1 gated, 2 plain SGD, 3 gate).
    pub chunks: Buffer<u32>,
    pub nchunks: usize,
    /// Each tensor's chunks in the table: (first, count).
    pub tensor_chunks: Vec<(usize, usize)>,
    /// Rows over all tensors.
    pub rows: usize,
    /// `[eta key slot 0, 1, 2, non-finite count]`: three slots (see [`Slots`]) of the
    /// order-preserving key of the maximum trace, then the counter, in one buffer so a WGSL
    /// kernel needs fewer storage bindings.
    pub state: Buffer<u32>,
    /// Three slots of per-row sums of squares of the bias-corrected trace, as `eta`.
    pub rowsq: Buffer<f32>,
    /// One element bound where a kernel declares the adaptive moments but the variant has none.
    #[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
    pub scratch: Buffer<f32>,
    /// wgpu: the binding windows the chunks are dispatched in (empty elsewhere).
    #[cfg(feature = "wgpu")]
    pub windows: Vec<wgpu::Window>,
    /// wgpu, for [`Upgd::step_list`]: windows that never cross a tensor, with the tensor each
    /// belongs to (`Err` says why the layout cannot run as a list on this device).
    #[cfg(feature = "wgpu")]
    pub list_windows: std::result::Result<Vec<(usize, wgpu::Window)>, String>,
}

/// What [`chunk_table`] builds.
struct ChunkTable {
    /// 8 u32 per chunk (see [`DeviceState::chunks`]).
    table: Vec<u32>,
    /// Rows over all tensors.
    rows: usize,
    /// Each tensor's chunks: (first, count).
    ranges: Vec<(usize, usize)>,
}

/// The key of -inf under the order-preserving map the kernels reduce with.
const KEY_NEG_INF: u32 = 0x007f_ffff;

/// The chunk table: each tensor cut into chunks of at most one block's elements, with the
/// global row of each chunk's first element and, for feature-level UPGD, the tensor's gate and
/// kind.
fn chunk_table(tensors: &[TensorSpec], roles: Option<&[Role]>) -> Result<ChunkTable> {
    let block = BLOCK_SIZE as usize;
    let mut row_bases = Vec::with_capacity(tensors.len());
    let mut rows = 0usize;
    for s in tensors {
        row_bases.push(rows);
        rows += s.len / s.last_dim;
    }
    let mut table = Vec::new();
    let mut ranges = Vec::with_capacity(tensors.len());
    for (k, s) in tensors.iter().enumerate() {
        ranges.push((table.len() / 8, s.len.div_ceil(block)));
        let (gate_offset, gate_row, kind) = match roles.map(|r| r[k]) {
            None => (0, 0, 0),
            Some(Role::Gated { gate }) => (tensors[gate].offset, row_bases[gate], 1),
            Some(Role::Param) => (0, 0, 2),
            Some(Role::Gate) => (0, 0, 3),
        };
        for start in (0..s.len).step_by(block) {
            let count = block.min(s.len - start);
            let row = row_bases[k] + start / s.last_dim;
            let fields = [
                s.offset + start,
                count,
                row,
                s.last_dim,
                start % s.last_dim,
                gate_offset,
                gate_row,
                kind,
            ];
            for f in fields {
                table.push(u32::try_from(f).map_err(|_| Error::LimitExceeded {
                    what: "upgd: elements or rows of a model on a GPU backend".into(),
                    requested: f as u64,
                    max: u64::from(u32::MAX),
                })?);
            }
        }
    }
    Ok(ChunkTable {
        table,
        rows,
        ranges,
    })
}

fn finite(what: &str, x: f32, lo: f32, hi_open: Option<f32>) -> Result<()> {
    let ok = x.is_finite() && x >= lo && hi_open.is_none_or(|h| x < h);
    if ok {
        Ok(())
    } else {
        let range = match hi_open {
            Some(h) => format!("in [{lo}, {h})"),
            None => format!("finite and >= {lo}"),
        };
        Err(Error::InvalidArgument {
            op: OP,
            what: format!("{what} must be {range}, got {x}"),
        })
    }
}

impl Upgd {
    /// A fresh optimizer (traces zero, step count 0) for a flat buffer of `len` elements laid
    /// out as `tensors`. `seed` fixes the noise; draw one with [`crate::rng::entropy_seed`].
    pub fn new(
        dev: &Device,
        variant: Variant,
        hyper: Hyper,
        tensors: &[TensorSpec],
        len: usize,
        seed: u64,
    ) -> Result<Self> {
        Self::build(dev, variant, hyper, tensors, None, len, seed)
    }

    /// Feature-level UPGD: utilities are traced on the gate tensors only, and each gated
    /// tensor's row `j` takes its gate's scaled utility `s_j`; tensors with no gate take plain
    /// SGD with weight decay; gates are not updated. `roles[k]` says what `tensors[k]` is.
    /// Gates must be single rows (`last_dim == len`), and a gated tensor must have as many
    /// rows as its gate has units. Not for the adaptive variant.
    pub fn new_feature(
        dev: &Device,
        variant: Variant,
        hyper: Hyper,
        tensors: &[TensorSpec],
        roles: &[Role],
        len: usize,
        seed: u64,
    ) -> Result<Self> {
        Self::build(dev, variant, hyper, tensors, Some(roles), len, seed)
    }

    fn build(
        dev: &Device,
        variant: Variant,
        hyper: Hyper,
        tensors: &[TensorSpec],
        roles: Option<&[Role]>,
        len: usize,
        seed: u64,
    ) -> Result<Self> {
        finite("lr", hyper.lr, 0.0, None)?;
        finite("weight_decay", hyper.weight_decay, 0.0, None)?;
        finite("beta_utility", hyper.beta_utility, 0.0, Some(1.0))?;
        finite("sigma", hyper.sigma, 0.0, None)?;
        if let Variant::Adaptive {
            k,
            beta1,
            beta2,
            eps,
        } = variant
        {
            finite("k", k, 0.0, None)?;
            finite("beta1", beta1, 0.0, Some(1.0))?;
            finite("beta2", beta2, 0.0, Some(1.0))?;
            if !(eps.is_finite() && eps > 0.0) {
                return Err(Error::InvalidArgument {
                    op: OP,
                    what: format!("eps must be finite and > 0, got {eps}"),
                });
            }
        }
        check_layout(tensors, len)?;
        if let Some(roles) = roles {
            check_roles(variant, tensors, roles)?;
        }
        let adaptive = matches!(variant, Variant::Adaptive { .. });
        let traces = TraceStore::F32(Traces::new(dev, len, adaptive)?);
        let gpu = if dev.backend() == crate::Backend::Cpu {
            None
        } else {
            let ChunkTable {
                table,
                rows,
                ranges: tensor_chunks,
            } = chunk_table(tensors, roles)?;
            #[cfg(feature = "wgpu")]
            let (windows, list_windows) = match dev {
                Device::Wgpu(d) => {
                    let span = wgpu::span(d.chunk_bytes());
                    (
                        wgpu::windows(&table, span)?,
                        wgpu::list_windows(&table, span, &tensor_chunks),
                    )
                }
                _ => (Vec::new(), Ok(Vec::new())),
            };
            Some(DeviceState {
                chunks: dev.upload(&table)?,
                nchunks: table.len() / 8,
                tensor_chunks,
                rows,
                state: dev.upload(&[KEY_NEG_INF, KEY_NEG_INF, KEY_NEG_INF, 0])?,
                // Row sums exist for local scaling only; global kernels never index them.
                rowsq: dev.zeros(if variant.scaling() == Scaling::Local {
                    3 * rows.max(1)
                } else {
                    3
                })?,
                scratch: dev.zeros(1)?,
                #[cfg(feature = "wgpu")]
                windows,
                #[cfg(feature = "wgpu")]
                list_windows,
            })
        };
        Ok(Upgd {
            dev: dev.clone(),
            variant,
            hyper,
            tensors: tensors.to_vec(),
            roles: roles.map(<[Role]>::to_vec),
            one_pass: false,
            scale: None,
            spare_rows: Vec::new(),
            len,
            seed,
            t: 0,
            traces,
            nonfinite: 0,
            gpu,
        })
    }

    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// The opt-in one-pass mode. It changes the semantics: from step 2 on, step t scales its
    /// utilities by step t - 1's maximum raw trace (global) or row norms (local) instead of its
    /// own, so the trace update, the scaling and the weight update fuse into one launch that
    /// reads `g`, `w`, `u` and writes `u`, `w` (5 transfers per weight instead of 8). Step 1
    /// and every step in the default mode are exact. Not for feature-level UPGD, whose gated
    /// tensors read their gate's trace of the same step.
    pub fn set_one_pass(&mut self, on: bool) -> Result<()> {
        if on && self.roles.is_some() {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "the one-pass mode is not available for feature-level UPGD".into(),
            });
        }
        self.one_pass = on;
        Ok(())
    }

    /// Whether the one-pass mode is on.
    pub fn one_pass(&self) -> bool {
        self.one_pass
    }

    pub fn hyper(&self) -> Hyper {
        self.hyper
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// Non-finite gradient (or Hessian) entries seen over all steps (on a GPU this reads a
    /// counter back, so it waits for the steps enqueued).
    pub fn nonfinite(&self) -> Result<u64> {
        let dev = match &self.gpu {
            Some(st) => u64::from(st.state.download()?[3]),
            None => 0,
        };
        Ok(self.nonfinite + dev)
    }

    /// The utility trace `u` (raw, not bias-corrected), in the flat layout, widened to f32.
    pub fn utility(&self) -> Result<Vec<f32>> {
        Ok(self.traces.download()?.swap_remove(0))
    }

    /// Store the traces (`u`, and `m`, `v` for adaptive) in `dtype`: f32 (the default) or bf16,
    /// which halves the optimizer's state and its traffic. Each trace is rounded to nearest
    /// even when stored and every later use reads the stored value; the cost against f32 is
    /// measured in `tests/upgd.rs` and stated in BENCHMARKS.md. Only before the first step.
    pub fn set_trace_dtype(&mut self, dtype: DType) -> Result<()> {
        if self.t != 0 {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "the trace type can only be chosen before the first step".into(),
            });
        }
        let moments = matches!(self.variant, Variant::Adaptive { .. });
        self.traces = match dtype {
            DType::F32 => TraceStore::F32(Traces::new(&self.dev, self.len, moments)?),
            DType::BF16 => TraceStore::BF16(Traces::new(&self.dev, self.len, moments)?),
            other => {
                return Err(Error::InvalidArgument {
                    op: OP,
                    what: format!("traces are f32 or bf16, not {other}"),
                });
            }
        };
        Ok(())
    }

    /// The type the traces are stored in.
    pub fn trace_dtype(&self) -> DType {
        self.traces.dtype()
    }

    fn scalars(&self, t: u64) -> Scalars {
        let beta = f64::from(self.hyper.beta_utility);
        let lr = f64::from(self.hyper.lr);
        let (k, b1, b2) = match self.variant {
            Variant::Adaptive {
                k, beta1, beta2, ..
            } => (f64::from(k), f64::from(beta1), f64::from(beta2)),
            _ => (1.0, 0.0, 0.0),
        };
        Scalars {
            stream: STREAM_TAG | t,
            bc: (1.0 - powt(beta, t)) as f32,
            beta: beta as f32,
            one_minus_beta: (1.0 - beta) as f32,
            decay: (1.0 - lr * f64::from(self.hyper.weight_decay)) as f32,
            neg_lr: (-(k * lr)) as f32,
            sigma: self.hyper.sigma,
            bc1: (1.0 - powt(b1, t)) as f32,
            sqrt_bc2: (1.0 - powt(b2, t)).sqrt() as f32,
            one_minus_beta1: (1.0 - b1) as f32,
            one_minus_beta2: (1.0 - b2) as f32,
        }
    }

    /// One optimizer step: `w` updated in place from `g` (and `h` for second-order variants),
    /// all in the flat layout the optimizer was made with.
    pub fn step<W: Float, G: Float>(
        &mut self,
        w: &mut Buffer<W>,
        g: &Buffer<G>,
        h: Option<&Buffer<G>>,
    ) -> Result<()> {
        validate::on_device(OP, "w", &self.dev, w)?;
        validate::on_device(OP, "g", &self.dev, g)?;
        validate::len(OP, "w", self.len, w.len())?;
        validate::len(OP, "g", self.len, g.len())?;
        if let Some(h) = h {
            validate::on_device(OP, "h", &self.dev, h)?;
            validate::len(OP, "h", self.len, h.len())?;
        }
        self.check_h(h.is_some())?;
        self.run(Params::Flat { w, g, h })
    }

    /// One optimizer step over a model held as one buffer per tensor: `w[k]`, `g[k]` (and
    /// `h[k]`) hold tensor `k` of the layout, `len` elements each. The same math and noise as
    /// [`Upgd::step`] on the flat layout (element `j` of tensor `k` draws the Gaussian of
    /// global index `offset + j`), with no copies and no host synchronization: on the GPUs the
    /// two passes launch once per tensor (per binding window on wgpu). The layout's offsets
    /// must be multiples of [`TensorSpec::ALIGN`] ([`TensorSpec::packed`] makes such a layout).
    pub fn step_list<W: Float, G: Float>(
        &mut self,
        w: &mut [Buffer<W>],
        g: &[Buffer<G>],
        h: Option<&[Buffer<G>]>,
    ) -> Result<()> {
        let n = self.tensors.len();
        validate::len(OP, "w (tensors)", n, w.len())?;
        validate::len(OP, "g (tensors)", n, g.len())?;
        if let Some(h) = h {
            validate::len(OP, "h (tensors)", n, h.len())?;
        }
        if let Some(k) = self
            .tensors
            .iter()
            .position(|s| s.offset % TensorSpec::ALIGN != 0)
        {
            return Err(Error::InvalidArgument {
                op: OP,
                what: format!(
                    "step_list needs tensor offsets that are multiples of {} (tensor {k} is at \
                     {}); build the layout with TensorSpec::packed",
                    TensorSpec::ALIGN,
                    self.tensors[k].offset
                ),
            });
        }
        for (k, s) in self.tensors.iter().enumerate() {
            validate::on_device(OP, "w", &self.dev, &w[k])?;
            validate::on_device(OP, "g", &self.dev, &g[k])?;
            validate::len(OP, "w[k]", s.len, w[k].len())?;
            validate::len(OP, "g[k]", s.len, g[k].len())?;
            if let Some(h) = h {
                validate::on_device(OP, "h", &self.dev, &h[k])?;
                validate::len(OP, "h[k]", s.len, h[k].len())?;
            }
        }
        self.check_h(h.is_some())?;
        self.run(Params::List { w, g, h })
    }

    /// `h` is given exactly when the variant is second order.
    fn check_h(&self, has_h: bool) -> Result<()> {
        match (self.variant.second_order(), has_h) {
            (true, false) => Err(Error::InvalidArgument {
                op: OP,
                what: "second-order variants need h, the Hessian diagonal".into(),
            }),
            (false, true) => Err(Error::InvalidArgument {
                op: OP,
                what: "h is only used by second-order variants".into(),
            }),
            _ => Ok(()),
        }
    }

    fn run<W: Float, G: Float>(&mut self, params: Params<'_, W, G>) -> Result<()> {
        let t = self.t + 1;
        if t >= 1 << 32 {
            return Err(Error::LimitExceeded {
                what: "upgd: steps (the noise stream holds the step in 32 bits)".into(),
                requested: t,
                max: (1 << 32) - 1,
            });
        }
        let sc = self.scalars(t);
        let run = Run {
            dev: &self.dev,
            gpu: self.gpu.as_ref(),
            variant: self.variant,
            sc: &sc,
            seed: self.seed,
            slots: Slots::of(t, self.one_pass),
            tensors: &self.tensors,
            roles: self.roles.as_deref(),
            prev: if self.one_pass {
                self.scale.as_ref()
            } else {
                None
            },
            rows: std::mem::take(&mut self.spare_rows),
        };
        let host = match &mut self.traces {
            TraceStore::F32(tr) => run.step(params, tr)?,
            TraceStore::BF16(tr) => run.step(params, tr)?,
        };
        if let Some((nonfinite, scale)) = host {
            if let Some(old) = self.scale.replace(scale) {
                self.spare_rows = old.rowsq;
            }
            self.nonfinite += nonfinite;
        }
        self.t = t;
        Ok(())
    }

    /// The optimizer's whole state as bytes: variant, hyperparameters, layout, seed, step count
    /// and traces. [`Upgd::restore`] continues exactly where this left off.
    pub fn save(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        let (kind, a, b, c, d) = match self.variant {
            Variant::Upgd {
                second_order,
                scaling,
                rule,
            } => (
                u32::from(second_order)
                    | (u32::from(scaling == Scaling::Local) << 1)
                    | (u32::from(rule == Rule::NoProtect) << 2),
                0.0,
                0.0,
                0.0,
                0.0,
            ),
            Variant::Adaptive {
                k,
                beta1,
                beta2,
                eps,
            } => (8, k, beta1, beta2, eps),
        };
        out.extend_from_slice(&kind.to_le_bytes());
        for x in [
            a,
            b,
            c,
            d,
            self.hyper.lr,
            self.hyper.weight_decay,
            self.hyper.beta_utility,
            self.hyper.sigma,
        ] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        for x in [
            self.seed,
            self.t,
            self.nonfinite()?,
            self.len as u64,
            self.tensors.len() as u64,
        ] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        for s in &self.tensors {
            for x in [s.offset, s.len, s.last_dim] {
                out.extend_from_slice(&(x as u64).to_le_bytes());
            }
        }
        // Roles: a count (0 for weight-level), then 0 param, 1 gate, 2 + g gated by g.
        let roles = self.roles.as_deref().unwrap_or(&[]);
        out.extend_from_slice(&(roles.len() as u64).to_le_bytes());
        for r in roles {
            let code = match *r {
                Role::Param => 0u64,
                Role::Gate => 1,
                Role::Gated { gate } => 2 + gate as u64,
            };
            out.extend_from_slice(&code.to_le_bytes());
        }
        // The mode and the last step's reductions, which the one-pass mode scales the next
        // step by: a flag, eta, then the row sums.
        out.extend_from_slice(&u64::from(self.one_pass).to_le_bytes());
        let scale = self.last_scale()?.unwrap_or_default();
        out.extend_from_slice(&scale.eta.to_le_bytes());
        out.extend_from_slice(&(scale.rowsq.len() as u64).to_le_bytes());
        out.extend_from_slice(bytemuck::cast_slice(&scale.rowsq));
        out.extend_from_slice(&u64::from(self.traces.dtype() == DType::BF16).to_le_bytes());
        for values in self.traces.download()? {
            out.extend_from_slice(bytemuck::cast_slice(&values));
        }
        Ok(out)
    }

    /// An optimizer on `dev` from [`Upgd::save`]'s bytes.
    pub fn restore(dev: &Device, bytes: &[u8]) -> Result<Self> {
        let bad = |what: &str| Error::InvalidArgument {
            op: "upgd restore",
            what: what.to_string(),
        };
        let mut r = Reader { b: bytes, at: 0 };
        if r.take(MAGIC.len()).ok_or_else(|| bad("truncated"))? != MAGIC {
            return Err(bad("not a trainkern UPGD state"));
        }
        let kind = r.u32().ok_or_else(|| bad("truncated"))?;
        let mut f = [0f32; 8];
        for x in f.iter_mut() {
            *x = r.f32().ok_or_else(|| bad("truncated"))?;
        }
        let variant = if kind == 8 {
            Variant::Adaptive {
                k: f[0],
                beta1: f[1],
                beta2: f[2],
                eps: f[3],
            }
        } else if kind < 8 {
            Variant::Upgd {
                second_order: kind & 1 != 0,
                scaling: if kind & 2 != 0 {
                    Scaling::Local
                } else {
                    Scaling::Global
                },
                rule: if kind & 4 != 0 {
                    Rule::NoProtect
                } else {
                    Rule::Protect
                },
            }
        } else {
            return Err(bad("unknown variant"));
        };
        let hyper = Hyper {
            lr: f[4],
            weight_decay: f[5],
            beta_utility: f[6],
            sigma: f[7],
        };
        let mut n = [0u64; 5];
        for x in n.iter_mut() {
            *x = r.u64().ok_or_else(|| bad("truncated"))?;
        }
        let [seed, t, nonfinite, len, count] = n;
        if count > bytes.len() as u64 {
            return Err(bad("corrupt tensor count"));
        }
        let mut tensors = Vec::new();
        for _ in 0..count {
            let mut s = [0usize; 3];
            for x in s.iter_mut() {
                *x = r.u64().ok_or_else(|| bad("truncated"))? as usize;
            }
            tensors.push(TensorSpec {
                offset: s[0],
                len: s[1],
                last_dim: s[2],
            });
        }
        let nroles = r.u64().ok_or_else(|| bad("truncated"))?;
        if nroles > count {
            return Err(bad("corrupt role count"));
        }
        let mut roles = Vec::new();
        for _ in 0..nroles {
            roles.push(match r.u64().ok_or_else(|| bad("truncated"))? {
                0 => Role::Param,
                1 => Role::Gate,
                g => Role::Gated {
                    gate: (g - 2) as usize,
                },
            });
        }
        let len = usize::try_from(len).map_err(|_| bad("corrupt length"))?;
        let roles = (nroles > 0).then_some(roles.as_slice());
        let mut opt = Upgd::build(dev, variant, hyper, &tensors, roles, len, seed)?;
        let one_pass = r.u64().ok_or_else(|| bad("truncated"))? != 0;
        let eta = r.f32().ok_or_else(|| bad("truncated"))?;
        let nrows = r.u64().ok_or_else(|| bad("truncated"))?;
        if nrows > bytes.len() as u64 {
            return Err(bad("corrupt row count"));
        }
        let raw = r.take(4 * nrows as usize).ok_or_else(|| bad("truncated"))?;
        let scale = Scale {
            eta,
            rowsq: bytemuck::pod_collect_to_vec(raw),
        };
        if r.u64().ok_or_else(|| bad("truncated"))? != 0 {
            opt.set_trace_dtype(DType::BF16)?;
        }
        let traces = 1 + 2 * usize::from(matches!(variant, Variant::Adaptive { .. }));
        if r.b.len() - r.at != traces * 4 * len {
            return Err(bad("trace bytes do not match the layout"));
        }
        let mut values = Vec::new();
        for _ in 0..traces {
            let raw = r.take(4 * len).ok_or_else(|| bad("truncated"))?;
            values.push(bytemuck::pod_collect_to_vec::<u8, f32>(raw));
        }
        opt.traces.write(&values)?;
        opt.t = t;
        opt.nonfinite = nonfinite;
        opt.set_one_pass(one_pass)?;
        if t > 0 {
            opt.set_last_scale(scale)?;
        }
        Ok(opt)
    }

    /// The last step's reductions: kept on the host by the CPU backend, read back from the slot
    /// step t reduced into on a device. `None` before the first step.
    fn last_scale(&self) -> Result<Option<Scale>> {
        if self.t == 0 {
            return Ok(None);
        }
        let Some(st) = &self.gpu else {
            return Ok(self.scale.clone());
        };
        let slot = (self.t % 3) as usize;
        let rows = st.rows.max(1);
        let eta = unkey(st.state.download()?[slot]);
        let rowsq = if self.variant.scaling() == Scaling::Local {
            st.rowsq.download()?[slot * rows..(slot + 1) * rows].to_vec()
        } else {
            Vec::new()
        };
        Ok(Some(Scale { eta, rowsq }))
    }

    /// Put the last step's reductions back where the next step reads them.
    fn set_last_scale(&mut self, scale: Scale) -> Result<()> {
        let Some(st) = &mut self.gpu else {
            self.scale = Some(scale);
            return Ok(());
        };
        let slot = (self.t % 3) as usize;
        let mut state = st.state.download()?;
        state[slot] = key(scale.eta);
        st.state.write(&state)?;
        if !scale.rowsq.is_empty() {
            let rows = st.rows.max(1);
            if scale.rowsq.len() != rows {
                return Err(Error::InvalidArgument {
                    op: "upgd restore",
                    what: "the saved row sums do not match the layout".into(),
                });
            }
            let mut all = st.rowsq.download()?;
            all[slot * rows..(slot + 1) * rows].copy_from_slice(&scale.rowsq);
            st.rowsq.write(&all)?;
        }
        Ok(())
    }
}

/// The order-preserving key the kernels reduce the maximum with (NaN maps to 0).
fn key(x: f32) -> u32 {
    let b = x.to_bits();
    if x.is_nan() {
        0
    } else if b >> 31 == 1 {
        !b
    } else {
        b | 0x8000_0000
    }
}

fn unkey(k: u32) -> f32 {
    if k >> 31 == 1 {
        f32::from_bits(k & 0x7fff_ffff)
    } else {
        f32::from_bits(!k)
    }
}

/// One step's inputs besides the buffers, borrowed from the optimizer.
struct Run<'a> {
    dev: &'a Device,
    gpu: Option<&'a DeviceState>,
    variant: Variant,
    sc: &'a Scalars,
    seed: u64,
    slots: Slots,
    tensors: &'a [TensorSpec],
    roles: Option<&'a [Role]>,
    prev: Option<&'a Scale>,
    /// Storage for the CPU step's row sums (see [`Upgd::spare_rows`]).
    rows: Vec<f32>,
}

impl Run<'_> {
    /// The step on whichever backend holds the buffers; on the CPU it returns the non-finite
    /// count and the step's reductions (the devices keep theirs in their slots).
    fn step<W: Float, G: Float, U: Float>(
        self,
        params: Params<'_, W, G>,
        tr: &mut Traces<U>,
    ) -> Result<Option<(u64, Scale)>> {
        let (variant, sc, seed, slots) = (self.variant, self.sc, self.seed, self.slots);
        if let (Some(st), Some(pdev)) = (self.gpu, PtxDevice::of(self.dev)) {
            ptx::step(
                &pdev,
                st,
                variant,
                sc,
                seed,
                slots,
                self.tensors,
                params,
                tr,
            )?;
            return Ok(None);
        }
        #[cfg(feature = "wgpu")]
        if let (Some(st), Device::Wgpu(_)) = (self.gpu, self.dev) {
            wgpu::step(st, variant, sc, seed, slots, self.tensors, params, tr)?;
            return Ok(None);
        }
        let (ws, gs, hs) = match params {
            Params::Flat { w, g, h } => (
                split_mut(cpu_mut(w)?, self.tensors),
                split(cpu_ref(g)?, self.tensors),
                h.map(|h| cpu_ref(h).map(|h| split(h, self.tensors)))
                    .transpose()?,
            ),
            Params::List { w, g, h } => (
                w.iter_mut().map(cpu_mut).collect::<Result<Vec<_>>>()?,
                g.iter().map(cpu_ref).collect::<Result<Vec<_>>>()?,
                h.map(|h| h.iter().map(cpu_ref).collect::<Result<Vec<_>>>())
                    .transpose()?,
            ),
        };
        let state = cpu::State {
            u: cpu_mut(&mut tr.u)?,
            m: tr.m.as_mut().map(cpu_mut).transpose()?,
            v: tr.v.as_mut().map(cpu_mut).transpose()?,
        };
        Ok(Some(cpu::step(
            variant,
            sc,
            self.tensors,
            self.roles,
            seed,
            ws,
            gs,
            hs,
            state,
            self.prev,
            self.rows,
        )))
    }
}

/// `buf` cut into one slice per tensor, in the order of `tensors`.
fn split<'a, T>(buf: &'a [T], tensors: &[TensorSpec]) -> Vec<&'a [T]> {
    tensors
        .iter()
        .map(|s| &buf[s.offset..s.offset + s.len])
        .collect()
}

fn cpu_ref<T: Float>(b: &Buffer<T>) -> Result<&[T]> {
    b.as_host_slice().ok_or_else(|| Error::InvalidArgument {
        op: OP,
        what: "internal: a CPU step met a buffer on another device".into(),
    })
}

const MAGIC: &[u8] = b"TKUPGD3\0";

/// `x^t` for a step count (as Python's `beta ** step` in f64).
fn powt(x: f64, t: u64) -> f64 {
    x.powf(t as f64)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn f32(&mut self) -> Option<f32> {
        Some(f32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

fn cpu_mut<U: Float>(b: &mut Buffer<U>) -> Result<&mut [U]> {
    match &mut b.storage {
        Storage::Cpu(v) => Ok(v.as_mut_slice()),
        #[allow(unreachable_patterns)]
        _ => Err(Error::InvalidArgument {
            op: OP,
            what: "internal: optimizer state is not on the CPU".into(),
        }),
    }
}

/// Feature-level roles: one per tensor, gates single rows, gated tensors pointing at a gate
/// with one unit per row.
fn check_roles(variant: Variant, tensors: &[TensorSpec], roles: &[Role]) -> Result<()> {
    let bad = |what: String| Err(Error::InvalidArgument { op: OP, what });
    if matches!(variant, Variant::Adaptive { .. }) {
        return bad("feature-level UPGD has no adaptive variant".into());
    }
    if roles.len() != tensors.len() {
        return bad(format!(
            "{} roles for {} tensors",
            roles.len(),
            tensors.len()
        ));
    }
    for (k, (r, s)) in roles.iter().zip(tensors).enumerate() {
        match *r {
            Role::Gate if s.last_dim != s.len => {
                return bad(format!("gate tensor {k} must be one row (last_dim == len)"));
            }
            Role::Gated { gate } => {
                if roles.get(gate) != Some(&Role::Gate) {
                    return bad(format!(
                        "tensor {k} is gated by tensor {gate}, which is not a gate"
                    ));
                }
                let units = tensors[gate].len;
                if s.len / s.last_dim != units {
                    return bad(format!(
                        "tensor {k} has {} rows but its gate {gate} has {units} units",
                        s.len / s.last_dim
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Tensors lie inside the buffer, do not overlap, and have rows dividing their length.
fn check_layout(tensors: &[TensorSpec], len: usize) -> Result<()> {
    let bad = |what: String| Err(Error::InvalidArgument { op: OP, what });
    if tensors.is_empty() {
        return bad("the model has no tensors".into());
    }
    let mut sorted: Vec<(usize, &TensorSpec)> = tensors.iter().enumerate().collect();
    sorted.sort_by_key(|(_, s)| s.offset);
    let mut end = 0usize;
    for (i, s) in sorted {
        if s.len == 0 || s.last_dim == 0 || s.len % s.last_dim != 0 {
            return bad(format!(
                "tensor {i}: last_dim {} must be >= 1 and divide its length {}",
                s.last_dim, s.len
            ));
        }
        let Some(stop) = s.offset.checked_add(s.len).filter(|&e| e <= len) else {
            return bad(format!(
                "tensor {i} [{}, +{}) lies outside the buffer of {len} elements",
                s.offset, s.len
            ));
        };
        if s.offset < end {
            return bad(format!(
                "tensor {i} at offset {} overlaps the one before",
                s.offset
            ));
        }
        end = stop;
    }
    Ok(())
}
