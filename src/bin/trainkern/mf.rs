//! `trainkern mf plan` and `trainkern mf compare`: matrix-factorization planning from the command
//! line, a short table on stdout and the plan as JSON.

use std::io::IsTerminal;
use std::path::PathBuf;

use trainkern::mf::{Objective, Participation, Plan, Strategy, calibrate, optimize};
use trainkern::{Error, Result};

/// The settings both commands share.
pub struct Setting {
    pub steps: usize,
    pub epochs: usize,
    pub min_sep: usize,
    pub fixed_epochs: bool,
    pub bands: Option<usize>,
    pub buffers: Option<usize>,
    pub truncated: bool,
    pub theta: Option<Vec<f64>>,
    pub omega: Option<Vec<f64>>,
    pub momentum: f64,
    pub objective: Objective,
    pub epsilon: Option<f64>,
    pub delta: Option<f64>,
    pub noise_multiplier: Option<f64>,
    pub sample_rate: Option<f64>,
}

fn bad(what: String) -> Error {
    Error::InvalidArgument { op: "mf", what }
}

fn participation(s: &Setting) -> Result<Participation> {
    if s.fixed_epochs {
        if s.steps != s.epochs * s.min_sep {
            return Err(bad(format!(
                "--fixed-epochs needs --steps = --epochs x --min-sep, got {} != {} x {}",
                s.steps, s.epochs, s.min_sep
            )));
        }
        return Participation::fixed_epochs(s.epochs, s.min_sep);
    }
    Participation::new(s.steps, s.epochs, s.min_sep)
}

fn strategy(name: &str, s: &Setting) -> Result<Strategy> {
    let bands = s.bands.unwrap_or(s.min_sep.min(s.steps));
    if bands == 0 || bands > s.steps {
        return Err(bad(format!(
            "--bands must lie in [1, steps = {}], got {bands}",
            s.steps
        )));
    }
    match name {
        "sqrt" => Ok(Strategy::sqrt(s.steps, s.momentum)),
        "bandmf" if s.truncated => Ok(Strategy::banded_sqrt(bands)),
        "bandmf" => {
            let part = participation(s)?;
            Ok(optimize::bandmf(&part, bands, s.objective)?.0)
        }
        "bisr" => Ok(Strategy::bisr(bands)),
        "fourier" => Ok(Strategy::Fourier),
        "blt" => match (&s.theta, &s.omega) {
            (Some(t), Some(w)) => Ok(Strategy::Blt {
                theta: t.clone(),
                omega: w.clone(),
            }),
            (None, None) => {
                let part = participation(s)?;
                Ok(optimize::blt(&part, s.buffers.unwrap_or(2), s.objective)?.0)
            }
            _ => Err(bad("blt takes both --theta and --omega, or neither".into())),
        },
        "dense" => {
            let part = participation(s)?;
            if s.objective != Objective::Mean {
                return Err(bad(
                    "the dense optimizer minimizes the mean error only".into()
                ));
            }
            // The dense optimizer runs for minutes at n = 1000: show where it is.
            let tty = std::io::stderr().is_terminal();
            let mut progress = |it: usize, loss: f64| {
                if tty {
                    eprint!("\r\x1b[2Kdense: iteration {it}, mean error {loss:.8}");
                }
            };
            let best = trainkern::mf::dense::optimize_with_progress(&part, 1000, &mut progress)?;
            if tty {
                eprint!("\r\x1b[2K");
            }
            Ok(best.0)
        }
        other => Err(bad(format!(
            "unknown strategy {other:?}: sqrt, bandmf, bisr, blt, dense or fourier"
        ))),
    }
}

/// Build, evaluate and calibrate one plan.
fn plan(name: &str, s: &Setting) -> Result<(Plan, Option<f64>)> {
    let part = participation(s)?;
    let mut p =
        Plan::with_momentum(strategy(name, s)?, &part, s.objective, s.momentum)?.labelled(name);
    let mut epsilon = None;
    match (s.epsilon, s.delta, s.noise_multiplier) {
        (Some(e), Some(d), None) => {
            match s.sample_rate {
                Some(q) => p.calibrate_amplified(e, d, q)?,
                None => p.calibrate(e, d)?,
            };
        }
        (None, d, Some(z)) => {
            p.noise_multiplier = Some(z);
            if let Some(d) = d {
                epsilon = Some(match s.sample_rate {
                    Some(q) => {
                        let rounds = part.n.div_ceil(part.min_sep);
                        let z_amp = z * p.sensitivity.squared.sqrt();
                        calibrate::amplified_epsilon(z_amp, q, rounds, d)?
                    }
                    None => calibrate::epsilon(z, d)?,
                });
            }
        }
        (None, _, None) => {}
        _ => {
            return Err(bad(
                "give --epsilon with --delta, or --noise-multiplier (with --delta for its \
                 epsilon), not both"
                    .into(),
            ));
        }
    }
    Ok((p, epsilon))
}

fn header() -> String {
    format!(
        "{:<8} {:>14} {:<6} {:>12} {:>12} {:>10} {:>10} {:>8}\n",
        "strategy", "sens^2", "exact", "loss", "rmse", "/ dp-sgd", "noise z", "state"
    )
}

fn line(p: &Plan) -> String {
    format!(
        "{:<8} {:>14.6} {:<6} {:>12.4} {:>12.4} {:>10.4} {:>10} {:>8}\n",
        p.label,
        p.sensitivity.squared,
        if p.sensitivity.exact { "yes" } else { "bound" },
        p.loss,
        p.rmse,
        p.ratio_to_dpsgd,
        p.noise_multiplier
            .map_or("-".to_string(), |z| format!("{z:.5}")),
        p.state_vectors()
    )
}

/// `mf plan`: the table and, with `json`, the plan file.
pub fn run_plan(name: &str, s: &Setting, json: Option<&PathBuf>) -> Result<String> {
    let (p, epsilon) = plan(name, s)?;
    if let Some(path) = json {
        std::fs::write(path, p.to_json()).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
    }
    let mut out = header() + &line(&p);
    out.push_str(&format!(
        "n = {}, k = {}, b = {}, {} error; sensitivity by {}\n",
        s.steps,
        s.epochs,
        s.min_sep,
        s.objective.name(),
        p.sensitivity.method
    ));
    if let Some(e) = epsilon {
        out.push_str(&format!(
            "epsilon = {e:.6} at delta = {:e}\n",
            s.delta.unwrap_or(0.0)
        ));
    }
    Ok(out)
}

/// `mf compare`: several strategies for one setting, side by side.
pub fn run_compare(names: &[String], s: &Setting) -> Result<String> {
    participation(s)?; // a bad setting fails the command; a strategy's own limits skip it
    let mut out = header();
    for name in names {
        match plan(name, s) {
            Ok((p, _)) => out.push_str(&line(&p)),
            Err(e) => out.push_str(&format!("{name:<8} skipped: {e}\n")),
        }
    }
    Ok(out)
}
