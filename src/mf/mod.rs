//! Matrix-factorization (correlated-noise) planning on the CPU in f64 (`design/mf.md`,
//! "Planning"): strategies for the prefix-sum workload, their sensitivity under `k`
//! participations at least `b` apart (saying whether it is exact or an upper bound), per-query
//! errors and losses, and noise calibration.
//!
//! ```
//! use trainkern::mf::{Objective, Participation, Plan, Strategy};
//!
//! let part = Participation::new(2000, 20, 100)?; // n steps, k epochs, b min separation
//! let plan = Plan::new(Strategy::banded_sqrt(100), &part, Objective::Mean)?;
//! assert!(plan.sensitivity.exact && plan.sensitivity.squared == 20.0); // p <= b: k_eff
//! assert!(plan.ratio_to_dpsgd < 1.0); // correlated noise beats independent noise
//! # Ok::<(), trainkern::Error>(())
//! ```
//!
//! The sensitivity is `sens(C)` for unit clip norm: the noise of step `t` is
//! `sigma (C^{-1} Z)_t` with `sigma = noise_multiplier * clip_norm * sens`. Errors are per query
//! without the sensitivity (`e_t`); losses include it (`sens^2 * mean(e)` or `* max(e)`).

pub mod blt;
pub mod calibrate;
pub mod dense;
pub mod fourier;
mod json;
pub mod lbfgs;
pub mod optimize;
pub mod sensitivity;
mod strategy;
pub mod toeplitz;

pub use json::{PlanFile, read as read_plan};
pub use sensitivity::{Participation, Schema, Sensitivity, sensitivity};
pub use strategy::Strategy;

use crate::{Error, Result};

/// Which reduction of the per-query errors a plan minimizes and reports as its loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Objective {
    #[default]
    Mean,
    Max,
}

impl std::str::FromStr for Objective {
    type Err = Error;
    fn from_str(s: &str) -> Result<Objective> {
        match s {
            "mean" => Ok(Objective::Mean),
            "max" => Ok(Objective::Max),
            _ => Err(Error::InvalidArgument {
                op: "mf",
                what: format!("objective must be mean or max, got {s:?}"),
            }),
        }
    }
}

impl Objective {
    pub fn name(self) -> &'static str {
        match self {
            Objective::Mean => "mean",
            Objective::Max => "max",
        }
    }
}

/// A strategy evaluated for one participation pattern.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The strategy's name in tables and JSON (`sqrt`, `bandmf`, ...; see [`Plan::labelled`]).
    pub label: String,
    pub strategy: Strategy,
    pub participation: Participation,
    pub objective: Objective,
    pub sensitivity: Sensitivity,
    /// `e_t`, per query, without the sensitivity.
    pub errors: Vec<f64>,
    pub mean_error: f64,
    pub max_error: f64,
    /// `sens^2 * mean(e)` or `sens^2 * max(e)`.
    pub loss: f64,
    /// `sqrt(sens^2 * mean(e))`.
    pub rmse: f64,
    /// `loss` over DP-SGD's (`C = I`: `sens^2 = k_eff`, `e_t = t + 1` for the prefix sum).
    pub ratio_to_dpsgd: f64,
    /// `loss` over the square root's under the same participation.
    pub ratio_to_sqrt: f64,
    /// Set by [`Plan::calibrate`] or [`Plan::calibrate_amplified`].
    pub noise_multiplier: Option<f64>,
}

impl Plan {
    /// The plan for the prefix-sum workload.
    pub fn new(strategy: Strategy, part: &Participation, objective: Objective) -> Result<Plan> {
        Plan::with_momentum(strategy, part, objective, 0.0)
    }

    /// The plan for SGD with `momentum` (`0` is the prefix sum): errors, the DP-SGD baseline
    /// (`e_t = sum_{j <= t} a_j^2`) and the square root are all of that workload.
    pub fn with_momentum(
        strategy: Strategy,
        part: &Participation,
        objective: Objective,
        momentum: f64,
    ) -> Result<Plan> {
        if !(0.0..1.0).contains(&momentum) {
            return Err(Error::InvalidArgument {
                op: "mf",
                what: format!("momentum must lie in [0, 1), got {momentum}"),
            });
        }
        let a = toeplitz::workload(part.n, momentum);
        let sens = sensitivity(&strategy, part)?;
        let errors = strategy.errors_for(&a)?;
        let (mean_error, max_error) = reduce(&errors);
        let loss_of = |s2: f64, mean: f64, max: f64| match objective {
            Objective::Mean => s2 * mean,
            Objective::Max => s2 * max,
        };
        let loss = loss_of(sens.squared, mean_error, max_error);
        let mut acc = 0.0;
        let plain: Vec<f64> = a
            .iter()
            .map(|x| {
                acc += x * x;
                acc
            })
            .collect();
        let (dm, dx) = reduce(&plain);
        let dpsgd = loss_of(part.k_eff() as f64, dm, dx);
        let sqrt = Strategy::sqrt(part.n, momentum);
        let sqrt_s2 = sensitivity(&sqrt, part)?.squared;
        let (m, x) = reduce(&sqrt.errors_for(&a)?);
        let ratio_to_sqrt = loss / loss_of(sqrt_s2, m, x);
        Ok(Plan {
            label: strategy.name().to_string(),
            rmse: (sens.squared * mean_error).sqrt(),
            ratio_to_dpsgd: loss / dpsgd,
            ratio_to_sqrt,
            strategy,
            participation: *part,
            objective,
            sensitivity: sens,
            errors,
            mean_error,
            max_error,
            loss,
            noise_multiplier: None,
        })
    }

    /// The plan under another name (the Toeplitz strategy is `sqrt` when it is the square root).
    pub fn labelled(mut self, label: &str) -> Plan {
        self.label = label.to_string();
        self
    }

    /// Set the noise multiplier for `(epsilon, delta)` without amplification: the whole run is
    /// one Gaussian mechanism of sensitivity `clip_norm * sens`.
    pub fn calibrate(&mut self, epsilon: f64, delta: f64) -> Result<f64> {
        let z = calibrate::noise_multiplier(epsilon, delta)?;
        self.noise_multiplier = Some(z);
        Ok(z)
    }

    /// Set the noise multiplier for `(epsilon, delta)` with b-min-sep cyclic Poisson sampling at
    /// rate `q` (amplified BandMF, Choquette-Choo et al. 2023): each of the `ceil(n / b)` rounds
    /// is a subsampled Gaussian of multiplier `z_amp` on unit-norm columns. Only for BandMF with
    /// `p <= b`; the stored multiplier is `z_amp / sens`, so that `sigma = noise_multiplier *
    /// clip_norm * sens` still holds.
    pub fn calibrate_amplified(&mut self, epsilon: f64, delta: f64, q: f64) -> Result<f64> {
        let p = self.participation;
        match &self.strategy {
            Strategy::Banded(c) if c.len() <= p.min_sep => {}
            _ => {
                return Err(Error::InvalidArgument {
                    op: "mf calibrate",
                    what: "amplification by sampling needs BandMF with bands p <= min separation b"
                        .into(),
                });
            }
        }
        let rounds = p.n.div_ceil(p.min_sep);
        let z_amp = calibrate::amplified_noise_multiplier(epsilon, delta, q, rounds)?;
        let z = z_amp / self.sensitivity.squared.sqrt();
        self.noise_multiplier = Some(z);
        Ok(z)
    }

    /// State vectors per coordinate the noise generator keeps on the device.
    pub fn state_vectors(&self) -> usize {
        match &self.strategy {
            Strategy::Banded(c) => c.len() - 1,
            Strategy::Blt { theta, .. } => theta.len(),
            Strategy::Fourier => fourier::size(self.participation.n),
            _ => 0,
        }
    }

    /// The plan as JSON (the fields of the issue, see `json.rs`).
    pub fn to_json(&self) -> String {
        json::plan(self)
    }
}

fn reduce(e: &[f64]) -> (f64, f64) {
    let mean = e.iter().sum::<f64>() / e.len().max(1) as f64;
    let max = e.iter().copied().fold(0.0, f64::max);
    (mean, max)
}
