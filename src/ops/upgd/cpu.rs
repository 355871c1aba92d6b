//! The CPU reference of UPGD: the public optimizers' arithmetic in f32, operation for
//! operation (PyTorch's order: `u*beta + (1-beta)*U`, `w*decay + (-lr)*d`), with the row norms
//! of local scaling accumulated in f64. Parallel over chunks of each tensor with rayon.

use rayon::prelude::*;

use super::{Role, Rule, Scalars, Scale, Scaling, TensorSpec, Variant};
use crate::buffer::Float;
use crate::rng;

const CHUNK: usize = 1 << 14;

/// A chunk of the weights and, for adaptive, of the moments.
struct Lane<'a, W, U> {
    w: &'a mut [W],
    m: Option<&'a mut [U]>,
    v: Option<&'a mut [U]>,
}

/// The traces in their storage type `U` (f32 or bf16). A value is rounded to `U` when stored,
/// and every later use reads the stored value.
pub(super) struct State<'a, U> {
    pub u: &'a mut [U],
    pub m: Option<&'a mut [U]>,
    pub v: Option<&'a mut [U]>,
}

/// `U`, the instantaneous utility of one weight.
#[inline(always)]
pub(crate) fn utility(g: f32, w: f32, h: Option<f32>) -> f32 {
    match h {
        None => -g * w,
        Some(h) => 0.5 * h * (w * w) - g * w,
    }
}

#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The scaled utility of global scaling; `s = 0.5` where `eta == 0` (the documented deviation).
#[inline(always)]
pub(crate) fn scaled_global(u: f32, bc: f32, eta: f32) -> f32 {
    if eta == 0.0 {
        0.5
    } else {
        sigmoid((u / bc) / eta)
    }
}

/// One step over every tensor, given as one slice per tensor of `w`, `g` (and `h`) in the
/// order of `tensors` (the traces stay flat, at the tensors' offsets); returns the number of
/// non-finite `g` and `h` entries.
#[allow(clippy::too_many_arguments)]
pub(super) fn step<W: Float, G: Float, U: Float>(
    variant: Variant,
    sc: &Scalars,
    tensors: &[TensorSpec],
    roles: Option<&[Role]>,
    seed: u64,
    mut ws: Vec<&mut [W]>,
    gs: Vec<&[G]>,
    hs: Option<Vec<&[G]>>,
    st: State<'_, U>,
    prev: Option<&Scale>,
) -> (u64, Scale) {
    let State { u, mut m, mut v } = st;
    // Pass 1: traces, the maximum raw trace, non-finite inputs.
    let mut eta = f32::NEG_INFINITY;
    let mut nonfinite = 0u64;
    for (k, s) in tensors.iter().enumerate() {
        // Feature-level UPGD traces the gates only.
        if roles.is_some_and(|r| r[k] != Role::Gate) {
            continue;
        }
        let r = s.offset..s.offset + s.len;
        let (w, g, h) = (&*ws[k], gs[k], hs.as_ref().map(|h| h[k]));
        let (mx, bad) = u[r.clone()]
            .par_chunks_mut(CHUNK)
            .enumerate()
            .map(|(c, uc)| {
                let base = c * CHUNK;
                let (mut mx, mut bad) = (f32::NEG_INFINITY, 0u64);
                for (k, ui) in uc.iter_mut().enumerate() {
                    let i = base + k;
                    let gi = g[i].to_f32();
                    let hi = h.map(|h| h[i].to_f32());
                    bad +=
                        u64::from(!gi.is_finite()) + u64::from(hi.is_some_and(|x| !x.is_finite()));
                    let big_u = utility(gi, w[i].to_f32(), hi);
                    *ui = U::from_f32(ui.to_f32() * sc.beta + sc.one_minus_beta * big_u);
                    let stored = ui.to_f32();
                    // NaN traces are left out of the maximum (see the module docs).
                    if stored > mx {
                        mx = stored;
                    }
                }
                (mx, bad)
            })
            .reduce(|| (f32::NEG_INFINITY, 0), |a, b| (a.0.max(b.0), a.1 + b.1));
        eta = eta.max(mx);
        nonfinite += bad;
    }
    // Per-row sums of squares of the bias-corrected trace (accumulated in f64), for local
    // scaling; the norm is then max(sqrt(ss), 1e-12) in f32, as on the devices.
    let row_base: Vec<usize> = tensors
        .iter()
        .scan(0, |acc, s| {
            let b = *acc;
            *acc += s.len / s.last_dim;
            Some(b)
        })
        .collect();
    let rowsq: Vec<f32> = if variant.scaling() == Scaling::Local {
        tensors
            .iter()
            .flat_map(|s| {
                u[s.offset..s.offset + s.len]
                    .par_chunks(s.last_dim)
                    .map(|row| {
                        let ss: f64 = row
                            .iter()
                            .map(|&x| {
                                let x = f64::from(x.to_f32() / sc.bc);
                                x * x
                            })
                            .sum();
                        ss as f32
                    })
                    .collect::<Vec<f32>>()
            })
            .collect()
    } else {
        Vec::new()
    };
    let current = Scale { eta, rowsq };
    // The one-pass mode scales by the previous step's reductions.
    let scale = prev.unwrap_or(&current);
    let (eta, rowsq) = (scale.eta, &scale.rowsq);
    let norm_of = |row: usize| rowsq.get(row).map(|ss| ss.sqrt().max(1e-12));
    // Pass 2: noise and the update (and the adaptive moments).
    let u_all: &[U] = u;
    for (ti, s) in tensors.iter().enumerate() {
        let role = roles.map(|r| r[ti]);
        if role == Some(Role::Gate) {
            continue;
        }
        let r = s.offset..s.offset + s.len;
        let u = &u_all[r.clone()];
        let g = gs[ti];
        // One lane per chunk: its weights and, for adaptive, its moments.
        let mut lanes: Vec<Lane<'_, W, U>> = ws[ti]
            .chunks_mut(CHUNK)
            .map(|w| Lane {
                w,
                m: None,
                v: None,
            })
            .collect();
        if let Some(m) = m.as_deref_mut() {
            for (l, mc) in lanes.iter_mut().zip(m[r.clone()].chunks_mut(CHUNK)) {
                l.m = Some(mc);
            }
        }
        if let Some(v) = v.as_deref_mut() {
            for (l, vc) in lanes.iter_mut().zip(v[r.clone()].chunks_mut(CHUNK)) {
                l.v = Some(vc);
            }
        }
        lanes.into_par_iter().enumerate().for_each(
            |(
                c,
                Lane {
                    w: wc,
                    m: mut mc,
                    v: mut vc,
                },
            )| {
                let local0 = c * CHUNK;
                let mut z = vec![0.0f32; wc.len()];
                rng::gaussians_into(seed, sc.stream, (s.offset + local0) as u64, &mut z);
                for (k, wk) in wc.iter_mut().enumerate() {
                    let j = local0 + k;
                    let gi = g[j].to_f32();
                    // The trace that gates this weight: its own, or its unit's gate.
                    let (ut, norm) = match role {
                        None => (u[j].to_f32(), norm_of(row_base[ti] + j / s.last_dim)),
                        Some(Role::Gated { gate }) => (
                            u_all[tensors[gate].offset + j / s.last_dim].to_f32(),
                            norm_of(row_base[gate]),
                        ),
                        _ => {
                            // No gate: plain SGD with weight decay, no noise.
                            *wk = W::from_f32(wk.to_f32() * sc.decay + sc.neg_lr * gi);
                            continue;
                        }
                    };
                    let s_util = match (variant.scaling(), norm) {
                        (Scaling::Local, Some(norm)) => sigmoid((ut / sc.bc) / norm),
                        _ => scaled_global(ut, sc.bc, eta),
                    };
                    let noise = z[k] * sc.sigma;
                    let d = match variant {
                        Variant::Upgd {
                            rule: Rule::Protect,
                            ..
                        } => (gi + noise) * (1.0 - s_util),
                        Variant::Upgd {
                            rule: Rule::NoProtect,
                            ..
                        } => gi + noise * (1.0 - s_util),
                        Variant::Adaptive {
                            beta1, beta2, eps, ..
                        } => {
                            let (Some(mk), Some(vk)) = (mc.as_deref_mut(), vc.as_deref_mut())
                            else {
                                unreachable!("adaptive state exists")
                            };
                            mk[k] = U::from_f32(mk[k].to_f32() * beta1 + sc.one_minus_beta1 * gi);
                            vk[k] = U::from_f32(
                                vk[k].to_f32() * beta2 + sc.one_minus_beta2 * (gi * gi),
                            );
                            let (mi, vi) = (mk[k].to_f32(), vk[k].to_f32());
                            let denom = vi.sqrt() / sc.sqrt_bc2 + eps;
                            (mi / denom / sc.bc1 + noise) * (1.0 - s_util)
                        }
                    };
                    *wk = W::from_f32(wk.to_f32() * sc.decay + sc.neg_lr * d);
                }
            },
        );
    }
    (nonfinite, current)
}
