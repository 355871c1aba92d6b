//! Splatting: the f64 reference against a hand-computed splat, adjointness with sampling, a plain
//! transcription of Lightplane's naive splatter and central differences; every backend against
//! the reference; bad input.

mod common;

use trainkern::render::{GridList, HostRays, RayBuffers};
use trainkern::splat::reference::{self, HostSplat, HostSplatMlp};
use trainkern::splat::{SplatMlp, SplatOptions, Splatter};
use trainkern::{Device, Error};

type Gen = common::Gen<98>;

const TRIPLANE: &[[usize; 3]] = &[[1, 6, 7], [5, 1, 7], [5, 6, 1]];
const VOXEL: &[[usize; 3]] = &[[5, 6, 7]];
const BOTH: &[[usize; 3]] = &[[1, 6, 7], [5, 1, 7], [5, 6, 1], [3, 4, 5]];

#[derive(Clone, Copy)]
struct Config {
    shapes: &'static [[usize; 3]],
    channels: usize,
    /// `(input channels, layers, hidden)` of the MLP splatter, or none for the plain one.
    mlp: Option<(usize, usize, usize)>,
    rays: usize,
    encoding: bool,
}

/// A random problem: output shapes, the MLP's input grids and parameters, rays that cross the
/// cube (some leave it), f32-representable so device runs see the same numbers.
struct Problem {
    out: GridList,
    input: Option<(GridList, Vec<f64>, SplatMlp, Vec<f64>)>,
    opts: SplatOptions,
    rays: HostRays,
}

impl Problem {
    fn host(&self) -> HostSplat<'_> {
        HostSplat {
            out: &self.out,
            mlp: self
                .input
                .as_ref()
                .map(|(grids, values, mlp, params)| HostSplatMlp {
                    grids,
                    values,
                    mlp: *mlp,
                    params,
                }),
            opts: self.opts,
        }
    }
}

fn f32r(v: Vec<f64>) -> Vec<f64> {
    v.into_iter().map(|x| f64::from(x as f32)).collect()
}

fn problem(cfg: Config, opts: SplatOptions, seed: u64) -> Problem {
    let mut g = Gen::new(seed);
    let batch = 2;
    let shape = |c: usize| -> Vec<[usize; 5]> {
        cfg.shapes
            .iter()
            .map(|s| [batch, s[0], s[1], s[2], c])
            .collect()
    };
    let out = GridList::new(&shape(cfg.channels)).unwrap();
    let input = cfg.mlp.map(|(cin, layers, hidden)| {
        let list = GridList::new(&shape(cin)).unwrap();
        let values = f32r(g.vec(list.len(), -1.0, 1.0));
        let mlp = SplatMlp { layers, hidden };
        let params = f32r(g.vec(mlp.params_len(cin, cfg.channels).unwrap(), -0.8, 0.8));
        (list, values, mlp, params)
    });
    let e_len = cfg.mlp.map_or(cfg.channels, |m| m.0);
    let r = cfg.rays;
    let (mut origins, mut directions) = (Vec::new(), Vec::new());
    for _ in 0..r {
        let from = [g.uni(-1.5, 1.5), g.uni(-1.5, 1.5), -2.0];
        let to = [g.uni(-1.1, 1.1), g.uni(-1.1, 1.1), g.uni(-0.5, 0.9)];
        origins.extend(from);
        directions.extend((0..3).map(|k| to[k] - from[k]));
    }
    let near = g.vec(r, 0.3, 0.6);
    let far = near.iter().map(|n| n + g.uni(0.5, 1.0)).collect();
    let rays = HostRays {
        origins: f32r(origins),
        directions: f32r(directions),
        batch: (0..r).map(|i| (i % batch) as u32).collect(),
        near: f32r(near),
        far: f32r(far),
        encoding: cfg.encoding.then(|| f32r(g.vec(r * e_len, -0.5, 0.5))),
    };
    Problem {
        out,
        input,
        opts,
        rays,
    }
}

fn plain(shapes: &'static [[usize; 3]], channels: usize, rays: usize) -> Config {
    Config {
        shapes,
        channels,
        mlp: None,
        rays,
        encoding: true,
    }
}

fn opts(samples: usize, samples_inf: usize) -> SplatOptions {
    SplatOptions {
        samples,
        samples_inf,
        disparity_at_inf: 0.1,
        ..Default::default()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// The variants of the reference checks: planes, voxels, both; background samples,
/// contraction, the mask; plain and MLP.
fn variants() -> Vec<(&'static str, Config, SplatOptions)> {
    let mlp = |shapes, cin, layers, hidden| Config {
        mlp: Some((cin, layers, hidden)),
        ..plain(shapes, 4, 6)
    };
    vec![
        ("plain triplane", plain(TRIPLANE, 3, 5), opts(8, 0)),
        ("plain voxel, background", plain(VOXEL, 5, 5), opts(8, 5)),
        (
            "plain both, contract, mask",
            plain(BOTH, 4, 7),
            SplatOptions {
                contract: true,
                mask_out_of_bounds: true,
                ..opts(9, 4)
            },
        ),
        ("mlp triplane, 2 layers", mlp(TRIPLANE, 3, 2, 5), opts(7, 0)),
        ("mlp voxel, 1 layer", mlp(VOXEL, 5, 1, 5), opts(7, 3)),
        (
            "mlp both, 3 layers, mask",
            mlp(BOTH, 2, 3, 6),
            SplatOptions {
                mask_out_of_bounds: true,
                ..opts(7, 2)
            },
        ),
        (
            "mlp triplane, no encoding, contract",
            Config {
                encoding: false,
                ..mlp(TRIPLANE, 3, 2, 4)
            },
            SplatOptions {
                contract: true,
                ..opts(6, 3)
            },
        ),
    ]
}

#[test]
fn one_point_splats_its_corner_weights_times_the_feature() {
    // near == far: both samples at one point, so every corner gets 2 w v and 2 w.
    let out = GridList::new(&[[1, 2, 3, 4, 2], [1, 1, 3, 4, 2]]).unwrap();
    let p = [0.1, -0.2, 0.3];
    let v = [1.5, -2.0];
    let rays = HostRays {
        origins: p.to_vec(),
        directions: vec![0.0, 0.0, 1.0],
        batch: vec![0],
        near: vec![0.0],
        far: vec![0.0],
        encoding: Some(v.to_vec()),
    };
    let s = HostSplat {
        out: &out,
        mlp: None,
        opts: opts(2, 0),
    };
    let (sums, weights) = reference::sums(&s, &rays).unwrap();
    // By hand: ix = (x + 1) / 2 * n - 0.5 per axis. Voxel (D 2, H 3, W 4): ix = 1.7 -> cells 1, 2
    // with 0.3, 0.7; iy = 0.7 -> 0, 1 with 0.3, 0.7; iz = 0.8 -> 0, 1 with 0.2, 0.8.
    let mut want_w = vec![0.0; weights.len()];
    for (z, wz) in [(0, 0.2), (1, 0.8)] {
        for (y, wy) in [(0, 0.3), (1, 0.7)] {
            for (x, wx) in [(1, 0.3), (2, 0.7)] {
                want_w[(z * 3 + y) * 4 + x] = 2.0 * wz * wy * wx;
            }
        }
    }
    // The plane (D 1) ignores z: the same x, y weights, cells after the voxel grid's 24.
    for (y, wy) in [(0, 0.3), (1, 0.7)] {
        for (x, wx) in [(1, 0.3), (2, 0.7)] {
            want_w[24 + y * 4 + x] = 2.0 * wy * wx;
        }
    }
    assert_close("weights", &weights, &want_w, 1e-14);
    let want: Vec<f64> = want_w.iter().flat_map(|w| v.map(|x| w * x)).collect();
    assert_close("sums", &sums, &want, 1e-14);
    // Normalized, every touched cell holds v exactly; untouched cells hold 0.
    let norm = reference::forward(&s, &rays).unwrap();
    for (cell, w) in norm.chunks(2).zip(&want_w) {
        let expect = if *w > 0.0 { v } else { [0.0, 0.0] };
        assert_close("normalized", cell, &expect, 1e-14);
    }
}

#[test]
fn the_splat_is_the_adjoint_of_sampling() {
    for (name, cfg, o) in variants().into_iter().filter(|(_, c, _)| c.mlp.is_none()) {
        let p = problem(cfg, o, 7);
        let s = p.host();
        let (sums, _) = reference::sums(&s, &p.rays).unwrap();
        let g = Gen::new(3).vec(p.out.len(), -1.0, 1.0);
        let lhs = dot(&sums, &g);
        let gathered = reference::gather(&s, &p.rays, &g).unwrap();
        let rhs = dot(p.rays.encoding.as_ref().unwrap(), &gathered);
        assert!(
            (lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0),
            "{name}: <splat(v), g> = {lhs}, <v, gather(g)> = {rhs}"
        );
        assert!(lhs.abs() > 1e-3, "{name}: a degenerate check ({lhs})");
    }
}

/// Lightplane's naive splatter written out: per ray, sample and grid, the bilinear (planes: the
/// two non-singular axes) or trilinear corners with explicit floors, bounds tests and weights;
/// the MLP with its layers spelled out. No code is shared with the library.
fn transcription(p: &Problem) -> Vec<f64> {
    let c = p.out.channels();
    let o = p.opts;
    let mut feat = vec![0.0; p.out.len()];
    let mut weight = vec![0.0; p.out.len() / c];
    // Corner (cell, weight) lists of one grid of shape [D, H, W] at point q.
    let corners = |dhw: [usize; 3], q: [f64; 3]| -> Vec<(usize, f64)> {
        let [d, h, w] = dhw;
        let n = [w, h, d];
        let mut per_axis: Vec<Vec<(i64, f64)>> = Vec::new();
        for a in 0..3 {
            if n[a] == 1 {
                per_axis.push(vec![(0, 1.0)]);
                continue;
            }
            let i = (q[a] + 1.0) / 2.0 * n[a] as f64 - 0.5;
            let i0 = i.floor();
            per_axis.push(vec![(i0 as i64, 1.0 - (i - i0)), (i0 as i64 + 1, i - i0)]);
        }
        let mut out = Vec::new();
        for &(x, wx) in &per_axis[0] {
            for &(y, wy) in &per_axis[1] {
                for &(z, wz) in &per_axis[2] {
                    if x >= 0 && y >= 0 && z >= 0 && x < w as i64 && y < h as i64 && z < d as i64 {
                        out.push(((z as usize * h + y as usize) * w + x as usize, wx * wy * wz));
                    }
                }
            }
        }
        out
    };
    let sample_list = |list: &GridList, vals: &[f64], b: usize, q: [f64; 3]| -> Vec<f64> {
        let ch = list.channels();
        let mut f = vec![0.0; ch];
        for (i, s) in list.shapes().iter().enumerate() {
            let cells = s[1] * s[2] * s[3];
            for (cell, w) in corners([s[1], s[2], s[3]], q) {
                let at = list.offset(i) + (b * cells + cell) * ch;
                for k in 0..ch {
                    f[k] += w * vals[at + k];
                }
            }
        }
        f
    };
    let total = o.samples + o.samples_inf;
    for r in 0..p.rays.len() {
        let (nr, fr) = (p.rays.near[r], p.rays.far[r]);
        let b = p.rays.batch[r] as usize;
        for j in 0..total {
            let t = if j < o.samples {
                nr + (fr - nr) * j as f64 / (o.samples - 1) as f64
            } else {
                let k = (j - o.samples) as f64;
                let d = f64::from(o.disparity_at_inf);
                fr / ((d - 1.0) * (k + 1.0) / o.samples_inf as f64 + 1.0)
            };
            let mut q: [f64; 3] = std::array::from_fn(|a| {
                p.rays.origins[3 * r + a] + t * p.rays.directions[3 * r + a]
            });
            if o.contract {
                let m = q.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                if m > 1.0 {
                    q = q.map(|x| {
                        if x.abs() == m {
                            (2.0 - 1.0 / x.abs()) * x.signum()
                        } else {
                            x / m
                        }
                    });
                }
                q = q.map(|x| x / 2.0);
            }
            if o.mask_out_of_bounds && q.iter().any(|x| x.abs() > 1.0) {
                continue;
            }
            let e_len = p.input.as_ref().map_or(c, |(l, ..)| l.channels());
            let enc: Vec<f64> = match &p.rays.encoding {
                Some(e) => e[r * e_len..(r + 1) * e_len].to_vec(),
                None => vec![0.0; e_len],
            };
            let v = match &p.input {
                None => enc,
                Some((list, vals, mlp, params)) => {
                    let mut x: Vec<f64> = sample_list(list, vals, b, q)
                        .iter()
                        .zip(&enc)
                        .map(|(a, e)| a + e)
                        .collect();
                    // Weights of every layer first, then the biases.
                    let mut dims = vec![list.channels()];
                    for l in 0..mlp.layers {
                        dims.push(if l + 1 == mlp.layers { c } else { mlp.hidden });
                    }
                    let mut w_at = 0;
                    let mut b_at: usize = (0..mlp.layers).map(|l| dims[l] * dims[l + 1]).sum();
                    for l in 0..mlp.layers {
                        let mut y = vec![0.0; dims[l + 1]];
                        for (o_, yo) in y.iter_mut().enumerate() {
                            *yo = params[b_at + o_];
                            for (i, xi) in x.iter().enumerate() {
                                *yo += xi * params[w_at + i * dims[l + 1] + o_];
                            }
                            if l + 1 < mlp.layers && *yo < 0.0 {
                                *yo = 0.0;
                            }
                        }
                        w_at += dims[l] * dims[l + 1];
                        b_at += dims[l + 1];
                        x = y;
                    }
                    x
                }
            };
            for (i, s) in p.out.shapes().iter().enumerate() {
                let cells = s[1] * s[2] * s[3];
                for (cell, w) in corners([s[1], s[2], s[3]], q) {
                    let at = p.out.offset(i) / c + b * cells + cell;
                    weight[at] += w;
                    for k in 0..c {
                        feat[at * c + k] += w * v[k];
                    }
                }
            }
        }
    }
    for (cell, w) in feat.chunks_mut(c).zip(&weight) {
        cell.iter_mut().for_each(|x| *x /= w.max(1e-5));
    }
    feat
}

#[test]
fn forward_matches_a_plain_transcription() {
    for (name, cfg, o) in variants() {
        let p = problem(cfg, o, 11);
        let got = reference::forward(&p.host(), &p.rays).unwrap();
        let want = transcription(&p);
        assert_close(name, &got, &want, 1e-12);
        let norm = want.iter().map(|x| x * x).sum::<f64>();
        assert!(norm > 1e-3, "{name}: a degenerate check");
    }
}

#[test]
fn backward_matches_central_differences() {
    let mut worst = 0.0f64;
    for (name, cfg, o) in variants() {
        let mut p = problem(cfg, o, 13);
        let g_out = Gen::new(5).vec(p.out.len(), -1.0, 1.0);
        let grads = reference::backward(&p.host(), &p.rays, &g_out).unwrap();
        let loss = |p: &Problem| dot(&reference::forward(&p.host(), &p.rays).unwrap(), &g_out);
        let h = 1e-6;
        let mut check =
            |what: &str, analytic: f64, p: &mut Problem, set: &dyn Fn(&mut Problem, f64)| {
                set(p, h);
                let up = loss(p);
                set(p, -2.0 * h);
                let down = loss(p);
                set(p, h);
                let fd = (up - down) / (2.0 * h);
                let err = (analytic - fd).abs();
                worst = worst.max(err);
                assert!(
                    err <= 1e-6 * (1.0 + fd.abs()),
                    "{name}: {what}: analytic {analytic}, central difference {fd}"
                );
            };
        // Every encoding entry of the first rays, and a spread of grid values and parameters.
        let e_len = p
            .rays
            .encoding
            .as_ref()
            .map_or(0, |e| e.len() / p.rays.len());
        for i in 0..(3 * e_len).min(e_len * p.rays.len()) {
            check(
                &format!("encoding[{i}]"),
                grads.encoding[i],
                &mut p,
                &|p, d| p.rays.encoding.as_mut().unwrap()[i] += d,
            );
        }
        if let Some(gp) = &grads.params {
            for i in (0..gp.len()).step_by(3) {
                check(&format!("params[{i}]"), gp[i], &mut p, &|p, d| {
                    p.input.as_mut().unwrap().3[i] += d
                });
            }
            let gi = grads.input_grids.as_ref().unwrap();
            assert!(gi.iter().any(|x| *x != 0.0), "{name}: no input gradient");
            for i in (0..gi.len()).step_by(7) {
                check(&format!("input_grids[{i}]"), gi[i], &mut p, &|p, d| {
                    p.input.as_mut().unwrap().1[i] += d
                });
            }
        }
    }
    eprintln!("splat backward: worst |analytic - central difference| {worst:.1e}");
}

fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(g, w)| (f64::from(*g) - w).powi(2))
        .sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    if got.iter().any(|x| x.is_nan()) {
        return f64::INFINITY;
    }
    (num / den.max(1e-300)).sqrt()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// `r` on the device.
fn upload_rays(dev: &Device, r: &HostRays) -> RayBuffers {
    let encoding = r.encoding.as_ref().map(|e| f32s(e));
    let (o, d, n, f) = (
        f32s(&r.origins),
        f32s(&r.directions),
        f32s(&r.near),
        f32s(&r.far),
    );
    RayBuffers::upload(dev, &o, &d, &r.batch, &n, &f, encoding.as_deref()).unwrap()
}

#[test]
fn every_backend_matches_the_reference() {
    let big: &[[usize; 3]] = &[[1, 16, 16], [16, 1, 16], [16, 16, 1]];
    let cases = [
        (
            "small triplane, 50 rays, 3 channels",
            plain(TRIPLANE, 3, 50),
            opts(16, 11),
        ),
        (
            "triplane, 1 ray, 16 channels",
            plain(TRIPLANE, 16, 1),
            opts(16, 11),
        ),
        (
            "voxel, 128 rays, 32 channels",
            plain(VOXEL, 32, 128),
            opts(16, 11),
        ),
        (
            "both, 128 rays, 5 channels",
            plain(BOTH, 5, 128),
            opts(16, 11),
        ),
        (
            "16^2 triplane, 1000 rays, 16 channels, contract, mask",
            plain(big, 16, 1000),
            SplatOptions {
                contract: true,
                mask_out_of_bounds: true,
                ..opts(16, 11)
            },
        ),
        (
            "mlp, both, 200 rays, 7 -> 16 channels",
            Config {
                mlp: Some((7, 2, 16)),
                ..plain(BOTH, 16, 200)
            },
            opts(16, 11),
        ),
        (
            "mlp, triplane, 1 ray, 3 layers, 5 -> 3 channels",
            Config {
                mlp: Some((5, 3, 9)),
                ..plain(TRIPLANE, 3, 1)
            },
            opts(16, 11),
        ),
        (
            // More parameters than shared memory holds: PTX blocks add their gradients to
            // their global slices.
            "mlp, triplane, 3 rays, width 100 (past shared memory)",
            Config {
                mlp: Some((16, 3, 100)),
                ..plain(TRIPLANE, 16, 3)
            },
            opts(4, 2),
        ),
        (
            // Lightplane's splatter MLP: one sample's backward passes llvmpipe's loop limit,
            // so lavapipe runs it split over dispatches.
            "mlp, triplane, 2 rays, 7 -> 128 -> 128 -> 32 (split on lavapipe)",
            Config {
                mlp: Some((7, 3, 128)),
                ..plain(TRIPLANE, 32, 2)
            },
            opts(4, 2),
        ),
        (
            // Five layers of 128: past llvmpipe's loop limit in the forward item too.
            "mlp, voxel, 2 rays, 5 layers of 128 (split on lavapipe)",
            Config {
                mlp: Some((7, 5, 128)),
                ..plain(VOXEL, 16, 2)
            },
            opts(4, 2),
        ),
        (
            "mlp, voxel, 128 rays, 1 layer, no encoding, contract, mask",
            Config {
                mlp: Some((4, 1, 8)),
                encoding: false,
                ..plain(VOXEL, 6, 128)
            },
            SplatOptions {
                contract: true,
                mask_out_of_bounds: true,
                ..opts(16, 11)
            },
        ),
    ];
    for (dev_name, dev) in common::devices() {
        let mut ran = Vec::new();
        for (i, (name, cfg, o)) in cases.iter().enumerate() {
            let p = problem(*cfg, *o, 200 + i as u64);
            if name.contains("past shared memory") {
                let plen = p.input.as_ref().map_or(0, |i| i.3.len());
                assert!(plen * 4 > 48 << 10, "{plen}");
            }
            let host = p.host();
            let want = reference::forward(&host, &p.rays).unwrap();
            let g_out = f32r(Gen::new(9).vec(p.out.len(), -1.0, 1.0));
            let want_g = reference::backward(&host, &p.rays, &g_out).unwrap();
            let rays = upload_rays(dev, &p.rays);
            let grad_out = dev.upload(&f32s(&g_out)).unwrap();
            let mut out = dev.zeros::<f32>(p.out.len()).unwrap();
            let result = match &p.input {
                None => {
                    let s = Splatter::new(dev, &p.out, p.opts).unwrap();
                    let mut g_enc = dev.zeros::<f32>(want_g.encoding.len()).unwrap();
                    s.forward(&rays.rays(), &mut out)
                        .and_then(|_| s.backward(&rays.rays(), &grad_out, &mut g_enc))
                        .map(|_| vec![("encoding", g_enc, want_g.encoding.clone())])
                }
                Some((list, values, mlp, params)) => {
                    let s = Splatter::with_mlp(dev, &p.out, list, *mlp, p.opts).unwrap();
                    let input = dev.upload(&f32s(values)).unwrap();
                    let params = dev.upload(&f32s(params)).unwrap();
                    let mut g = s.grads_zeros(p.rays.len()).unwrap();
                    s.forward_mlp(&input, &params, &rays.rays(), &mut out)
                        .and_then(|_| {
                            s.backward_mlp(&input, &params, &rays.rays(), &grad_out, &mut g)
                        })
                        .map(|_| {
                            vec![
                                ("encoding", g.encoding, want_g.encoding.clone()),
                                ("params", g.params, want_g.params.clone().unwrap()),
                                (
                                    "input_grids",
                                    g.input_grids,
                                    want_g.input_grids.clone().unwrap(),
                                ),
                            ]
                        })
                }
            };
            let grads = match result {
                Ok(g) => g,
                // Output grids past one binding are refused on wgpu, by name.
                Err(Error::LimitExceeded { what, .. })
                    if dev_name.starts_with("wgpu") && what.contains("one binding") =>
                {
                    let biggest = p.input.as_ref().map_or(0, |i| i.0.len()).max(p.out.len());
                    assert!(biggest * 4 > 4096, "{dev_name}: {name}: refused {what}");
                    continue;
                }
                Err(e) => panic!("{dev_name}: {name}: {e}"),
            };
            let e = rel_l2(&out.download().unwrap(), &want);
            assert!(e <= 1e-5, "{dev_name}: {name}: forward rel L2 {e:.2e}");
            for (what, got, want) in grads {
                let e = rel_l2(&got.download().unwrap(), &want);
                assert!(
                    e <= 1e-4,
                    "{dev_name}: {name}: {what} gradient rel L2 {e:.2e}"
                );
            }
            ran.push(*name);
        }
        eprintln!("splat on {dev_name}: {} cases pass", ran.len());
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let dev = Device::cpu();
    let out = GridList::new(&[[2, 1, 4, 4, 3], [2, 4, 1, 4, 3]]).unwrap();
    let input = GridList::new(&[[2, 1, 4, 4, 5]]).unwrap();
    let named = |e: Error, what: &str| {
        let msg = e.to_string();
        assert!(msg.contains("splat"), "{msg}");
        assert!(msg.contains(what), "expected {what:?} in: {msg}");
    };
    for (o, what) in [
        (opts(1, 0), "samples"),
        (
            SplatOptions {
                disparity_at_inf: 0.0,
                ..opts(4, 2)
            },
            "disparity_at_inf",
        ),
    ] {
        named(Splatter::new(&dev, &out, o).err().unwrap(), what);
    }
    let mlp = SplatMlp {
        layers: 2,
        hidden: 8,
    };
    let other_batch = GridList::new(&[[1, 1, 4, 4, 5]]).unwrap();
    named(
        Splatter::with_mlp(&dev, &out, &other_batch, mlp, opts(4, 0))
            .err()
            .unwrap(),
        "input_grids",
    );
    for (m, what) in [
        (
            SplatMlp {
                layers: 0,
                hidden: 8,
            },
            "mlp.layers",
        ),
        (
            SplatMlp {
                layers: 2,
                hidden: 129,
            },
            "mlp.hidden",
        ),
    ] {
        named(
            Splatter::with_mlp(&dev, &out, &input, m, opts(4, 0))
                .err()
                .unwrap(),
            what,
        );
    }

    let s = Splatter::new(&dev, &out, opts(4, 0)).unwrap();
    let host = HostRays {
        origins: vec![0.0, 0.0, -2.0, 0.1, 0.0, -2.0],
        directions: vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0],
        batch: vec![0, 1],
        near: vec![1.0, 1.0],
        far: vec![3.0, 3.0],
        encoding: Some(vec![0.5; 6]),
    };
    let good = upload_rays(&dev, &host);
    let mut buf = dev.zeros::<f32>(out.len()).unwrap();
    s.forward(&good.rays(), &mut buf).unwrap();
    let before = buf.download().unwrap();
    assert!(before.iter().any(|x| *x != 0.0));
    let with = |f: &dyn Fn(&mut HostRays)| {
        let mut h = HostRays {
            origins: host.origins.clone(),
            directions: host.directions.clone(),
            batch: host.batch.clone(),
            near: host.near.clone(),
            far: host.far.clone(),
            encoding: host.encoding.clone(),
        };
        f(&mut h);
        upload_rays(&dev, &h)
    };
    for (bad, what) in [
        (with(&|h| h.batch[1] = 2), "rays.batch[1]"),
        (with(&|h| h.near[0] = 4.0), "near <= far"),
        (with(&|h| h.encoding = Some(vec![0.5; 8])), "rays.encoding"),
        (with(&|h| h.encoding = None), "rays.encoding is required"),
        (with(&|h| h.origins[2] = f64::NAN), "finite"),
    ] {
        let mut b = dev.upload(&before).unwrap();
        named(s.forward(&bad.rays(), &mut b).err().unwrap(), what);
        assert_eq!(b.download().unwrap(), before, "{what}: a failed call wrote");
    }
    // Output grids that disagree with the feature width (or the list) are refused.
    let mut short = dev.zeros::<f32>(out.len() - 1).unwrap();
    named(s.forward(&good.rays(), &mut short).err().unwrap(), "out");
    let mut g_enc = dev.zeros::<f32>(5).unwrap();
    named(
        s.backward(&good.rays(), &buf, &mut g_enc).err().unwrap(),
        "grad_encoding",
    );
    // The MLP entry points on a plain splatter, and the other way round.
    let params = dev.zeros::<f32>(3).unwrap();
    named(
        s.forward_mlp(
            &buf,
            &params,
            &good.rays(),
            &mut dev.zeros::<f32>(out.len()).unwrap(),
        )
        .err()
        .unwrap(),
        "planned without an MLP",
    );
    let sm = Splatter::with_mlp(&dev, &out, &input, mlp, opts(4, 0)).unwrap();
    named(
        sm.forward(&good.rays(), &mut buf).err().unwrap(),
        "planned with an MLP",
    );
    let values = dev.zeros::<f32>(input.len()).unwrap();
    let wrong = dev.zeros::<f32>(sm.params_len() + 1).unwrap();
    let enc5 = with(&|h| h.encoding = Some(vec![0.1; 10]));
    named(
        sm.forward_mlp(&values, &wrong, &enc5.rays(), &mut buf)
            .err()
            .unwrap(),
        "mlp_params",
    );
    let params = dev.zeros::<f32>(sm.params_len()).unwrap();
    named(
        sm.forward_mlp(&values, &params, &good.rays(), &mut buf)
            .err()
            .unwrap(),
        "rays.encoding",
    );
    sm.forward_mlp(&values, &params, &enc5.rays(), &mut buf)
        .unwrap();
}

#[test]
fn mlp_splatter_reads_half_precision_input_grids() {
    let cfg = Config {
        mlp: Some((5, 2, 8)),
        ..plain(TRIPLANE, 4, 60)
    };
    for (dev_name, dev) in common::devices() {
        let mut p = problem(cfg, opts(12, 3), 31);
        // The reference on the values the device reads: each rounded to bf16 (f16 likewise).
        for (half, round) in [
            (
                "bf16",
                (|x: f64| f64::from(half::bf16::from_f64(x))) as fn(f64) -> f64,
            ),
            ("f16", |x: f64| f64::from(half::f16::from_f64(x))),
        ] {
            let input = p.input.as_mut().unwrap();
            input.1 = input.1.iter().map(|&x| round(x)).collect();
            let (list, values, mlp, params) = p.input.as_ref().unwrap();
            let want = reference::forward(&p.host(), &p.rays).unwrap();
            let s = Splatter::with_mlp(dev, &p.out, list, *mlp, p.opts).unwrap();
            let rays = upload_rays(dev, &p.rays);
            let params = dev.upload(&f32s(params)).unwrap();
            let mut out = dev.zeros::<f32>(p.out.len()).unwrap();
            let res = if half == "bf16" {
                let v: Vec<half::bf16> = values.iter().map(|&x| half::bf16::from_f64(x)).collect();
                s.forward_mlp(&dev.upload(&v).unwrap(), &params, &rays.rays(), &mut out)
            } else {
                let v: Vec<half::f16> = values.iter().map(|&x| half::f16::from_f64(x)).collect();
                s.forward_mlp(&dev.upload(&v).unwrap(), &params, &rays.rays(), &mut out)
            };
            match res {
                Ok(()) => {}
                Err(Error::LimitExceeded { .. }) if dev_name.contains("4KiB") => continue,
                Err(e) => panic!("{dev_name}: {half}: {e}"),
            }
            let e = rel_l2(&out.download().unwrap(), &want);
            assert!(e <= 1e-5, "{dev_name}: {half} input grids: rel L2 {e:.2e}");
        }
    }
}

#[test]
fn plain_splat_sums_cancelling_terms_exactly_and_deterministically() {
    // 4000 rays of encodings in (-0.5, 0.5) through a 4 x 4 plane: thousands of cancelling
    // terms per cell. The fixed-point sums are exact and order-free: what is left is each
    // term's f32 rounding (9e-8 here on lavapipe and the emulator; with the weights still
    // summed in f32 it was 1.0e-6), and two identical runs agree to the bit.
    let plane: &[[usize; 3]] = &[[1, 4, 4]];
    let p = problem(plain(plane, 2, 4000), opts(24, 0), 41);
    let want = reference::forward(&p.host(), &p.rays).unwrap();
    for (dev_name, dev) in common::devices() {
        let s = Splatter::new(dev, &p.out, p.opts).unwrap();
        let rays = upload_rays(dev, &p.rays);
        let mut runs = Vec::new();
        for _ in 0..2 {
            let mut out = dev.zeros::<f32>(p.out.len()).unwrap();
            match s.forward(&rays.rays(), &mut out) {
                Ok(()) => runs.push(out.download().unwrap()),
                // The 32 KB of encodings pass a 4 KiB binding: refused by name.
                Err(Error::LimitExceeded { what, .. }) if dev_name.contains("4KiB") => {
                    assert!(what.contains("one binding"), "{what}");
                    break;
                }
                Err(e) => panic!("{dev_name}: {e}"),
            }
        }
        if runs.is_empty() {
            continue;
        }
        let e = rel_l2(&runs[0], &want);
        assert!(e <= 5e-7, "{dev_name}: rel L2 {e:.2e}");
        if dev_name != "cpu" {
            assert_eq!(runs[0], runs[1], "{dev_name}: two runs differ");
        }
        eprintln!("{dev_name}: cancelling splat rel L2 {e:.1e}");
    }
}
