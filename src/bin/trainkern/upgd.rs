//! `trainkern run upgd`: step the optimizer over gradients from `.npz` files, so a user can
//! compare with their PyTorch optimizer tensor by tensor.

use std::path::{Path, PathBuf};

use trainkern::upgd::{Hyper, Role, TensorSpec, Upgd, Variant};
use trainkern::{Device, Error, Result};

use crate::npy;

/// One named tensor from an `.npz`, as f32.
struct Array {
    name: String,
    shape: Vec<u64>,
    data: Vec<f32>,
}

fn bad(what: String) -> Error {
    Error::InvalidArgument {
        op: "run upgd",
        what,
    }
}

/// Every array of an `.npz` as f32 (f32, f64, f16 and integers accepted).
fn read_npz(path: &Path) -> Result<Vec<Array>> {
    Ok(npy::read_npz(path, "run upgd")?
        .into_iter()
        .map(|n| Array {
            name: n.name,
            shape: n.array.shape,
            data: n.array.data.into_iter().map(|x| x as f32).collect(),
        })
        .collect())
}

/// The flags of `trainkern run upgd`.
pub struct Args {
    pub variant: String,
    pub k: f32,
    pub one_pass: bool,
    pub feature: bool,
    pub bf16_traces: bool,
    pub params: PathBuf,
    pub grads: PathBuf,
    pub hess: Option<PathBuf>,
    pub last_dims: Option<PathBuf>,
    pub hyper: Hyper,
    pub seed: u64,
    pub out: PathBuf,
    pub state_out: Option<PathBuf>,
}

/// Run every step; returns the JSON line to print.
pub fn run(dev: &Device, a: &Args) -> Result<String> {
    let mut variant = Variant::parse(&a.variant)?;
    if let Variant::Adaptive { k, .. } = &mut variant {
        *k = a.k;
    }
    let params = read_npz(&a.params)?;
    let grads = read_npz(&a.grads)?;
    let hess = a.hess.as_deref().map(read_npz).transpose()?;
    let dims = a.last_dims.as_deref().map(read_npz).transpose()?;
    if variant.second_order() != hess.is_some() {
        return Err(bad(if hess.is_some() {
            "--hess is only for second-order variants".into()
        } else {
            "second-order variants need --hess".into()
        }));
    }
    // The flat layout: tensors in the order of the parameter archive.
    let mut specs = Vec::new();
    let mut offset = 0usize;
    for p in &params {
        let last_dim = match dims
            .as_ref()
            .and_then(|d| d.iter().find(|x| x.name == p.name))
        {
            Some(d) => *d
                .data
                .first()
                .ok_or_else(|| bad(format!("--last-dims {} is empty", p.name)))?
                as usize,
            None => p.shape.last().copied().unwrap_or(1) as usize,
        };
        specs.push(TensorSpec {
            offset,
            len: p.data.len(),
            last_dim,
        });
        offset += p.data.len();
    }
    let total = offset;
    let roles = if a.feature {
        Some(feature_roles(&params, &mut specs)?)
    } else {
        None
    };
    // Steps: the leading axis of every gradient array, the same for all.
    let g_arrays = per_step(&params, &grads, "--grads")?;
    let h_arrays = match &hess {
        Some(h) => Some(per_step(&params, h, "--hess")?),
        None => None,
    };
    let steps = g_arrays.first().map_or(0, |g| g.shape[0]) as usize;
    if g_arrays.iter().any(|g| g.shape[0] as usize != steps) {
        return Err(bad(
            "every gradient array needs the same number of steps".into()
        ));
    }
    let flat_at = |arrays: &[&Array], t: usize| -> Vec<f32> {
        let mut v = Vec::with_capacity(total);
        for (a, s) in arrays.iter().zip(&specs) {
            v.extend_from_slice(&a.data[t * s.len..(t + 1) * s.len]);
        }
        v
    };
    let mut opt = match &roles {
        Some(r) => Upgd::new_feature(dev, variant, a.hyper, &specs, r, total, a.seed)?,
        None => Upgd::new(dev, variant, a.hyper, &specs, total, a.seed)?,
    };
    opt.set_one_pass(a.one_pass)?;
    if a.bf16_traces {
        opt.set_trace_dtype(trainkern::DType::BF16)?;
    }
    let w0: Vec<f32> = params.iter().flat_map(|p| p.data.iter().copied()).collect();
    let mut w = dev.upload(&w0)?;
    for t in 0..steps {
        let g = dev.upload(&flat_at(&g_arrays, t))?;
        let h = match &h_arrays {
            Some(h) => Some(dev.upload(&flat_at(h, t))?),
            None => None,
        };
        opt.step(&mut w, &g, h.as_ref())?;
    }
    write_npz(&a.out, &params, &specs, &w.download()?)?;
    if let Some(path) = &a.state_out {
        write_npz(path, &params, &specs, &opt.utility()?)?;
    }
    Ok(format!(
        "{{\"steps\": {steps}, \"seed\": {}, \"nonfinite\": {}, \"backend\": \"{}\"}}",
        a.seed,
        opt.nonfinite()?,
        dev.backend()
    ))
}

/// Feature-level roles by the public optimizers' naming rule: a tensor whose name contains
/// "gate" is a gate; walking backwards from a gate, the 1-D tensors (biases) before it and the
/// first tensor of two or more dimensions (the weight) are gated by it, and the weight ends its
/// reach; every other tensor is ungated. A gated bias's rows become single elements, one per unit.
fn feature_roles(params: &[Array], specs: &mut [TensorSpec]) -> Result<Vec<Role>> {
    let mut roles = vec![Role::Param; params.len()];
    let mut gate: Option<usize> = None;
    for k in (0..params.len()).rev() {
        if params[k].name.contains("gate") {
            roles[k] = Role::Gate;
            specs[k].last_dim = specs[k].len;
            gate = Some(k);
            continue;
        }
        if let Some(gk) = gate {
            roles[k] = Role::Gated { gate: gk };
            if params[k].shape.len() <= 1 {
                specs[k].last_dim = 1;
            } else {
                gate = None;
            }
        }
    }
    if !roles.contains(&Role::Gate) {
        return Err(bad(
            "--feature needs tensors whose names contain \"gate\"".into()
        ));
    }
    Ok(roles)
}

/// The array of each parameter's name in `arrays`, checked to be `(T, *shape)`.
fn per_step<'a>(params: &[Array], arrays: &'a [Array], what: &str) -> Result<Vec<&'a Array>> {
    params
        .iter()
        .map(|p| {
            let g = arrays
                .iter()
                .find(|g| g.name == p.name)
                .ok_or_else(|| bad(format!("{what} has no array {}", p.name)))?;
            if g.shape.len() != p.shape.len() + 1 || g.shape[1..] != p.shape[..] {
                return Err(Error::Shape {
                    op: "run upgd",
                    arg: "grads",
                    expected: format!("(T, {:?}) for {}", p.shape, p.name),
                    got: format!("{:?}", g.shape),
                });
            }
            Ok(g)
        })
        .collect()
}

/// `flat` split back into the parameter archive's names and shapes.
fn write_npz(path: &Path, params: &[Array], specs: &[TensorSpec], flat: &[f32]) -> Result<()> {
    let arrays: Vec<(&str, &[u64], &[f32])> = params
        .iter()
        .zip(specs)
        .map(|(p, s)| {
            (
                p.name.as_str(),
                p.shape.as_slice(),
                &flat[s.offset..s.offset + s.len],
            )
        })
        .collect();
    npy::write_npz(path, &arrays)
}
