//! The plan as JSON, written and read by hand (the crate has no JSON dependency): numbers in
//! Rust's shortest round-trip form, so the noise kernels read back exactly the f64 the planner
//! used. The reader takes the flat object the writer produces (strings, numbers, booleans,
//! null, arrays of numbers) and checks that the fields match the strategy they name.

use super::{Objective, Participation, Plan, Schema, Strategy};
use crate::{Error, Result};

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
        format!(
            "\"schema\": \"{}\"",
            match part.schema {
                Schema::MinSep => "min_sep",
                Schema::FixedEpochs => "fixed_epochs",
            }
        ),
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

/// What a plan file gives the noise generator.
#[derive(Clone, Debug)]
pub struct PlanFile {
    pub label: String,
    pub strategy: Strategy,
    pub participation: Participation,
    pub objective: Objective,
    pub sensitivity_squared: f64,
    pub noise_multiplier: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Num(f64),
    Str(String),
    Bool(bool),
    Null,
    List(Vec<f64>),
}

fn bad(what: String) -> Error {
    Error::InvalidArgument {
        op: "mf plan file",
        what,
    }
}

struct Reader<'a> {
    s: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn space(&mut self) {
        while self.at < self.s.len() && self.s[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        self.space();
        if self.s.get(self.at) == Some(&c) {
            self.at += 1;
            Ok(())
        } else {
            Err(bad(format!("expected '{}' at byte {}", c as char, self.at)))
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.space();
        self.s.get(self.at).copied()
    }

    fn string(&mut self) -> Result<String> {
        self.expect(b'"')?;
        let start = self.at;
        while self.at < self.s.len() && self.s[self.at] != b'"' {
            if self.s[self.at] == b'\\' {
                return Err(bad(format!(
                    "escapes are not part of the plan format (byte {})",
                    self.at
                )));
            }
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.at])
            .map_err(|_| bad(format!("invalid UTF-8 at byte {start}")))?
            .to_string();
        self.expect(b'"')?;
        Ok(text)
    }

    fn number(&mut self) -> Result<f64> {
        self.space();
        let start = self.at;
        while self.at < self.s.len() && b"+-0123456789.eE".contains(&self.s[self.at]) {
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.at]).unwrap_or("");
        text.parse::<f64>()
            .map_err(|_| bad(format!("expected a number at byte {start}, got {text:?}")))
    }

    fn word(&mut self, w: &str) -> bool {
        self.space();
        if self.s[self.at..].starts_with(w.as_bytes()) {
            self.at += w.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Value> {
        match self.peek() {
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b'[') => {
                self.at += 1;
                let mut v = Vec::new();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Ok(Value::List(v));
                }
                loop {
                    v.push(self.number()?);
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Value::List(v));
                        }
                        _ => return Err(bad(format!("expected ',' or ']' at byte {}", self.at))),
                    }
                }
            }
            _ if self.word("true") => Ok(Value::Bool(true)),
            _ if self.word("false") => Ok(Value::Bool(false)),
            _ if self.word("null") => Ok(Value::Null),
            _ => Ok(Value::Num(self.number()?)),
        }
    }
}

fn parse(text: &str) -> Result<Vec<(String, Value)>> {
    let mut r = Reader {
        s: text.as_bytes(),
        at: 0,
    };
    r.expect(b'{')?;
    let mut out = Vec::new();
    if r.peek() == Some(b'}') {
        return Ok(out);
    }
    loop {
        let key = r.string()?;
        r.expect(b':')?;
        out.push((key, r.value()?));
        match r.peek() {
            Some(b',') => r.at += 1,
            Some(b'}') => break,
            _ => return Err(bad(format!("expected ',' or '}}' at byte {}", r.at))),
        }
    }
    Ok(out)
}

/// Read a plan file written by [`Plan::to_json`].
pub fn read(text: &str) -> Result<PlanFile> {
    let fields = parse(text)?;
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    let num = |k: &str| match get(k) {
        Some(Value::Num(x)) => Ok(*x),
        _ => Err(bad(format!("field {k:?} is missing or not a number"))),
    };
    let count = |k: &str| {
        let x = num(k)?;
        if x >= 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64 {
            Ok(x as usize)
        } else {
            Err(bad(format!("field {k:?} must be a whole number, got {x}")))
        }
    };
    let list = |k: &str| match get(k) {
        Some(Value::List(v)) => Ok(v.clone()),
        _ => Err(bad(format!(
            "field {k:?} is missing or not a list of numbers"
        ))),
    };
    let label = match get("strategy") {
        Some(Value::Str(s)) => s.clone(),
        _ => return Err(bad("field \"strategy\" is missing".into())),
    };
    let (n, k, b) = (count("n")?, count("k")?, count("min_sep")?);
    let participation = match get("schema") {
        Some(Value::Str(s)) if s == "fixed_epochs" => {
            let p = Participation::fixed_epochs(k, b)?;
            if p.n != n {
                return Err(bad(format!(
                    "fixed epochs need n = k b, got {n} != {k} x {b}"
                )));
            }
            p
        }
        Some(Value::Str(s)) if s == "min_sep" => Participation::new(n, k, b)?,
        None => Participation::new(n, k, b)?,
        Some(v) => return Err(bad(format!("unknown schema {v:?}"))),
    };
    let strategy = match label.as_str() {
        "sqrt" | "toeplitz" => Strategy::Toeplitz(list("coefficients")?),
        "bandmf" => {
            let c = list("coefficients")?;
            if count("bands")? != c.len() {
                return Err(bad(format!(
                    "bands {} but {} coefficients",
                    num("bands")?,
                    c.len()
                )));
            }
            Strategy::Banded(c)
        }
        "bisr" => Strategy::Bisr(list("inverse_coefficients")?),
        "blt" => Strategy::Blt {
            theta: list("theta")?,
            omega: list("omega")?,
        },
        "dense" => Strategy::Dense { n, c: list("c")? },
        "fourier" => Strategy::Fourier,
        other => return Err(bad(format!("unknown strategy {other:?}"))),
    };
    strategy.check(n)?;
    let objective = match get("objective") {
        Some(Value::Str(s)) => s.parse()?,
        _ => Objective::Mean,
    };
    let noise_multiplier = match get("noise_multiplier") {
        Some(Value::Num(z)) if *z > 0.0 && z.is_finite() => Some(*z),
        Some(Value::Null) | None => None,
        Some(v) => {
            return Err(bad(format!(
                "noise_multiplier must be > 0 or null, got {v:?}"
            )));
        }
    };
    let sensitivity_squared = num("sensitivity_squared")?;
    if !(sensitivity_squared > 0.0 && sensitivity_squared.is_finite()) {
        return Err(bad(format!(
            "sensitivity_squared must be > 0, got {sensitivity_squared}"
        )));
    }
    Ok(PlanFile {
        label,
        strategy,
        participation,
        objective,
        sensitivity_squared,
        noise_multiplier,
    })
}
