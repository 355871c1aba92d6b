//! The CPU reference of splatting, forward and backward, in f64 (`design/triplane.md`,
//! "Splat"): per ray, every counted sample puts its vector into every grid of the output list
//! with the sampling's corner weights. Parallel over rays; the sums use f64 atomic adds, so their
//! order (and a sum's last bits) may vary from run to run.

use std::sync::atomic::AtomicU64;

use rayon::prelude::*;

use super::SplatOptions;
use crate::ops::render::cpu::{
    GridRead, Grids, HostRays, mlp_backward, mlp_forward, sample_into, scatter,
};
use crate::ops::render::decoder::Mlp;
use crate::ops::render::grid::GridList;

/// Rays per parallel task.
const CHUNK: usize = 64;

/// Parallel tasks of the MLP splatter's backward pass at most: each sums the parameter gradients
/// in its own vector, and the vectors are summed in task order.
const PARTIALS: usize = 64;

/// The splat weight's floor: `out = sum(w v) / max(sum(w), FLOOR)`.
pub(crate) const FLOOR: f64 = 1e-5;

/// The MLP splatter's input: `v = MLP(e + f_in(p))`.
pub(crate) struct MlpIn<'a, G: GridRead + ?Sized> {
    pub grids: Grids<'a, G>,
    pub mlp: &'a Mlp,
    pub params: &'a [f64],
}

/// Everything a splat reads besides the rays.
pub(crate) struct SplatScene<'a, G: GridRead + ?Sized> {
    pub out: &'a GridList,
    /// The output list's shapes with one channel: where the weights are summed.
    pub weights: &'a GridList,
    pub mlp: Option<MlpIn<'a, G>>,
    pub opts: &'a SplatOptions,
}

/// Gradients of the splat: the rays' vectors (`R x E`), and with an MLP its input grids and
/// parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct HostSplatGrads {
    pub encoding: Vec<f64>,
    pub input_grids: Option<Vec<f64>>,
    pub params: Option<Vec<f64>>,
}

fn atomics(len: usize) -> Vec<AtomicU64> {
    (0..len).map(|_| AtomicU64::new(0)).collect()
}

fn into_f64(v: Vec<AtomicU64>) -> Vec<f64> {
    v.into_iter()
        .map(|a| f64::from_bits(a.into_inner()))
        .collect()
}

impl<G: GridRead + ?Sized> SplatScene<'_, G> {
    /// The counted samples of ray `r`: `(point, batch)` of each, in order. Masked samples (with
    /// `mask_out_of_bounds`, those outside the cube) put nothing anywhere, weight included.
    fn samples<'r>(&self, rays: &'r HostRays, r: usize) -> impl Iterator<Item = [f64; 3]> + 'r {
        let m = self.opts.marching();
        let (near, far) = (rays.near[r], rays.far[r]);
        let (contract, mask) = (self.opts.contract, self.opts.mask_out_of_bounds);
        (0..m.total()).filter_map(move |j| {
            let (t, _) = m.at(near, far, j);
            let (p, inside) = rays.point(r, t, contract, mask);
            inside.then_some(p)
        })
    }

    /// The vector splatted at point `p` of ray `r`: the ray's encoding, or the MLP of the
    /// encoding plus the input grids' sample (activations left in `acts`).
    fn value<'s>(
        &self,
        rays: &'s HostRays,
        r: usize,
        p: [f64; 3],
        acts: &'s mut [Vec<f64>],
    ) -> &'s [f64] {
        let e_len = self.encoding_len();
        let enc = rays
            .encoding
            .as_ref()
            .map(|e| &e[r * e_len..(r + 1) * e_len]);
        match &self.mlp {
            None => enc.unwrap_or(&[]),
            Some(m) => {
                sample_into(&m.grids, rays.batch[r] as usize, p, &mut acts[0]);
                if let Some(e) = enc {
                    for (x, &ek) in acts[0].iter_mut().zip(e) {
                        *x += ek;
                    }
                }
                mlp_forward(m.params, m.mlp, acts, false);
                &acts[m.mlp.layers()]
            }
        }
    }

    /// The width of each ray's encoding: the output channels, or the MLP's input.
    pub fn encoding_len(&self) -> usize {
        self.mlp
            .as_ref()
            .map_or(self.out.channels(), |m| m.mlp.input())
    }

    fn acts(&self) -> Vec<Vec<f64>> {
        match &self.mlp {
            None => Vec::new(),
            Some(m) => m.mlp.dims.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }

    /// The unnormalized splat `sum(w v)` (the output list's layout) and the weight sums `sum(w)`
    /// (one per cell).
    pub fn sums(&self, rays: &HostRays) -> (Vec<f64>, Vec<f64>) {
        let sums = atomics(self.out.len());
        let weights = atomics(self.weights.len());
        let n = rays.len();
        (0..n.div_ceil(CHUNK)).into_par_iter().for_each(|chunk| {
            let mut acts = self.acts();
            for r in chunk * CHUNK..((chunk + 1) * CHUNK).min(n) {
                let b = rays.batch[r] as usize;
                for p in self.samples(rays, r) {
                    let v = self.value(rays, r, p, &mut acts);
                    scatter(self.out, b, p, v, &sums);
                    scatter(self.weights, b, p, &[1.0], &weights);
                }
            }
        });
        (into_f64(sums), into_f64(weights))
    }

    /// The splat normalized per cell: `sum(w v) / max(sum(w), 1e-5)`.
    pub fn forward(&self, rays: &HostRays) -> Vec<f64> {
        let (mut sums, weights) = self.sums(rays);
        let c = self.out.channels();
        for (cell, &w) in sums.chunks_mut(c).zip(&weights) {
            cell.iter_mut().for_each(|x| *x /= w.max(FLOOR));
        }
        sums
    }

    /// `sum_j sample(g, p_j)` over each ray's counted samples (`R x C`): the adjoint of the
    /// unnormalized splat of one vector per ray.
    pub fn gather(&self, rays: &HostRays, g: &[f64]) -> Vec<f64> {
        let c = self.out.channels();
        let grid = Grids {
            list: self.out,
            data: g,
        };
        let mut out = vec![0.0; rays.len() * c];
        out.par_chunks_mut(CHUNK * c)
            .enumerate()
            .for_each(|(chunk, rows)| {
                let mut s = vec![0.0; c];
                for (i, row) in rows.chunks_mut(c).enumerate() {
                    let r = chunk * CHUNK + i;
                    for p in self.samples(rays, r) {
                        sample_into(&grid, rays.batch[r] as usize, p, &mut s);
                        row.iter_mut().zip(&s).for_each(|(a, b)| *a += b);
                    }
                }
            });
        out
    }

    /// Gradients of `<grad_out, forward(..)>`. The normalizer depends on the geometry alone, so
    /// `grad_out / max(weight, 1e-5)` gathered along each ray is the vectors' exact gradient;
    /// with an MLP each sample's MLP is recomputed and run backward from there.
    pub fn backward(&self, rays: &HostRays, grad_out: &[f64]) -> HostSplatGrads {
        let (_, weights) = self.sums(rays);
        let c = self.out.channels();
        let mut g = grad_out.to_vec();
        for (cell, &w) in g.chunks_mut(c).zip(&weights) {
            cell.iter_mut().for_each(|x| *x /= w.max(FLOOR));
        }
        let Some(m) = &self.mlp else {
            return HostSplatGrads {
                encoding: self.gather(rays, &g),
                input_grids: None,
                params: None,
            };
        };
        let grid = Grids {
            list: self.out,
            data: g.as_slice(),
        };
        let n = rays.len();
        let e_len = m.mlp.input();
        let input_grad = atomics(m.grids.list.len());
        let mut g_enc = vec![0.0; n * e_len];
        let per_task = n.div_ceil(PARTIALS).max(CHUNK);
        let partial: Vec<Vec<f64>> = g_enc
            .par_chunks_mut(per_task * e_len)
            .enumerate()
            .map(|(chunk, enc)| {
                let mut gp = vec![0.0; m.params.len()];
                let mut acts = self.acts();
                let (mut gv, mut g_in) = (vec![0.0; c], Vec::new());
                for (i, row) in enc.chunks_mut(e_len).enumerate() {
                    let r = chunk * per_task + i;
                    let b = rays.batch[r] as usize;
                    for p in self.samples(rays, r) {
                        self.value(rays, r, p, &mut acts);
                        gv.resize(c, 0.0);
                        sample_into(&grid, b, p, &mut gv);
                        mlp_backward(m.params, m.mlp, &acts, false, &mut gv, &mut g_in, &mut gp);
                        row.iter_mut().zip(&g_in).for_each(|(a, b)| *a += b);
                        scatter(m.grids.list, b, p, &g_in, &input_grad);
                    }
                }
                gp
            })
            .collect();
        let mut params = vec![0.0; m.params.len()];
        for gp in &partial {
            params.iter_mut().zip(gp).for_each(|(a, b)| *a += b);
        }
        HostSplatGrads {
            encoding: g_enc,
            input_grids: Some(into_f64(input_grad)),
            params: Some(params),
        }
    }
}
