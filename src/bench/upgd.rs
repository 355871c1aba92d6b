//! Bench cases of UPGD: one step of a 100-tensor model, for the variants whose traffic differs
//! (first order global and local, second order, adaptive).

use super::{Row, row, time};
use crate::Result;
use crate::backend::Device;
use crate::buffer::DType;
use crate::upgd::{Hyper, TensorSpec, Upgd, Variant};

/// 100 tensors of equal length (a multiple of 64, rows of 64) totalling about `n`.
pub(crate) fn layout(n: usize) -> (Vec<TensorSpec>, usize) {
    let each = ((n / 100) / 64).max(1) * 64;
    let specs = (0..100)
        .map(|k| TensorSpec {
            offset: k * each,
            len: each,
            last_dim: 64,
        })
        .collect();
    (specs, 100 * each)
}

pub(super) fn run(
    dev: &Device,
    len: usize,
    copy_gbps: f64,
    progress: &mut dyn FnMut(&str),
    rows: &mut Vec<Row>,
) -> Result<()> {
    let (specs, n) = layout(len);
    let hp = Hyper {
        lr: 1e-3,
        weight_decay: 1e-3,
        beta_utility: 0.999,
        sigma: 1e-3,
    };
    let w = vec![0.5f32; n];
    let g = dev.upload(&vec![0.25f32; n])?;
    let h = dev.upload(&vec![0.125f32; n])?;
    // Minimum element transfers per weight: g, w, u read and u, w written in each of the two
    // passes but shared (8), h (9), m and v (12); one pass reads g, w, u and writes u, w (5).
    for (name, op, transfers, one_pass) in [
        ("first-global-protect", "upgd first-global", 8u64, false),
        ("first-global-protect", "upgd 1-pass global", 5, true),
        ("first-local-protect", "upgd first-local", 8, false),
        ("second-global-protect", "upgd second-global", 9, false),
        ("adaptive", "upgd adaptive", 12, false),
    ] {
        progress(&format!("{op} {n}"));
        let variant = Variant::parse(name)?;
        let mut opt = Upgd::new(dev, variant, hp, &specs, n, 1)?;
        opt.set_one_pass(one_pass)?;
        let mut wb = dev.upload(&w)?;
        let hh = variant.second_order().then_some(&h);
        let t = time(dev, || opt.step(&mut wb, &g, hh))?;
        rows.push(row(
            dev,
            op,
            DType::F32,
            n,
            t,
            transfers * 4 * n as u64,
            copy_gbps,
        ));
    }
    Ok(())
}
