//! The plan as JSON, written by hand (the crate has no JSON dependency): numbers in Rust's
//! shortest round-trip form, so the noise kernels read back exactly the f64 the planner used.

use super::{Plan, Strategy};

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:?}")
    } else {
        "null".into()
    }
}

fn list(v: &[f64]) -> String {
    let items: Vec<String> = v.iter().map(|&x| num(x)).collect();
    format!("[{}]", items.join(", "))
}

pub(super) fn plan(p: &Plan) -> String {
    let part = &p.participation;
    let mut f = vec![
        format!("\"strategy\": \"{}\"", p.label),
        format!("\"n\": {}", part.n),
        format!("\"k\": {}", part.k),
        format!("\"min_sep\": {}", part.min_sep),
        format!("\"objective\": \"{}\"", p.objective.name()),
        format!("\"sensitivity_squared\": {}", num(p.sensitivity.squared)),
        format!("\"sensitivity_exact\": {}", p.sensitivity.exact),
        format!("\"sensitivity_method\": \"{}\"", p.sensitivity.method),
        format!("\"mean_error\": {}", num(p.mean_error)),
        format!("\"max_error\": {}", num(p.max_error)),
        format!("\"loss\": {}", num(p.loss)),
        format!("\"rmse\": {}", num(p.rmse)),
        format!("\"ratio_to_dpsgd\": {}", num(p.ratio_to_dpsgd)),
        format!("\"ratio_to_sqrt\": {}", num(p.ratio_to_sqrt)),
        format!(
            "\"noise_multiplier\": {}",
            p.noise_multiplier.map_or("null".into(), num)
        ),
        format!("\"state_vectors\": {}", p.state_vectors()),
    ];
    match &p.strategy {
        Strategy::Toeplitz(c) => f.push(format!("\"coefficients\": {}", list(c))),
        Strategy::Banded(c) => {
            f.push(format!("\"bands\": {}", c.len()));
            f.push(format!("\"coefficients\": {}", list(c)));
            f.push("\"column_normalized\": true".into());
        }
        Strategy::Bisr(r) => {
            f.push(format!("\"bands\": {}", r.len()));
            f.push(format!("\"inverse_coefficients\": {}", list(r)));
        }
        Strategy::Blt { theta, omega } => {
            f.push(format!("\"theta\": {}", list(theta)));
            f.push(format!("\"omega\": {}", list(omega)));
        }
        Strategy::Dense { c, .. } => f.push(format!("\"c\": {}", list(c))),
        Strategy::Fourier => f.push(format!("\"fft_size\": {}", super::fourier::size(part.n))),
    }
    format!("{{\n  {}\n}}\n", f.join(",\n  "))
}
