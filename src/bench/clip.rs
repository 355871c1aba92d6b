//! Bench cases of clipping: flat clipping with noise at the shapes (`B = 64` in f32,
//! `B = 256` in bf16, `d = len / B`), and ghost norms of one linear layer against building the
//! per-example gradients explicitly (on the CPU, where that baseline runs in the same process).
//!
//! Minimum bytes of a clip: the gradients read twice (norms, then the weighted sum; a row does
//! not fit on chip) and the sum written once, `2 B d s + 4 d` for element size `s`. Of a ghost
//! norm: `A` and `G` read once; of the explicit baseline, also each `q x p` per-example gradient
//! written and read back.

use rayon::prelude::*;

use super::{Row, row, time};
use crate::backend::Device;
use crate::buffer::{DType, Float};
use crate::clip::{Bounds, ClipNoise, ClipOptions, Clipper, GhostShape, ghost_norms};
use crate::{Backend, Result};

pub(super) fn run(
    dev: &Device,
    len: usize,
    copy_gbps: f64,
    progress: &mut dyn FnMut(&str),
    rows: &mut Vec<Row>,
) -> Result<()> {
    flat::<f32>(dev, 64, len, "clip B=64", copy_gbps, progress, rows)?;
    flat::<half::bf16>(dev, 256, len, "clip B=256", copy_gbps, progress, rows)?;
    ghost(dev, len, copy_gbps, progress, rows)
}

#[allow(clippy::too_many_arguments)]
fn flat<T: Float>(
    dev: &Device,
    b: usize,
    len: usize,
    op: &'static str,
    copy_gbps: f64,
    progress: &mut dyn FnMut(&str),
    rows: &mut Vec<Row>,
) -> Result<()> {
    let d = (len / b).max(1);
    progress(&format!("{op} {} {b}x{d}", T::DTYPE));
    let g = dev.upload(&vec![T::from_f32(0.01); b * d])?;
    let mut c = Clipper::flat(dev, b, d)?;
    let (mut sum, mut norms) = (dev.zeros(d)?, dev.zeros(b)?);
    let opts = ClipOptions {
        noise: Some(ClipNoise {
            multiplier: 1.0,
            seed: 1,
            stream: 2,
            offset: 0,
        }),
        scale: 1.0 / b as f32,
        ..ClipOptions::default()
    };
    let bound = dev.upload(&[1.0f32])?;
    let t = time(dev, || {
        c.run(&g, Bounds::Device(&bound), &opts, &mut sum, &mut norms)
    })?;
    let bytes = (2 * b * d * T::DTYPE.size() + 4 * d) as u64;
    rows.push(row(dev, op, T::DTYPE, b * d, t, bytes, copy_gbps));
    Ok(())
}

/// A transformer-like layer: `T = 128` positions, `p = q = 256`, `B` to make `len` activations
/// (at most 16: the work grows as `T^2 (p + q)` per example). The PTX emulator gets a layer 64
/// times smaller.
fn ghost(
    dev: &Device,
    len: usize,
    copy_gbps: f64,
    progress: &mut dyn FnMut(&str),
    rows: &mut Vec<Row>,
) -> Result<()> {
    let (t, p, q) = match dev.backend() {
        Backend::PtxEmu => (16, 32, 32),
        _ => (128, 256, 256),
    };
    let b = (len / (t * p)).clamp(1, 16);
    let shape = GhostShape {
        batch: b,
        positions: t,
        inputs: p,
        outputs: q,
    };
    progress(&format!("ghost norms {shape:?}"));
    let av = vec![0.5f32; b * t * p];
    let gv = vec![0.25f32; b * t * q];
    let (a, g) = (dev.upload(&av)?, dev.upload(&gv)?);
    let mut out = dev.zeros(b)?;
    let tg = time(dev, || ghost_norms(dev, &a, &g, &shape, true, &mut out))?;
    let read = (4 * b * t * (p + q)) as u64;
    rows.push(row(
        dev,
        "ghost norms",
        DType::F32,
        b * t * p,
        tg,
        read,
        copy_gbps,
    ));
    if dev.backend() == Backend::Cpu {
        progress("explicit per-example gradients");
        let mut per = vec![0.0f32; b * p * q];
        let te = time(dev, || {
            explicit(&av, &gv, &shape, &mut per);
            Ok(())
        })?;
        std::hint::black_box(&per);
        let bytes = read + (2 * 4 * b * p * q) as u64;
        rows.push(row(
            dev,
            "ghost explicit",
            DType::F32,
            b * t * p,
            te,
            bytes,
            copy_gbps,
        ));
    }
    Ok(())
}

/// The baseline: each example's weight gradient `G_i^T A_i` built in memory, then its norm
/// (what per-sample-gradient clipping does without the ghost trick).
fn explicit(a: &[f32], g: &[f32], s: &GhostShape, per: &mut [f32]) -> f64 {
    let (t, p, q) = (s.positions, s.inputs, s.outputs);
    per.par_chunks_mut(p * q)
        .enumerate()
        .map(|(i, m)| {
            m.fill(0.0);
            for pos in 0..t {
                let ar = &a[(i * t + pos) * p..][..p];
                let gr = &g[(i * t + pos) * q..][..q];
                for (r, &gv) in gr.iter().enumerate() {
                    for (x, &av) in m[r * p..(r + 1) * p].iter_mut().zip(ar) {
                        *x += gv * av;
                    }
                }
            }
            m.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>()
        })
        .sum()
}
