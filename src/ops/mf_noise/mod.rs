//! Matrix-factorization noise on the device (`design/mf.md`, "Noise generation"): a generator
//! built from a plan that adds `sigma * x_t` to the step's gradient in place, `x = C^{-1} Z`
//! with `Z`'s rows the RNG's Gaussians.
//!
//! Coordinate `i` of step `t` draws `z_t[i]`, the Gaussian of global index `offset + i` in stream
//! [`STREAM_TAG`]` | t` under the generator's seed, so a model sharded by coordinate ranges gets
//! the numbers of the whole. The mechanisms and their state per coordinate:
//!
//! | mechanism | `x_t` | state |
//! |---|---|---|
//! | independent (DP-SGD) | `z_t` | none |
//! | BandMF | `nu_t y_t`, `y_t = (z_t - sum_{r=1}^{p-1} c_r y_{t-r}) / c_0` | ring of `p - 1` vectors `y` |
//! | BISR | `sum_{q < p} r_q z_{t-q}` (`z` regenerated) | none |
//! | BLT | `z_t - sum_i omega_i S_i`, then `S_i <- theta_i S_i + x_t` | `m` vectors |
//! | dense from seed | `sum_{j <= t} C^{-1}[t, j] z_j` (`z` regenerated) | none; for small `n` |
//! | Fourier | `Y_t - Y_{t-1}`, `Y = (S Z)[:n]` (see [`fourier`]) | the table: `n` vectors |
//!
//! `nu_t` is BandMF's column-normalization scale (1 but for the last `p - 1` steps). The square
//! root (a full Toeplitz `C`) runs as dense from seed with `C^{-1}`'s Toeplitz coefficients.
//! Steps must come in order `0, 1, 2, ...`; [`NoiseGenerator::save`] and
//! [`NoiseGenerator::restore`] continue a run exactly. State is f32 (or bf16 where the mechanism
//! bounds the error: [`NoiseGenerator::set_state_dtype`]) in blocks of `W` coordinates,
//! vector-major inside a block: vector `v` of coordinate `i` sits at `((i / W) V + v) W + i % W`
//! (`V` vectors), so a block's state is contiguous (wgpu binds windows of whole blocks) and
//! neighbouring threads read neighbouring words. `W` is 2^16, or less on a wgpu device whose
//! binding cannot hold a block. Each step is one kernel (`kernels/mf_noise.ptx`,
//! `shaders/mf_noise.wgsl`) that reads the gradient and the state once and writes both once.
//!
//! ```
//! use trainkern::Device;
//! use trainkern::mf::{Objective, Participation, Plan, Strategy};
//! use trainkern::mf_noise::NoiseGenerator;
//!
//! let dev = Device::cpu();
//! let part = Participation::new(6, 2, 3)?;
//! let plan = Plan::new(Strategy::banded_sqrt(3), &part, Objective::Mean)?;
//! let mut noise = NoiseGenerator::new(&dev, &plan.strategy, 6, 1000, 0, 42, 0.5)?;
//! let mut grad = dev.upload(&vec![0.0f32; 1000])?;
//! for t in 0..6 {
//!     noise.step(t, &mut grad)?; // grad += 0.5 * x_t, correlated across steps
//! }
//! assert!(noise.step(3, &mut grad).is_err()); // steps run in order
//! # Ok::<(), trainkern::Error>(())
//! ```

mod cpu;
pub mod fourier;
mod ptx;
mod state;
#[cfg(feature = "wgpu")]
mod wgpu;

use crate::backend::Device;
use crate::backend::ptx::PtxDevice;
use crate::buffer::{Buffer, DType, Float, Storage};
use crate::mf::{Strategy, toeplitz};
use crate::{Error, Result, validate};
use state::State;

const OP: &str = "mf_noise";

/// The first bytes of a saved state, and the header's length (four u64 words follow the magic).
const MAGIC: &[u8; 8] = b"TKMFN3\0\0";
const HEADER: usize = 40;

/// The high half of every MF noise stream ("MFNZ"); the low half is the step.
pub const STREAM_TAG: u64 = 0x4d46_4e5a << 32;

/// How `x_t` is produced.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Mechanism {
    /// `x_t = sum_{q < L} w_q z_{t-q}` with weights from a table: `L = min(p, t + 1)` and
    /// `w = r` for BISR (independent: `r = [1]`); row `t` of the reversed `C^{-1}` for dense.
    Fir { weights: Vec<f32>, dense: bool },
    /// BandMF: coefficients `c` (`p`), column scales `nu` (`n`).
    Band { c: Vec<f32>, nu: Vec<f32> },
    /// BLT: `theta`, `omega` (`m` each).
    Blt { theta: Vec<f32>, omega: Vec<f32> },
    /// Fourier: the per-step noise table `x_t = Y_t - Y_{t-1}` of the cumulative noise `Y`,
    /// built once on the generator's device (see [`fourier`]) and kept as the state, one
    /// vector per step.
    Table { steps: usize },
}

impl Mechanism {
    fn from_strategy(s: &Strategy, n: usize) -> Result<Mechanism> {
        s.check(n)?;
        let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        Ok(match s {
            Strategy::Banded(c) => {
                // x_t = nu_t y_t, nu_t the norm of T's column t.
                let nu = toeplitz::banded_column_norms(c, n);
                Mechanism::Band {
                    c: f(c),
                    nu: f(&nu),
                }
            }
            Strategy::Bisr(r) => Mechanism::Fir {
                weights: f(r),
                dense: false,
            },
            Strategy::Blt { theta, omega } => Mechanism::Blt {
                theta: f(theta),
                omega: f(omega),
            },
            Strategy::Toeplitz(c) => {
                // Trailing zero taps cost a Gaussian each and add nothing (C = I has one tap).
                let mut r = toeplitz::inverse_of(c, n);
                while r.len() > 1 && r[r.len() - 1] == 0.0 {
                    r.pop();
                }
                Mechanism::Fir {
                    weights: f(&r),
                    dense: false,
                }
            }
            Strategy::Dense { .. } => {
                // Row t of C^{-1}, reversed: w[t][q] = Cinv[t][t - q].
                let mut w = vec![0.0f32; n * n];
                for j in 0..n {
                    let mut e = vec![0.0; n];
                    e[j] = 1.0;
                    let col = s.solve(&e).unwrap_or_default();
                    for t in j..n {
                        w[t * n + (t - j)] = col[t] as f32;
                    }
                }
                Mechanism::Fir {
                    weights: w,
                    dense: true,
                }
            }
            Strategy::Fourier => Mechanism::Table { steps: n },
        })
    }

    /// Vectors of state per coordinate.
    pub(crate) fn state_vectors(&self) -> usize {
        match self {
            Mechanism::Fir { .. } => 0,
            Mechanism::Band { c, .. } => c.len() - 1,
            Mechanism::Blt { theta, .. } => theta.len(),
            Mechanism::Table { steps } => *steps,
        }
    }
}

/// Coordinates per state block on `dev` for `vectors` state vectors: 2^16, or on wgpu the most
/// (a multiple of 128, so 16-bit gradient windows stay word and offset aligned) whose block
/// state fits one binding.
#[cfg_attr(not(feature = "wgpu"), allow(unused_variables))]
fn state_block(dev: &Device, vectors: usize) -> Result<usize> {
    const FULL: usize = 1 << 16;
    match dev {
        #[cfg(feature = "wgpu")]
        Device::Wgpu(w) => {
            let room = (w.chunk_bytes() as usize).saturating_sub(512) / 4;
            let fit = (room / vectors.max(1)).min(room) / 128 * 128;
            if fit == 0 {
                return Err(Error::LimitExceeded {
                    what: format!("{OP} on wgpu: state bytes of 128 coordinates (one binding)"),
                    requested: (512 * vectors.max(1)) as u64,
                    max: w.chunk_bytes(),
                });
            }
            Ok(fit.min(FULL))
        }
        _ => Ok(FULL),
    }
}

/// A streaming noise generator for one coordinate range of the model.
pub struct NoiseGenerator {
    dev: Device,
    mech: Mechanism,
    n: usize,
    len: usize,
    offset: u64,
    seed: u64,
    sigma: f32,
    /// The next step expected.
    next: u64,
    /// Coordinates per state block, `W`.
    block: usize,
    /// `ceil(len / W) x state_vectors() x W` elements, f32 or bf16 (one placeholder element
    /// when there is none).
    state: State,
    /// The mechanism's coefficients on the device (weights, `c` then `nu`, or `theta` then
    /// `omega`).
    params: Buffer<f32>,
}

impl NoiseGenerator {
    /// A generator for `n` steps of `strategy` over `len` coordinates whose first is global
    /// coordinate `offset`, adding noise of scale `sigma` (`noise_multiplier * clip_norm *
    /// sens`).
    pub fn new(
        dev: &Device,
        strategy: &Strategy,
        n: usize,
        len: usize,
        offset: u64,
        seed: u64,
        sigma: f32,
    ) -> Result<NoiseGenerator> {
        validate::finite_non_negative(OP, "sigma", sigma)?;
        validate::index_range(OP, offset, len)?;
        if n == 0 || n as u64 > u64::from(u32::MAX) {
            return Err(Error::InvalidArgument {
                op: OP,
                what: format!("steps n must lie in [1, 2^32), got {n}"),
            });
        }
        let mech = Mechanism::from_strategy(strategy, n)?;
        let vectors = mech.state_vectors();
        let block = state_block(dev, vectors)?;
        let cells = len
            .div_ceil(block)
            .checked_mul(vectors * block)
            .ok_or_else(|| Error::LimitExceeded {
                what: format!("{OP}: state elements"),
                requested: u64::MAX,
                max: usize::MAX as u64,
            })?;
        let params: Vec<f32> = match &mech {
            Mechanism::Fir { weights, .. } => weights.clone(),
            Mechanism::Band { c, nu } => c.iter().chain(nu).copied().collect(),
            Mechanism::Blt { theta, omega } => theta.iter().chain(omega).copied().collect(),
            Mechanism::Table { .. } => vec![0.0],
        };
        let mut state = State::zeros(dev, DType::F32, cells.max(1))?;
        if let Mechanism::Table { .. } = mech {
            fourier::build(dev, n, len, offset, seed, block, &mut state)?;
        }
        Ok(NoiseGenerator {
            state,
            params: dev.upload(&params)?,
            dev: dev.clone(),
            mech,
            block,
            n,
            len,
            offset,
            seed,
            sigma,
            next: 0,
        })
    }

    /// The step the generator expects next.
    pub fn next_step(&self) -> u64 {
        self.next
    }

    /// `grad += sigma * x_t` in place (f32 or bf16 gradients, `len` elements); `t` must be the
    /// next step.
    pub fn step<T: Float>(&mut self, t: u64, grad: &mut Buffer<T>) -> Result<()> {
        self.step_scaled(t, grad, 1.0)
    }

    /// `grad += (factor * sigma) * x_t`: the step with the noise scaled like a gradient that
    /// was (e.g. `1 / batch` for a mean).
    pub fn step_scaled<T: Float>(
        &mut self,
        t: u64,
        grad: &mut Buffer<T>,
        factor: f32,
    ) -> Result<()> {
        if !factor.is_finite() {
            return Err(Error::InvalidArgument {
                op: OP,
                what: format!("the noise factor must be finite, got {factor}"),
            });
        }
        validate::on_device(OP, "grad", &self.dev, grad)?;
        validate::len(OP, "grad", self.len, grad.len())?;
        if T::DTYPE == DType::F16 {
            return Err(Error::Unsupported {
                op: OP,
                backend: "any",
                what: "f16 gradients (f32 and bf16 are supported)".into(),
            });
        }
        if t != self.next {
            return Err(Error::InvalidArgument {
                op: OP,
                what: format!("steps run in order: expected step {}, got {t}", self.next),
            });
        }
        if t >= self.n as u64 {
            return Err(Error::InvalidArgument {
                op: OP,
                what: format!("the plan has {} steps; step {t} is past its end", self.n),
            });
        }
        if self.len > 0 {
            let args = StepArgs {
                t,
                block: self.block,
                n: self.n,
                len: self.len,
                offset: self.offset,
                seed: self.seed,
                sigma: self.sigma * factor,
            };
            match &mut grad.storage {
                Storage::Cpu(g) => match &mut self.state {
                    State::F32(s) => cpu::step(&self.mech, &args, g, s.host_mut(OP)?),
                    State::Bf16(s) => cpu::step(&self.mech, &args, g, s.host_mut(OP)?),
                },
                #[cfg(feature = "wgpu")]
                Storage::Wgpu(_) => wgpu::step(&self.mech, &args, grad, &self.state, &self.params)?,
                #[allow(unreachable_patterns)]
                _ => {
                    let dev = PtxDevice::of(&self.dev).ok_or_else(|| internal("no PTX device"))?;
                    ptx::step(&dev, &self.mech, &args, grad, &self.state, &self.params)?;
                }
            }
        }
        self.next += 1;
        Ok(())
    }

    /// Whether the state changes from step to step (the Fourier table is rebuilt from the
    /// seed instead of saved).
    fn saves_state(&self) -> bool {
        !matches!(self.mech, Mechanism::Table { .. })
    }

    /// The state's element type.
    pub fn state_dtype(&self) -> DType {
        self.state.dtype()
    }

    /// Keep the state in `dtype` (f32, the default, or bf16: half the state's memory and
    /// traffic), before the first step. bf16 is accepted where the error cannot grow: BandMF,
    /// whose ring holds each `y_t` for `p - 1` steps (one rounding of relative size at most
    /// `2^-9` per stored value, carried into later steps only through the banded filter), the
    /// Fourier table (each step's noise rounded once) and the mechanisms without state (nothing
    /// is stored). BLT is refused: `S <- theta S + x` rounds every step and the error grows
    /// like `1 / (1 - theta)`. Measured errors against f32 are in `BENCHMARKS.md`.
    pub fn set_state_dtype(&mut self, dtype: DType) -> Result<()> {
        if !matches!(dtype, DType::F32 | DType::BF16) {
            return Err(Error::InvalidArgument {
                op: OP,
                what: format!("the state is f32 or bf16, not {dtype}"),
            });
        }
        if self.next != 0 {
            return Err(Error::InvalidArgument {
                op: OP,
                what: format!(
                    "the state type is chosen before the first step (the generator is at step {})",
                    self.next
                ),
            });
        }
        if dtype == DType::BF16 && matches!(self.mech, Mechanism::Blt { .. }) {
            return Err(Error::Unsupported {
                op: OP,
                backend: "any",
                what: "bf16 state for BLT: its buffers accumulate (S <- theta S + x), so a \
                       rounding every step grows like 1 / (1 - theta); keep BLT's state in f32"
                    .into(),
            });
        }
        if dtype == self.state.dtype() {
            return Ok(());
        }
        let mut state = State::zeros(&self.dev, dtype, self.state.len())?;
        if let Mechanism::Table { .. } = self.mech {
            fourier::build(
                &self.dev,
                self.n,
                self.len,
                self.offset,
                self.seed,
                self.block,
                &mut state,
            )?;
        }
        self.state = state;
        Ok(())
    }

    /// The state as host bytes: a header (the next step, the range, the block, the state's
    /// type), then the state vectors in that type (none for the Fourier table, which the seed
    /// determines).
    pub fn save(&self) -> Result<Vec<u8>> {
        let mut out = MAGIC.to_vec();
        for word in [
            self.next,
            self.len as u64,
            self.block as u64,
            u64::from(self.state.dtype().kernel_code()),
        ] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        if self.saves_state() {
            out.extend(self.state.to_bytes()?);
        }
        Ok(out)
    }

    /// Continue from [`NoiseGenerator::save`]'s bytes (same plan, range, seed and state type).
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let bad = |what: &str| Error::InvalidArgument {
            op: OP,
            what: format!("restore: {what}"),
        };
        if bytes.len() < HEADER || bytes[..8] != MAGIC[..] {
            return Err(bad("not a saved mf_noise state"));
        }
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let (next, len, block, code) = (word(8), word(16), word(24), word(32));
        let elems = if self.saves_state() {
            self.state.len()
        } else {
            0
        };
        let size = self.state.dtype().size();
        if code != u64::from(self.state.dtype().kernel_code()) {
            return Err(bad(&format!(
                "the saved state is of another type than this generator's {}",
                self.state.dtype()
            )));
        }
        if len != self.len as u64 || bytes.len() != HEADER + size * elems {
            return Err(bad(
                "the saved state is for another coordinate range or mechanism",
            ));
        }
        if block != self.block as u64 {
            return Err(bad(&format!(
                "the saved state has blocks of {block} coordinates, this device uses {}",
                self.block
            )));
        }
        if self.saves_state() {
            self.state.write_bytes(&bytes[HEADER..])?;
        }
        self.next = next;
        Ok(())
    }
}

pub(crate) fn internal(what: &str) -> Error {
    Error::InvalidArgument {
        op: OP,
        what: format!("internal: {what}"),
    }
}

/// One DP-FTRL step in one call: clip and sum the per-example gradients with `opts` (rule and
/// scale; no noise of their own), then add the step's correlated noise scaled like the sum:
/// `sum = scale * (sum_i c_i g_i + sigma x_t)`. Two kernels, each one pass over `d`.
#[allow(clippy::too_many_arguments)]
pub fn privatized_step<T: Float>(
    clipper: &mut crate::clip::Clipper,
    noise: &mut NoiseGenerator,
    grads: &Buffer<T>,
    bounds: crate::clip::Bounds<'_>,
    opts: &crate::clip::ClipOptions,
    t: u64,
    sum: &mut Buffer<f32>,
    norms: &mut Buffer<f32>,
) -> Result<()> {
    if opts.noise.is_some() {
        return Err(Error::InvalidArgument {
            op: "privatized_step",
            what: "the clip options carry noise of their own; the step's noise comes from the \
                   generator"
                .into(),
        });
    }
    validate::len(
        "privatized_step",
        "generator coordinates",
        clipper.dim(),
        noise.len,
    )?;
    if t != noise.next {
        return Err(Error::InvalidArgument {
            op: "privatized_step",
            what: format!("steps run in order: expected step {}, got {t}", noise.next),
        });
    }
    clipper.run(grads, bounds, opts, sum, norms)?;
    noise.step_scaled(t, sum, opts.scale)
}

/// What one step needs besides the mechanism.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepArgs {
    pub t: u64,
    /// Coordinates per state block.
    pub block: usize,
    pub n: usize,
    pub len: usize,
    pub offset: u64,
    pub seed: u64,
    pub sigma: f32,
}
