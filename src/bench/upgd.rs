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
    for (name, op, transfers) in [
        ("first-global-protect", "upgd first-global", 8u64),
        ("first-local-protect", "upgd first-local", 8),
        ("second-global-protect", "upgd second-global", 9),
        ("adaptive", "upgd adaptive", 12),
    ] {
        progress(&format!("{op} {n}"));
        let variant = Variant::parse(name)?;
        let mut opt = Upgd::new(dev, variant, hp, &specs, n, 1)?;
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
