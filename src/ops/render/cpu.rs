//! The CPU reference of rendering, forward and backward, in f64 (`design/triplane.md`): a plain
//! march per ray, parallel over rays. Grid values are read in their storage type and widened;
//! everything else is f64. The backward pass recomputes every sample in reverse from the saved
//! `Lambda_last` alone (recomputed in f64 by a forward march), and adds grid gradients with f64
//! atomic adds (so
//! their summation order, and the last bits of a sum, may vary from run to run).

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::decoder::{Layout, Mlp};
use super::grid::{GridList, Marching, contract, corners, in_bounds};
use super::{NOISE_TAG, RenderOptions};
use crate::buffer::Float;

/// Rays per parallel task: enough to amortize a task, few enough to balance two to many cores.
const CHUNK: usize = 64;

/// Parallel tasks of the backward pass at most: each sums the decoder's gradients in its own
/// f64 vector.
const PARTIALS: usize = 64;

/// Grid values readable as f64: the buffers' element types, and f64 for the reference checks.
pub(crate) trait GridRead: Sync {
    fn at(&self, i: usize) -> f64;
}

impl<T: Float> GridRead for [T] {
    #[inline(always)]
    fn at(&self, i: usize) -> f64 {
        f64::from(self[i].to_f32())
    }
}

/// A grid list with its values.
pub(crate) struct Grids<'a, G: GridRead + ?Sized> {
    pub list: &'a GridList,
    pub data: &'a G,
}

/// Everything a ray's march reads besides the ray.
pub(crate) struct Scene<'a, G: GridRead + ?Sized> {
    pub grids: Grids<'a, G>,
    pub color: Option<Grids<'a, G>>,
    pub lay: &'a Layout,
    pub params: &'a [f64],
    pub opts: &'a RenderOptions,
}

/// The rays in f64 (`batch` as given; the caller has checked it against the grids).
pub struct HostRays {
    pub origins: Vec<f64>,
    pub directions: Vec<f64>,
    pub batch: Vec<u32>,
    pub near: Vec<f64>,
    pub far: Vec<f64>,
    /// `rays x E` (E the color head's input width), or none for zeros.
    pub encoding: Option<Vec<f64>>,
}

impl HostRays {
    /// The point at depth `t` on ray `r`, contracted if asked, and whether it counts (`mask`:
    /// only points inside `[-1, 1]^3` do).
    pub(crate) fn point(&self, r: usize, t: f64, contract_: bool, mask: bool) -> ([f64; 3], bool) {
        let o = &self.origins[3 * r..3 * r + 3];
        let d = &self.directions[3 * r..3 * r + 3];
        let mut p = [o[0] + t * d[0], o[1] + t * d[1], o[2] + t * d[2]];
        if contract_ {
            p = contract(p);
        }
        (p, !mask || in_bounds(p))
    }

    pub fn len(&self) -> usize {
        self.near.len()
    }

    pub fn is_empty(&self) -> bool {
        self.near.is_empty()
    }
}

/// Per-ray results: `features` is `rays x K`.
#[derive(Clone, Debug, PartialEq)]
pub struct HostOutput {
    pub features: Vec<f64>,
    pub ray_length: Vec<f64>,
    pub neg_log_transmittance: Vec<f64>,
}

/// Gradients of a loss with respect to every input that has one.
#[derive(Clone, Debug, PartialEq)]
pub struct HostGrads {
    pub grids: Vec<f64>,
    pub color_grids: Option<Vec<f64>>,
    pub params: Vec<f64>,
    /// `rays x E`; present whatever the rays' encoding was (a missing one is zeros).
    pub encoding: Vec<f64>,
}

/// One sample's activations, kept for its backward step. `trunk[0]`, `opacity[0]` and
/// `color[0]` are the MLPs' inputs; `x[l + 1]` is layer `l`'s output after its activation.
struct Sample {
    f: Vec<f64>,
    fc: Vec<f64>,
    trunk: Vec<Vec<f64>>,
    opacity: Vec<Vec<f64>>,
    color: Vec<Vec<f64>>,
    /// `o_raw + noise`.
    o_in: f64,
    /// The sigmoid of the color logits, all of them (padded ones included).
    c: Vec<f64>,
    inside: bool,
}

impl Sample {
    fn new(lay: &Layout, c: usize, cc: usize) -> Sample {
        let acts = |m: &Mlp| m.dims.iter().map(|&n| vec![0.0; n]).collect::<Vec<_>>();
        Sample {
            f: vec![0.0; c],
            fc: vec![0.0; cc],
            trunk: acts(&lay.trunk),
            opacity: acts(&lay.opacity),
            color: acts(&lay.color),
            o_in: 0.0,
            c: vec![0.0; lay.color.output()],
            inside: true,
        }
    }
}

/// `softplus(x) = max(x, 0) + ln(1 + exp(-|x|))`, which neither overflows nor loses small values.
pub(crate) fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `out = sum_i sample(g_i, p)` for batch `b`.
pub(crate) fn sample_into<G: GridRead + ?Sized>(
    g: &Grids<G>,
    b: usize,
    p: [f64; 3],
    out: &mut [f64],
) {
    out.fill(0.0);
    for (i, s) in g.list.shapes().iter().enumerate() {
        for (cell, w) in corners([s[1], s[2], s[3]], p) {
            if w == 0.0 {
                continue;
            }
            let at = g.list.cell_offset(i, b, cell);
            for (k, o) in out.iter_mut().enumerate() {
                *o += w * g.data.at(at + k);
            }
        }
    }
}

/// The adjoint of [`sample_into`]: `grad[cell] += w * g` at every corner.
pub(crate) fn scatter(list: &GridList, b: usize, p: [f64; 3], g: &[f64], grad: &[AtomicU64]) {
    for (i, s) in list.shapes().iter().enumerate() {
        for (cell, w) in corners([s[1], s[2], s[3]], p) {
            if w == 0.0 {
                continue;
            }
            let at = list.cell_offset(i, b, cell);
            for (k, &gk) in g.iter().enumerate() {
                if gk != 0.0 {
                    atomic_add(&grad[at + k], w * gk);
                }
            }
        }
    }
}

pub(crate) fn atomic_add(a: &AtomicU64, x: f64) {
    let mut old = a.load(Ordering::Relaxed);
    loop {
        let new = (f64::from_bits(old) + x).to_bits();
        match a.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(v) => old = v,
        }
    }
}

/// `acts[l + 1] = act(acts[l] W_l + b_l)`, ReLU after every layer but (unless `relu_last`) the
/// last.
pub(crate) fn mlp_forward(params: &[f64], m: &Mlp, acts: &mut [Vec<f64>], relu_last: bool) {
    for l in 0..m.layers() {
        let (n_in, n_out) = (m.dims[l], m.dims[l + 1]);
        let (lo, hi) = acts.split_at_mut(l + 1);
        let (x, y) = (&lo[l], &mut hi[0]);
        y.copy_from_slice(&params[m.b[l]..m.b[l] + n_out]);
        for (i, &xi) in x.iter().enumerate() {
            let row = &params[m.w[l] + i * n_out..m.w[l] + (i + 1) * n_out];
            for (yo, &w) in y.iter_mut().zip(row) {
                *yo += xi * w;
            }
        }
        if l + 1 < m.layers() || relu_last {
            y.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        let _ = n_in;
    }
}

/// Back through [`mlp_forward`]: `g` is the gradient of the output (overwritten); returns the
/// gradient of the input in `g_in` and adds the parameter gradients to `gp`.
pub(crate) fn mlp_backward(
    params: &[f64],
    m: &Mlp,
    acts: &[Vec<f64>],
    relu_last: bool,
    g: &mut Vec<f64>,
    g_in: &mut Vec<f64>,
    gp: &mut [f64],
) {
    for l in (0..m.layers()).rev() {
        let (n_in, n_out) = (m.dims[l], m.dims[l + 1]);
        if l + 1 < m.layers() || relu_last {
            for (gv, &y) in g.iter_mut().zip(&acts[l + 1]) {
                if y <= 0.0 {
                    *gv = 0.0;
                }
            }
        }
        for (o, &go) in g.iter().enumerate() {
            gp[m.b[l] + o] += go;
        }
        let mut gx = vec![0.0; n_in];
        for (i, (gxi, &xi)) in gx.iter_mut().zip(&acts[l]).enumerate() {
            let row = m.w[l] + i * n_out;
            let mut s = 0.0;
            for (o, &go) in g.iter().enumerate() {
                gp[row + o] += xi * go;
                s += params[row + o] * go;
            }
            *gxi = s;
        }
        *g = gx;
    }
    std::mem::swap(g_in, g);
}

impl<G: GridRead + ?Sized> Scene<'_, G> {
    fn marching(&self) -> Marching {
        Marching {
            samples: self.opts.samples,
            samples_inf: self.opts.samples_inf,
            disparity_at_inf: f64::from(self.opts.disparity_at_inf),
        }
    }

    /// The point of sample `t` on ray `r`, contracted if asked, and whether it counts.
    fn point(&self, rays: &HostRays, r: usize, t: f64) -> ([f64; 3], bool) {
        rays.point(r, t, self.opts.contract, self.opts.mask_out_of_bounds)
    }

    fn noise(&self, r: usize, j: usize) -> f64 {
        match self.opts.noise {
            None => 0.0,
            Some(n) => {
                let i = (r * self.marching().total() + j) as u64;
                let w = crate::rng::block(n.seed, NOISE_TAG ^ n.stream, i / 4);
                f64::from(n.sigma) * f64::from(crate::rng::gaussians_f32(w)[(i % 4) as usize])
            }
        }
    }

    /// Evaluates the decoder at sample `j` of ray `r` into `s`; returns `(t, delta)`.
    fn eval(&self, rays: &HostRays, r: usize, j: usize, s: &mut Sample) -> (f64, f64) {
        let (t, delta) = self.marching().at(rays.near[r], rays.far[r], j);
        let (p, inside) = self.point(rays, r, t);
        let b = rays.batch[r] as usize;
        s.inside = inside;
        if inside {
            sample_into(&self.grids, b, p, &mut s.f);
        } else {
            s.f.fill(0.0);
        }
        let lay = self.lay;
        let enc = rays
            .encoding
            .as_ref()
            .map(|e| &e[r * lay.encoding_len()..(r + 1) * lay.encoding_len()]);
        match &self.color {
            None => {
                s.trunk[0].copy_from_slice(&s.f);
                mlp_forward(self.params, &lay.trunk, &mut s.trunk, true);
                let h = &s.trunk[lay.trunk.layers()];
                s.opacity[0].copy_from_slice(h);
                s.color[0].copy_from_slice(h);
            }
            Some(cg) => {
                if inside {
                    sample_into(cg, b, p, &mut s.fc);
                } else {
                    s.fc.fill(0.0);
                }
                for (x, &f) in s.opacity[0].iter_mut().zip(&s.f) {
                    *x = f.max(0.0);
                }
                for (x, &f) in s.color[0].iter_mut().zip(&s.fc) {
                    *x = f.max(0.0);
                }
            }
        }
        if let Some(e) = enc {
            for (x, &ek) in s.color[0].iter_mut().zip(e) {
                *x += ek;
            }
        }
        mlp_forward(self.params, &lay.opacity, &mut s.opacity, false);
        mlp_forward(self.params, &lay.color, &mut s.color, false);
        s.o_in = s.opacity[lay.opacity.layers()][0] + self.noise(r, j);
        for (c, &x) in s.c.iter_mut().zip(&s.color[lay.color.layers()]) {
            *c = sigmoid(x);
        }
        (t, delta)
    }

    /// Forward pass of ray `r`: `(features, ray_length, Lambda_last)`.
    fn forward_ray(
        &self,
        rays: &HostRays,
        r: usize,
        s: &mut Sample,
        feat: &mut [f64],
    ) -> (f64, f64) {
        let gain = f64::from(self.opts.gain);
        feat.fill(0.0);
        let (mut lambda, mut length, mut t_prev) = (0.0, 0.0, 1.0);
        for j in 0..self.marching().total() {
            let (t, delta) = self.eval(rays, r, j, s);
            lambda += gain * delta * softplus(s.o_in);
            let t_now = (-lambda).exp();
            let w = t_prev - t_now;
            for (f, &c) in feat.iter_mut().zip(&s.c) {
                *f += w * c;
            }
            length += w * t;
            t_prev = t_now;
        }
        (length, lambda)
    }

    pub(crate) fn forward(&self, rays: &HostRays) -> HostOutput {
        let k = self.lay.color_channels;
        let n = rays.len();
        let mut out = HostOutput {
            features: vec![0.0; n * k],
            ray_length: vec![0.0; n],
            neg_log_transmittance: vec![0.0; n],
        };
        let (c, cc) = self.widths();
        out.features
            .par_chunks_mut(CHUNK * k)
            .zip(out.ray_length.par_chunks_mut(CHUNK))
            .zip(out.neg_log_transmittance.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(chunk, ((feat, len), lam))| {
                let mut s = Sample::new(self.lay, c, cc);
                for (i, (l, lm)) in len.iter_mut().zip(lam.iter_mut()).enumerate() {
                    let r = chunk * CHUNK + i;
                    (*l, *lm) = self.forward_ray(rays, r, &mut s, &mut feat[i * k..(i + 1) * k]);
                }
            });
        out
    }

    fn widths(&self) -> (usize, usize) {
        (
            self.grids.list.channels(),
            self.color.as_ref().map_or(0, |g| g.list.channels()),
        )
    }

    /// Backward pass: `g_*` are the incoming gradients of the three outputs. Each ray's
    /// `Lambda_last` is recomputed in f64 by a forward march first (see the module docs of
    /// `render` for why a saved f32 value cannot serve).
    pub(crate) fn backward(
        &self,
        rays: &HostRays,
        g_feat: &[f64],
        g_len: &[f64],
        g_lam: &[f64],
    ) -> HostGrads {
        let n = rays.len();
        let (c, cc) = self.widths();
        let e_len = self.lay.encoding_len();
        let zeros = |len: usize| (0..len).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        let grid_grad = zeros(self.grids.list.len());
        let color_grad = self.color.as_ref().map(|g| zeros(g.list.len()));
        let mut g_enc = vec![0.0; n * e_len];
        // At most PARTIALS tasks, so the parameter gradients take PARTIALS vectors whatever the
        // number of rays; they are summed in task order.
        let per_task = n.div_ceil(PARTIALS).max(CHUNK);
        let partial: Vec<Vec<f64>> = g_enc
            .par_chunks_mut(per_task * e_len)
            .enumerate()
            .map(|(chunk, enc)| {
                let mut gp = vec![0.0; self.lay.len];
                let mut s = Sample::new(self.lay, c, cc);
                let mut feat = vec![0.0; self.lay.color_channels];
                for i in 0..enc.len() / e_len {
                    let r = chunk * per_task + i;
                    let (_, lambda) = self.forward_ray(rays, r, &mut s, &mut feat);
                    let gr = RayGrads {
                        feat: &g_feat
                            [r * self.lay.color_channels..(r + 1) * self.lay.color_channels],
                        len: g_len[r],
                        lam: g_lam[r],
                    };
                    let sinks = Sinks {
                        grid: &grid_grad,
                        color: color_grad.as_deref(),
                        params: &mut gp,
                        enc: &mut enc[i * e_len..(i + 1) * e_len],
                    };
                    self.backward_ray(rays, r, lambda, &gr, &mut s, sinks);
                }
                gp
            })
            .collect();
        let mut params = vec![0.0; self.lay.len];
        for gp in &partial {
            for (a, b) in params.iter_mut().zip(gp) {
                *a += b;
            }
        }
        let unwrap = |v: Vec<AtomicU64>| {
            v.into_iter()
                .map(|a| f64::from_bits(a.into_inner()))
                .collect()
        };
        HostGrads {
            grids: unwrap(grid_grad),
            color_grids: color_grad.map(unwrap),
            params,
            encoding: g_enc,
        }
    }

    fn backward_ray(
        &self,
        rays: &HostRays,
        r: usize,
        lambda_last: f64,
        g: &RayGrads,
        s: &mut Sample,
        out: Sinks,
    ) {
        let lay = self.lay;
        let gain = f64::from(self.opts.gain);
        let k = lay.color_channels;
        let mut lambda = lambda_last;
        let (mut s_next, mut p_next) = (0.0, 0.0);
        let mut g_logits = vec![0.0; lay.color.output()];
        let mut g_head = vec![0.0; lay.color.input()];
        let mut g_opa = vec![0.0; lay.opacity.input()];
        let mut g_tmp = Vec::new();
        let mut g_in = Vec::new();
        for j in (0..self.marching().total()).rev() {
            let (t, delta) = self.eval(rays, r, j, s);
            let tau = gain * delta * softplus(s.o_in);
            let t_now = (-lambda).exp();
            lambda -= tau;
            let w = (-lambda).exp() - t_now;
            let p_now: f64 = s.c[..k]
                .iter()
                .zip(g.feat)
                .map(|(c, gf)| c * gf)
                .sum::<f64>()
                + t * g.len;
            let s_now = s_next + t_now * (p_now - p_next);
            let g_oraw = gain * delta * (s_now + g.lam) * sigmoid(s.o_in);
            (s_next, p_next) = (s_now, p_now);

            g_logits.fill(0.0);
            for ((gl, &gf), &c) in g_logits.iter_mut().zip(g.feat).zip(&s.c) {
                *gl = w * gf * c * (1.0 - c);
            }
            g_tmp.clone_from(&g_logits);
            mlp_backward(
                self.params,
                &lay.color,
                &s.color,
                false,
                &mut g_tmp,
                &mut g_head,
                out.params,
            );
            for (e, &gh) in out.enc.iter_mut().zip(&g_head) {
                *e += gh;
            }
            g_tmp.clear();
            g_tmp.push(g_oraw);
            mlp_backward(
                self.params,
                &lay.opacity,
                &s.opacity,
                false,
                &mut g_tmp,
                &mut g_opa,
                out.params,
            );

            let (p, inside) = self.point(rays, r, t);
            let b = rays.batch[r] as usize;
            match &self.color {
                None => {
                    // The trunk's parameters learn even where the mask zeroes the feature.
                    for (a, &gh) in g_opa.iter_mut().zip(&g_head) {
                        *a += gh;
                    }
                    g_tmp.clone_from(&g_opa);
                    mlp_backward(
                        self.params,
                        &lay.trunk,
                        &s.trunk,
                        true,
                        &mut g_tmp,
                        &mut g_in,
                        out.params,
                    );
                    if inside {
                        scatter(self.grids.list, b, p, &g_in, out.grid);
                    }
                }
                Some(cg) if inside => {
                    relu_mask(&mut g_opa, &s.f);
                    scatter(self.grids.list, b, p, &g_opa, out.grid);
                    relu_mask(&mut g_head, &s.fc);
                    if let Some(color_grad) = out.color {
                        scatter(cg.list, b, p, &g_head, color_grad);
                    }
                }
                Some(_) => {}
            }
        }
    }
}

/// Zeroes the gradient where the ReLU's input was not positive.
fn relu_mask(g: &mut [f64], x: &[f64]) {
    for (a, &v) in g.iter_mut().zip(x) {
        if v <= 0.0 {
            *a = 0.0;
        }
    }
}

/// The incoming gradients of one ray.
struct RayGrads<'a> {
    feat: &'a [f64],
    len: f64,
    lam: f64,
}

/// Where one ray's gradients go.
struct Sinks<'a> {
    grid: &'a [AtomicU64],
    color: Option<&'a [AtomicU64]>,
    params: &'a mut [f64],
    enc: &'a mut [f64],
}
