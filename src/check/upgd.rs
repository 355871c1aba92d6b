//! Check cases of UPGD: every variant against the CPU reference over three steps, on models of
//! uneven tensors, and the largest model the backend promises for one variant.

use super::{Row, compare};
use crate::backend::Device;
use crate::buffer::DType;
use crate::upgd::{Hyper, TensorSpec, Upgd, Variant};
use crate::{Backend, Result, rng};

const STEPS: u64 = 3;

/// A model: tensors of uneven sizes (including 1, rows of 1 and rows straddling the kernels'
/// 256-element chunks), scaled to about `target` elements.
fn model(target: usize, tensors: usize) -> (Vec<TensorSpec>, usize) {
    let mut specs = Vec::new();
    let mut offset = 0;
    let unit = (target / tensors).max(1);
    for k in 0..tensors {
        let last_dim = [1, 7, 100, 33, 1024][k % 5].min(unit.max(1));
        let rows = (unit / last_dim).max(1) + k % 3;
        let len = rows * last_dim;
        specs.push(TensorSpec {
            offset,
            len,
            last_dim,
        });
        offset += len + (k % 2);
    }
    (specs, offset)
}

fn values(n: usize, salt: u64) -> Vec<f32> {
    let mut w = vec![0u32; n];
    rng::words_into(salt, 3, 0, &mut w);
    w.iter().map(|&x| 2.0 * rng::uniform(x) - 1.0).collect()
}

fn run(
    dev: &Device,
    variant: Variant,
    one_pass: bool,
    specs: &[TensorSpec],
    n: usize,
) -> Result<(f64, f64)> {
    let cpu = Device::cpu();
    let hp = Hyper {
        lr: 0.01,
        weight_decay: 0.01,
        beta_utility: 0.9,
        sigma: 0.1,
    };
    let mut want = Upgd::new(&cpu, variant, hp, specs, n, 7)?;
    let mut got = Upgd::new(dev, variant, hp, specs, n, 7)?;
    want.set_one_pass(one_pass)?;
    got.set_one_pass(one_pass)?;
    let w0 = values(n, 1);
    let mut wa = cpu.upload(&w0)?;
    let mut wb = dev.upload(&w0)?;
    for t in 0..STEPS {
        let g = values(n, 10 + t);
        let h = values(n, 20 + t);
        let (ga, gb) = (cpu.upload(&g)?, dev.upload(&g)?);
        let (ha, hb) = (cpu.upload(&h)?, dev.upload(&h)?);
        let so = variant.second_order();
        want.step(&mut wa, &ga, so.then_some(&ha))?;
        got.step(&mut wb, &gb, so.then_some(&hb))?;
    }
    let f = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
    let (a, b) = (f(wa.download()?), f(wb.download()?));
    let (ua, ub) = (f(want.utility()?), f(got.utility()?));
    Ok((
        compare::scaled_max_error(&b, &a),
        compare::scaled_max_error(&ub, &ua),
    ))
}

fn two_pass(v: Vec<Variant>) -> Vec<(Variant, bool)> {
    v.into_iter().map(|v| (v, false)).collect()
}

pub(super) fn cases(dev: &Device, progress: &mut dyn FnMut(&str), rows: &mut Vec<Row>) {
    let largest = match dev.backend() {
        Backend::PtxEmu => 1 << 16,
        _ => 1 << 26,
    };
    let one = vec![TensorSpec {
        offset: 0,
        len: 1,
        last_dim: 1,
    }];
    let (ragged, nr) = model(100_000, 7);
    let (many, nm) = model(300_000, 100);
    let (big, nb) = model(largest, 20);
    let first = [Variant::all()[0], Variant::all()[2]];
    let mut ragged_cases = two_pass(Variant::all());
    ragged_cases.extend(first.map(|v| (v, true)));
    let classes = vec![
        ("one", one, 1usize, two_pass(Variant::all())),
        ("ragged", ragged, nr, ragged_cases),
        ("100-tensors", many, nm, two_pass(first.to_vec())),
        ("largest", big, nb, two_pass(vec![Variant::all()[0]])),
    ];
    for (size, specs, n, variants) in classes {
        for (variant, one_pass) in variants {
            let op = match (variant.name().as_str(), one_pass) {
                ("adaptive", _) => "upgd adaptive",
                (_, true) => "upgd one-pass",
                _ => "upgd",
            };
            progress(&format!("upgd {} {size}", variant.name()));
            let mut row = Row {
                op,
                dtype: DType::F32,
                backend: dev.backend().to_string(),
                size,
                len: n,
                metric: "max |d|/(1+|ref|)",
                error: f64::INFINITY,
                tolerance: 1e-5,
                pass: false,
                note: variant.name(),
            };
            match run(dev, variant, one_pass, &specs, n) {
                Ok((ew, eu)) => {
                    row.error = ew.max(eu);
                    row.pass = row.error <= row.tolerance;
                }
                Err(e) => row.note = format!("{}: {e}", variant.name()),
            }
            rows.push(row);
        }
    }
}
