//! Rendering: the f64 reference against hand-computed cases, a plain transcription of
//! `triplane.md` and central differences; every backend against the reference; bad input.

mod common;

use trainkern::render::reference::{self, HostScene};
use trainkern::render::{
    Decoder, GridList, HostOutput, HostRays, OpacityNoise, RayBuffers, Rays, RenderOptions,
    RenderOutput, Renderer,
};
use trainkern::{Device, Error, rng};

type Gen = common::Gen<99>;

/// A small random problem: grids, optional color grids, decoder parameters and rays that cross
/// the cube (some leave it).
struct Problem {
    grids: GridList,
    values: Vec<f64>,
    color: Option<(GridList, Vec<f64>)>,
    decoder: Decoder,
    params: Vec<f64>,
    opts: RenderOptions,
    rays: HostRays,
}

impl Problem {
    fn scene(&self) -> HostScene<'_> {
        HostScene {
            grids: &self.grids,
            grid_values: &self.values,
            color: self.color.as_ref().map(|(l, v)| (l, v.as_slice())),
            decoder: self.decoder,
            params: &self.params,
            opts: self.opts,
        }
    }
}

#[derive(Clone, Copy)]
struct Config {
    shapes: &'static [[usize; 3]],
    channels: usize,
    color_grid: bool,
    layers: [usize; 3],
    hidden: usize,
    colors: usize,
    rays: usize,
    encoding: bool,
}

fn problem(cfg: Config, opts: RenderOptions, seed: u64) -> Problem {
    let mut g = Gen::new(seed);
    let batch = 2;
    let shapes: Vec<[usize; 5]> = cfg
        .shapes
        .iter()
        .map(|s| [batch, s[0], s[1], s[2], cfg.channels])
        .collect();
    let grids = GridList::new(&shapes).unwrap();
    let values = g.vec(grids.len(), -1.0, 1.0);
    let color = cfg.color_grid.then(|| {
        let cs: Vec<[usize; 5]> = cfg
            .shapes
            .iter()
            .map(|s| [batch, s[0], s[1], s[2], 3])
            .collect();
        let l = GridList::new(&cs).unwrap();
        let v = g.vec(l.len(), -1.0, 1.0);
        (l, v)
    });
    let decoder = Decoder {
        trunk_layers: if cfg.color_grid { 0 } else { cfg.layers[0] },
        opacity_layers: cfg.layers[1],
        color_layers: cfg.layers[2],
        hidden: cfg.hidden,
        color_channels: cfg.colors,
    };
    let cc = color.as_ref().map(|(l, _)| l.channels());
    let params = g.vec(decoder.params_len(cfg.channels, cc), -0.8, 0.8);
    let e_len = cc.unwrap_or(cfg.hidden);
    let r = cfg.rays;
    let mut origins = Vec::new();
    let mut directions = Vec::new();
    for _ in 0..r {
        // From a point outside the cube towards a point inside it (or just past it).
        let from = [g.uni(-1.5, 1.5), g.uni(-1.5, 1.5), -2.0];
        let to = [g.uni(-1.1, 1.1), g.uni(-1.1, 1.1), g.uni(-0.5, 0.9)];
        origins.extend(from);
        directions.extend((0..3).map(|k| to[k] - from[k]));
    }
    let near = g.vec(r, 0.3, 0.6);
    let far = near.iter().map(|n| n + g.uni(0.5, 1.0)).collect();
    let rays = HostRays {
        origins,
        directions,
        batch: (0..r).map(|i| (i % batch) as u32).collect(),
        near,
        far,
        encoding: cfg.encoding.then(|| g.vec(r * e_len, -0.5, 0.5)),
    };
    Problem {
        grids,
        values,
        color,
        decoder,
        params,
        opts,
        rays,
    }
}

const TRIPLANE: &[[usize; 3]] = &[[1, 4, 5], [3, 1, 5], [3, 4, 1]];
const VOXEL: &[[usize; 3]] = &[[3, 4, 5]];
const BOTH: &[[usize; 3]] = &[[1, 4, 5], [3, 1, 5], [3, 4, 1], [2, 3, 4]];

fn small(shapes: &'static [[usize; 3]]) -> Config {
    Config {
        shapes,
        channels: 3,
        color_grid: false,
        layers: [2, 2, 2],
        hidden: 5,
        colors: 3,
        rays: 3,
        encoding: true,
    }
}

fn opts(samples: usize, samples_inf: usize) -> RenderOptions {
    RenderOptions {
        samples,
        samples_inf,
        gain: 1.3,
        ..RenderOptions::default()
    }
}

// ---------------------------------------------------------------- grid sampling

#[test]
fn sampling_follows_grid_sample_without_aligned_corners() {
    // A voxel grid whose value is linear in the cell index reproduces that linear function at
    // every interior point (trilinear interpolation is exact on linear data), at the index
    // ix = ((x + 1) / 2) W - 0.5.
    let (d, h, w) = (3usize, 4usize, 5usize);
    let list = GridList::new(&[[1, d, h, w, 2]]).unwrap();
    let mut v = vec![0.0; list.len()];
    let lin = |z: f64, y: f64, x: f64| [0.5 + 2.0 * x - 0.75 * y + 1.5 * z, -x + 3.0 * z];
    for z in 0..d {
        for y in 0..h {
            for x in 0..w {
                let at = ((z * h + y) * w + x) * 2;
                v[at..at + 2].copy_from_slice(&lin(z as f64, y as f64, x as f64));
            }
        }
    }
    let mut g = Gen::new(1);
    for _ in 0..50 {
        // Interior: every index in [0, n - 1].
        let p = [g.uni(-0.8, 0.8), g.uni(-0.75, 0.75), g.uni(-0.66, 0.66)];
        let ix = |x: f64, n: usize| (x + 1.0) / 2.0 * n as f64 - 0.5;
        let want = lin(ix(p[2], d), ix(p[1], h), ix(p[0], w));
        let got = reference::sample(&list, &v, 0, p).unwrap();
        for k in 0..2 {
            assert!(
                (got[k] - want[k]).abs() < 1e-12,
                "{p:?}: {got:?} vs {want:?}"
            );
        }
    }
    // A cell's centre reads that cell; the cube's face reads half the edge cell (zero padding);
    // outside reads zero.
    let centre = [
        -1.0 + 1.0 / w as f64,
        -1.0 + 1.0 / h as f64,
        -1.0 + 1.0 / d as f64,
    ];
    let at_centre = reference::sample(&list, &v, 0, centre).unwrap();
    assert!(
        (at_centre[0] - lin(0.0, 0.0, 0.0)[0]).abs() < 1e-15,
        "{at_centre:?}"
    );
    let face = [-1.0, centre[1], centre[2]];
    let half = reference::sample(&list, &v, 0, face).unwrap();
    assert!((half[0] - 0.5 * lin(0.0, 0.0, 0.0)[0]).abs() < 1e-15);
    assert_eq!(
        reference::sample(&list, &v, 0, [1.2, 0.0, 0.0]).unwrap(),
        vec![0.0, 0.0]
    );
}

#[test]
fn planes_ignore_their_singleton_axis_and_lists_sum() {
    let (h, w) = (4usize, 6usize);
    // [1, 1, H, W, 1]: the xy plane; z must not matter.
    let list = GridList::new(&[[1, 1, h, w, 1], [1, 3, 1, w, 1]]).unwrap();
    let mut g = Gen::new(2);
    let v = g.vec(list.len(), -1.0, 1.0);
    let only_xy = GridList::new(&[[1, 1, h, w, 1]]).unwrap();
    let only_xz = GridList::new(&[[1, 3, 1, w, 1]]).unwrap();
    let (v_xy, v_xz) = v.split_at(h * w);
    for _ in 0..20 {
        let p = [g.uni(-1.0, 1.0), g.uni(-1.0, 1.0), g.uni(-1.0, 1.0)];
        let a = reference::sample(&only_xy, v_xy, 0, p).unwrap()[0];
        let a_other_z = reference::sample(&only_xy, v_xy, 0, [p[0], p[1], -p[2]]).unwrap()[0];
        assert_eq!(a, a_other_z);
        let b = reference::sample(&only_xz, v_xz, 0, p).unwrap()[0];
        let both = reference::sample(&list, &v, 0, p).unwrap()[0];
        assert!((both - (a + b)).abs() < 1e-14);
    }
}

// ---------------------------------------------------------------- forward

#[test]
fn forward_matches_a_hand_computed_ray() {
    // A constant grid read where all corners are inside gives f = v at every sample; with one
    // channel and width-1 MLPs every sample has the same opacity o and color c, so (gain 1)
    // Lambda = n delta o, features = (1 - e^-Lambda) c, and the ray length is the geometric sum
    // sum_j q^j (1 - q) (near + j delta) with q = e^(-delta o).
    let v = 0.7;
    let list = GridList::new(&[[1, 4, 4, 4, 1]]).unwrap();
    let values = vec![v; list.len()];
    let decoder = Decoder {
        trunk_layers: 1,
        opacity_layers: 1,
        color_layers: 1,
        hidden: 1,
        color_channels: 1,
    };
    // trunk w, trunk b, opacity w, opacity b, color w, color b.
    let (tw, tb, ow, ob, cw, cb) = (1.5, -0.2, 0.8, 0.1, -1.2, 0.3);
    let params = vec![tw, tb, ow, ob, cw, cb];
    let (n, near, far) = (9usize, 0.2, 1.0);
    let rays = HostRays {
        origins: vec![0.1, -0.2, -0.5],
        directions: vec![0.0, 0.0, 1.0],
        batch: vec![0],
        near: vec![near],
        far: vec![far],
        encoding: Some(vec![0.25]),
    };
    let opts = RenderOptions {
        samples: n,
        gain: 1.0,
        ..RenderOptions::default()
    };
    let scene = HostScene {
        grids: &list,
        grid_values: &values,
        color: None,
        decoder,
        params: &params,
        opts,
    };
    let out = reference::forward(&scene, &rays).unwrap();
    let h: f64 = (tw * v + tb).max(0.0);
    let o = (ow * h + ob).exp().ln_1p();
    let c = 1.0 / (1.0 + (-(cw * (h + 0.25) + cb)).exp());
    let delta = (far - near) / (n - 1) as f64;
    let lambda = n as f64 * delta * o;
    let q = (-delta * o).exp();
    let nf = n as f64;
    let sum_q = (1.0 - q.powi(n as i32)) / (1.0 - q);
    let sum_jq =
        q * (1.0 - nf * q.powi(n as i32 - 1) + (nf - 1.0) * q.powi(n as i32)) / (1.0 - q).powi(2);
    let length = (1.0 - q) * (near * sum_q + delta * sum_jq);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-13 * (1.0 + b.abs());
    assert!(
        close(out.neg_log_transmittance[0], lambda),
        "{out:?} vs {lambda}"
    );
    assert!(close(out.features[0], (1.0 - (-lambda).exp()) * c));
    assert!(
        close(out.ray_length[0], length),
        "{} vs {length}",
        out.ray_length[0]
    );
}

/// The forward pass written out the long way, Lightplane's naive renderer in loops: all samples'
/// depths, then every feature, then the decoder with explicit matrices, then a cumulative sum.
fn transcription(p: &Problem) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let o = &p.opts;
    let dec = p.decoder;
    let cc = p.color.as_ref().map(|(l, _)| l.channels());
    let c_in = p.grids.channels();
    // Unflatten the parameters into (W, b) per layer, independently of the crate's layout code.
    let mut at = 0;
    let mut take = |dims: &[usize]| -> Vec<(Vec<f64>, Vec<f64>)> {
        let ws: Vec<Vec<f64>> = dims
            .windows(2)
            .map(|d| {
                let w = p.params[at..at + d[0] * d[1]].to_vec();
                at += d[0] * d[1];
                w
            })
            .collect();
        let bs: Vec<Vec<f64>> = dims[1..]
            .iter()
            .map(|&n| {
                let b = p.params[at..at + n].to_vec();
                at += n;
                b
            })
            .collect();
        ws.into_iter().zip(bs).collect()
    };
    let dims = |l: usize, i: usize, out: usize| {
        let mut d = vec![i];
        d.extend((1..l).map(|_| dec.hidden));
        if l > 0 {
            d.push(out);
        }
        d
    };
    let trunk = take(&dims(dec.trunk_layers, c_in, dec.hidden));
    let head_in = if cc.is_some() { c_in } else { dec.hidden };
    let opacity = take(&dims(dec.opacity_layers, head_in, 1));
    let color = take(&dims(
        dec.color_layers,
        cc.unwrap_or(dec.hidden),
        dec.color_channels,
    ));
    let mlp = |layers: &[(Vec<f64>, Vec<f64>)], x: Vec<f64>, relu_last: bool| {
        let mut x = x;
        for (l, (w, b)) in layers.iter().enumerate() {
            let n_out = b.len();
            let mut y = b.clone();
            for (i, xi) in x.iter().enumerate() {
                for (k, yk) in y.iter_mut().enumerate() {
                    *yk += xi * w[i * n_out + k];
                }
            }
            if l + 1 < layers.len() || relu_last {
                y = y.into_iter().map(|v| v.max(0.0)).collect();
            }
            x = y;
        }
        x
    };
    let relu = |x: Vec<f64>| x.into_iter().map(|v| v.max(0.0)).collect::<Vec<_>>();
    let r = p.rays.len();
    let s_tot = o.samples + o.samples_inf;
    let (mut feat, mut len, mut lam) = (Vec::new(), Vec::new(), Vec::new());
    for ray in 0..r {
        let (near, far) = (p.rays.near[ray], p.rays.far[ray]);
        let mut depths: Vec<f64> = (0..o.samples)
            .map(|j| near + (far - near) * j as f64 / (o.samples - 1) as f64)
            .collect();
        for k in 0..o.samples_inf {
            let frac = (k + 1) as f64 / o.samples_inf as f64;
            depths.push(far / ((f64::from(o.disparity_at_inf) - 1.0) * frac + 1.0));
        }
        let mut deltas = vec![(far - near) / (o.samples - 1) as f64];
        deltas.extend(depths.windows(2).map(|w| w[1] - w[0]));
        let mut opac = Vec::new();
        let mut colors = Vec::new();
        for (j, &t) in depths.iter().enumerate() {
            let mut pt: [f64; 3] = std::array::from_fn(|k| {
                p.rays.origins[3 * ray + k] + t * p.rays.directions[3 * ray + k]
            });
            if o.contract {
                let n = pt.iter().fold(0.0f64, |a, x| a.max(x.abs()));
                if n > 1.0 {
                    pt = pt.map(|x| {
                        if x.abs() == n {
                            (2.0 - 1.0 / x.abs()) * x.signum()
                        } else {
                            x / n
                        }
                    });
                }
                pt = pt.map(|x| x / 2.0);
            }
            let masked = o.mask_out_of_bounds && pt.iter().any(|x| x.abs() > 1.0);
            let b = p.rays.batch[ray] as usize;
            let sample = |l: &GridList, v: &[f64]| {
                if masked {
                    vec![0.0; l.channels()]
                } else {
                    reference::sample(l, v, b, pt).unwrap()
                }
            };
            let f = sample(&p.grids, &p.values);
            let e_len = cc.unwrap_or(dec.hidden);
            let enc = |x: Vec<f64>| -> Vec<f64> {
                match &p.rays.encoding {
                    Some(e) => x
                        .iter()
                        .enumerate()
                        .map(|(k, v)| v + e[ray * e_len + k])
                        .collect(),
                    None => x,
                }
            };
            let (o_raw, logits) = match &p.color {
                None => {
                    let h = mlp(&trunk, f, true);
                    (
                        mlp(&opacity, h.clone(), false)[0],
                        mlp(&color, enc(h), false),
                    )
                }
                Some((cl, cv)) => {
                    let fc = sample(cl, cv);
                    (
                        mlp(&opacity, relu(f), false)[0],
                        mlp(&color, enc(relu(fc)), false),
                    )
                }
            };
            let noise = o.noise.map_or(0.0, |n| {
                let i = (ray * s_tot + j) as u64;
                let stream = (u64::from(u32::from_be_bytes(*b"RNDR")) << 32) ^ n.stream;
                f64::from(n.sigma)
                    * f64::from(
                        rng::gaussians_f32(rng::block(n.seed, stream, i / 4))[(i % 4) as usize],
                    )
            });
            let x = o_raw + noise;
            // torch.nn.functional.softplus without its threshold.
            opac.push(f64::from(o.gain) * (1.0 + x.exp()).ln());
            colors.push(
                logits[..dec.color_channels]
                    .iter()
                    .map(|l| 1.0 / (1.0 + (-l).exp()))
                    .collect::<Vec<_>>(),
            );
        }
        // delta_opacity padded with a leading zero, cumsum, exp, minus diff.
        let mut cum = vec![0.0];
        for j in 0..s_tot {
            cum.push(cum[j] + opac[j] * deltas[j]);
        }
        let trans: Vec<f64> = cum.iter().map(|c| (-c).exp()).collect();
        let weights: Vec<f64> = trans.windows(2).map(|w| w[0] - w[1]).collect();
        len.push(weights.iter().zip(&depths).map(|(w, t)| w * t).sum());
        for k in 0..dec.color_channels {
            feat.push(weights.iter().zip(&colors).map(|(w, c)| w * c[k]).sum());
        }
        lam.push(cum[s_tot]);
    }
    (feat, len, lam)
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

fn variants() -> Vec<(&'static str, Config, RenderOptions)> {
    let noise = Some(OpacityNoise {
        sigma: 0.7,
        seed: 5,
        stream: 3,
    });
    vec![
        ("triplane", small(TRIPLANE), opts(6, 0)),
        ("voxel, background", small(VOXEL), opts(5, 4)),
        (
            "both, contract",
            small(BOTH),
            RenderOptions {
                contract: true,
                ..opts(5, 3)
            },
        ),
        (
            "triplane, mask",
            small(TRIPLANE),
            RenderOptions {
                mask_out_of_bounds: true,
                ..opts(7, 2)
            },
        ),
        (
            "color grid",
            Config {
                color_grid: true,
                ..small(TRIPLANE)
            },
            opts(5, 2),
        ),
        (
            "noise, no encoding",
            Config {
                encoding: false,
                ..small(VOXEL)
            },
            RenderOptions {
                noise,
                ..opts(6, 2)
            },
        ),
        (
            "deep, one layer heads",
            Config {
                layers: [3, 1, 1],
                ..small(BOTH)
            },
            opts(4, 0),
        ),
    ]
}

#[test]
fn forward_matches_a_plain_transcription() {
    for (i, (name, cfg, o)) in variants().into_iter().enumerate() {
        let p = problem(cfg, o, 10 + i as u64);
        let out = reference::forward(&p.scene(), &p.rays).unwrap();
        let (f, l, lam) = transcription(&p);
        assert_close(&format!("{name}: features"), &out.features, &f, 1e-12);
        assert_close(&format!("{name}: ray length"), &out.ray_length, &l, 1e-12);
        assert_close(
            &format!("{name}: lambda"),
            &out.neg_log_transmittance,
            &lam,
            1e-12,
        );
        assert!(
            out.neg_log_transmittance.iter().all(|&x| x > 0.0),
            "{name}: rays see something"
        );
    }
}

// ---------------------------------------------------------------- backward

#[test]
fn backward_matches_central_differences() {
    for (i, (name, cfg, o)) in variants().into_iter().enumerate() {
        // Background samples at the default disparity reach t = far / 1e-5, where the loss is
        // so large that f64 differences lose six digits; a nearer last sample keeps them exact.
        let o = RenderOptions {
            disparity_at_inf: 0.1,
            ..o
        };
        let mut p = problem(cfg, o, 30 + i as u64);
        let mut g = Gen::new(60 + i as u64);
        let r = p.rays.len();
        let k = p.decoder.color_channels;
        let (gf, gl, glam) = (
            g.vec(r * k, -1.0, 1.0),
            g.vec(r, -1.0, 1.0),
            g.vec(r, -1.0, 1.0),
        );
        let loss = |p: &Problem| {
            let out = reference::forward(&p.scene(), &p.rays).unwrap();
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
            dot(&out.features, &gf)
                + dot(&out.ray_length, &gl)
                + dot(&out.neg_log_transmittance, &glam)
        };
        let grads = reference::backward(&p.scene(), &p.rays, &gf, &gl, &glam).unwrap();
        let h = 1e-6;
        let mut worst = 0.0f64;
        let mut check = |what: &str, analytic: f64, plus: f64, minus: f64| {
            let fd = (plus - minus) / (2.0 * h);
            let err = (analytic - fd).abs();
            worst = worst.max(err);
            assert!(
                err <= 1e-6 * (1.0 + fd.abs()),
                "{name}: {what}: backward {analytic} vs differences {fd}"
            );
        };
        for j in 0..p.params.len() {
            let x = p.params[j];
            p.params[j] = x + h;
            let plus = loss(&p);
            p.params[j] = x - h;
            let minus = loss(&p);
            p.params[j] = x;
            check(&format!("params[{j}]"), grads.params[j], plus, minus);
        }
        for j in 0..p.values.len() {
            let x = p.values[j];
            p.values[j] = x + h;
            let plus = loss(&p);
            p.values[j] = x - h;
            let minus = loss(&p);
            p.values[j] = x;
            check(&format!("grids[{j}]"), grads.grids[j], plus, minus);
        }
        if let Some(n) = p.color.as_ref().map(|(_, v)| v.len()) {
            let gc = grads.color_grids.as_ref().expect("color grid gradient");
            #[allow(clippy::needless_range_loop)]
            for j in 0..n {
                let x = p.color.as_ref().unwrap().1[j];
                p.color.as_mut().unwrap().1[j] = x + h;
                let plus = loss(&p);
                p.color.as_mut().unwrap().1[j] = x - h;
                let minus = loss(&p);
                p.color.as_mut().unwrap().1[j] = x;
                check(&format!("color_grids[{j}]"), gc[j], plus, minus);
            }
        }
        let e_len = grads.encoding.len() / r;
        if p.rays.encoding.is_none() {
            p.rays.encoding = Some(vec![0.0; r * e_len]);
        }
        for j in 0..r * e_len {
            let enc = p.rays.encoding.as_mut().unwrap();
            let x = enc[j];
            enc[j] = x + h;
            let plus = loss(&p);
            p.rays.encoding.as_mut().unwrap()[j] = x - h;
            let minus = loss(&p);
            p.rays.encoding.as_mut().unwrap()[j] = x;
            check(&format!("encoding[{j}]"), grads.encoding[j], plus, minus);
        }
        let nonzero = grads.grids.iter().filter(|x| **x != 0.0).count();
        assert!(nonzero > 0, "{name}: the rays reach the grids");
        eprintln!(
            "{name}: worst |backward - differences| = {worst:.2e}, {nonzero} grid cells touched"
        );
    }
}

#[test]
fn lightplane_padded_color_heads_load_as_they_are() {
    // The same decoder with the color head's last layer padded to 16 outputs (zero columns and
    // biases after the real ones) renders the same and gets the same gradients, zero on pads.
    let p = problem(small(TRIPLANE), opts(6, 2), 3);
    let dec = p.decoder;
    let k = dec.color_channels;
    let h = dec.hidden;
    let plain_len = p.params.len();
    // The color head's last layer: weights (h x k) then, after them, its bias (k).
    let last_w = plain_len - k - h * k - h; // weights of layer 1 start here (layers: w0, w1, b0, b1)
    let mut padded = p.params[..last_w].to_vec();
    for i in 0..h {
        padded.extend_from_slice(&p.params[last_w + i * k..last_w + (i + 1) * k]);
        padded.extend(std::iter::repeat_n(0.0, 16 - k));
    }
    padded.extend_from_slice(&p.params[last_w + h * k..plain_len - k]); // bias of layer 0
    padded.extend_from_slice(&p.params[plain_len - k..]);
    padded.extend(std::iter::repeat_n(0.0, 16 - k));
    let scene = p.scene();
    let padded_scene = HostScene {
        params: &padded,
        ..p.scene()
    };
    let a = reference::forward(&scene, &p.rays).unwrap();
    let b = reference::forward(&padded_scene, &p.rays).unwrap();
    assert_eq!(a, b);
    let r = p.rays.len();
    let g = vec![1.0; r * k];
    let one = vec![0.5; r];
    let ga = reference::backward(&scene, &p.rays, &g, &one, &one).unwrap();
    let gb = reference::backward(&padded_scene, &p.rays, &g, &one, &one).unwrap();
    assert_eq!(ga.grids, gb.grids);
    assert_eq!(ga.encoding, gb.encoding);
    assert_eq!(ga.params[..last_w], gb.params[..last_w]);
    for i in 0..h {
        let row = &gb.params[last_w + i * 16..last_w + (i + 1) * 16];
        assert_eq!(row[..k], ga.params[last_w + i * k..last_w + (i + 1) * k]);
        assert!(row[k..].iter().all(|x| *x == 0.0));
    }
    assert!(
        gb.params[gb.params.len() - (16 - k)..]
            .iter()
            .all(|x| *x == 0.0)
    );
}

// ---------------------------------------------------------------- backends

fn upload_rays(dev: &Device, r: &HostRays) -> RayBuffers {
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
    let encoding = r.encoding.as_ref().map(|e| f32s(e));
    RayBuffers::upload(
        dev,
        &f32s(&r.origins),
        &f32s(&r.directions),
        &r.batch,
        &f32s(&r.near),
        &f32s(&r.far),
        encoding.as_deref(),
    )
    .unwrap()
}

/// Every output of a forward pass within the f32 rule of the reference's (relative L2 1e-5); the
/// errors of features, ray length and Lambda.
fn outputs_match(tag: &str, out: &RenderOutput, want: &HostOutput) -> [f64; 3] {
    let errors = [
        rel_l2(&out.features.download().unwrap(), &want.features),
        rel_l2(&out.ray_length.download().unwrap(), &want.ray_length),
        rel_l2(
            &out.neg_log_transmittance.download().unwrap(),
            &want.neg_log_transmittance,
        ),
    ];
    for (what, e) in ["features", "ray_length", "lambda"].iter().zip(errors) {
        assert!(e <= 1e-5, "{tag}: {what} relative L2 {e:.2e}");
    }
    errors
}

/// The f32 inputs widened back, so the f64 reference sees exactly what the backend sees.
fn as_f32(p: &mut Problem) {
    let round = |v: &mut Vec<f64>| v.iter_mut().for_each(|x| *x = f64::from(*x as f32));
    round(&mut p.values);
    round(&mut p.params);
    round(&mut p.rays.origins);
    round(&mut p.rays.directions);
    round(&mut p.rays.near);
    round(&mut p.rays.far);
    if let Some(e) = p.rays.encoding.as_mut() {
        round(e);
    }
    if let Some((_, v)) = p.color.as_mut() {
        round(v);
    }
}

fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(g, w)| (f64::from(*g) - w).powi(2))
        .sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den.max(1e-300)).sqrt()
}

#[test]
fn every_backend_matches_the_reference() {
    let cases = [
        (
            "triplane, 1 ray",
            Config {
                rays: 1,
                ..small(TRIPLANE)
            },
            opts(16, 11),
        ),
        (
            "voxel, 3 rays",
            Config {
                rays: 3,
                ..small(VOXEL)
            },
            opts(16, 11),
        ),
        (
            "both, 128 rays, odd width",
            Config {
                rays: 128,
                hidden: 7,
                channels: 5,
                ..small(BOTH)
            },
            opts(16, 11),
        ),
        (
            "triplane, 1000 rays, gain 3, deep",
            Config {
                rays: 1000,
                layers: [4, 3, 2],
                hidden: 16,
                channels: 16,
                ..small(TRIPLANE)
            },
            RenderOptions {
                gain: 3.0,
                ..opts(16, 11)
            },
        ),
        (
            "width 32, 32 channels, depth 1-3, 200 rays",
            Config {
                rays: 200,
                layers: [3, 1, 2],
                hidden: 32,
                channels: 32,
                ..small(BOTH)
            },
            opts(16, 11),
        ),
        (
            // More decoder parameters than shared memory holds: PTX blocks add their gradients
            // to their global slices.
            "width 64 (past shared memory), 5 rays, 8 + 4 samples",
            Config {
                rays: 5,
                hidden: 64,
                channels: 16,
                ..small(TRIPLANE)
            },
            opts(8, 4),
        ),
        (
            "color grid, contract, mask, noise",
            Config {
                rays: 64,
                color_grid: true,
                ..small(TRIPLANE)
            },
            RenderOptions {
                contract: true,
                mask_out_of_bounds: true,
                noise: Some(OpacityNoise {
                    sigma: 0.5,
                    seed: 1,
                    stream: 0,
                }),
                ..opts(16, 11)
            },
        ),
    ];
    for (dev_name, dev) in common::devices() {
        for (i, (name, cfg, o)) in cases.iter().enumerate() {
            let mut p = problem(*cfg, *o, 100 + i as u64);
            as_f32(&mut p);
            if name.contains("past shared memory") {
                assert!(p.params.len() * 4 > 48 << 10, "{}", p.params.len());
            }
            let want = reference::forward(&p.scene(), &p.rays).unwrap();
            let r = p.rays.len();
            let k = p.decoder.color_channels;
            let cl = p.color.as_ref().map(|(l, _)| l);
            let renderer = match Renderer::new(dev, &p.grids, cl, p.decoder, p.opts) {
                Ok(x) => x,
                Err(e) => panic!("{dev_name}: {name}: {e}"),
            };
            let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
            let grids = dev.upload(&f32s(&p.values)).unwrap();
            let color = p.color.as_ref().map(|(_, v)| dev.upload(&f32s(v)).unwrap());
            let params = dev.upload(&f32s(&p.params)).unwrap();
            let ray_buffers = upload_rays(dev, &p.rays);
            let rays = ray_buffers.rays();
            let mut out = RenderOutput::zeros(dev, r, k).unwrap();
            out.features.write(&vec![f32::NAN; r * k]).unwrap();
            match renderer.forward(&grids, color.as_ref(), &params, &rays, &mut out) {
                Ok(()) => {}
                // The small-chunk device refuses a grid list larger than one binding.
                Err(Error::LimitExceeded { .. })
                    if dev_name.contains("4KiB") && p.grids.len() * 4 > 4096 =>
                {
                    eprintln!("{dev_name}: {name}: grids exceed one 4 KiB binding: refused");
                    continue;
                }
                Err(e) => panic!("{dev_name}: {name}: {e}"),
            }
            let feat = out.features.download().unwrap();
            assert!(
                feat.iter().all(|x| x.is_finite()),
                "{dev_name}: {name}: every feature written"
            );
            outputs_match(&format!("{dev_name}: {name}"), &out, &want);

            // Backward against the reference's backward from its own (f64) Lambda_last.
            let mut g = Gen::new(7);
            let (gf, gl, glam) = (
                g.vec(r * k, -1.0, 1.0),
                g.vec(r, -1.0, 1.0),
                g.vec(r, -1.0, 1.0),
            );
            let want = reference::backward(&p.scene(), &p.rays, &gf, &gl, &glam).unwrap();
            let grad_out = RenderOutput {
                features: dev.upload(&f32s(&gf)).unwrap(),
                ray_length: dev.upload(&f32s(&gl)).unwrap(),
                neg_log_transmittance: dev.upload(&f32s(&glam)).unwrap(),
            };
            let mut grads = renderer.grads_zeros(r, p.params.len()).unwrap();
            let res = renderer.backward(
                &grids,
                color.as_ref(),
                &params,
                &rays,
                &grad_out,
                &mut grads,
            );
            match res {
                Ok(()) => {}
                Err(e) => panic!("{dev_name}: {name}: {e}"),
            }
            let mut pairs = vec![
                ("grids", grads.grids.download().unwrap(), want.grids.clone()),
                (
                    "params",
                    grads.params.download().unwrap(),
                    want.params.clone(),
                ),
                (
                    "encoding",
                    grads.encoding.download().unwrap(),
                    want.encoding.clone(),
                ),
            ];
            if let (Some(a), Some(b)) = (&grads.color_grids, &want.color_grids) {
                pairs.push(("color_grids", a.download().unwrap(), b.clone()));
            }
            for (what, got, want) in pairs {
                let e = rel_l2(&got, &want);
                assert!(
                    e <= 1e-4,
                    "{dev_name}: {name}: grad {what} relative L2 {e:.2e}"
                );
            }
            eprintln!("{dev_name}: {name}: forward and backward match");
        }
    }
}

/// Forward and backward of `p` (f32 grids, no color grid, 3 colors) on every backend against
/// the reference, with incoming gradients `[features, ray length, Lambda]`; `tag` names the
/// case, and each of `parts` a range of the parameters whose gradient is also held to the
/// tolerance on its own. Only the 4 KiB-binding backend may refuse it, where one invocation's
/// scratch alone passes a binding (said on stderr).
fn every_backend_matches_both_ways(
    tag: &str,
    p: &Problem,
    g: [&[f64]; 3],
    parts: &[(&str, std::ops::Range<usize>)],
) {
    let want = reference::forward(&p.scene(), &p.rays).unwrap();
    let want_g = reference::backward(&p.scene(), &p.rays, g[0], g[1], g[2]).unwrap();
    let r = p.rays.len();
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
    for (dev_name, dev) in common::devices() {
        let renderer = Renderer::new(dev, &p.grids, None, p.decoder, p.opts).unwrap();
        let ray_buffers = upload_rays(dev, &p.rays);
        let rays = ray_buffers.rays();
        let grids = dev.upload(&f32s(&p.values)).unwrap();
        let params = dev.upload(&f32s(&p.params)).unwrap();
        let mut out = RenderOutput::zeros(dev, r, 3).unwrap();
        match renderer.forward(&grids, None, &params, &rays, &mut out) {
            Ok(()) => {}
            Err(e @ Error::LimitExceeded { .. }) if dev_name.contains("4KiB") => {
                eprintln!("{dev_name}: {tag}: refused: {e}");
                continue;
            }
            Err(e) => panic!("{dev_name}: {tag}: {e}"),
        }
        let e = outputs_match(&format!("{dev_name}: {tag}"), &out, &want);
        eprintln!(
            "{dev_name}: {tag}: relative L2 features {:.1e}, ray length {:.1e}, Lambda {:.1e}",
            e[0], e[1], e[2]
        );
        let grad_out = RenderOutput {
            features: dev.upload(&f32s(g[0])).unwrap(),
            ray_length: dev.upload(&f32s(g[1])).unwrap(),
            neg_log_transmittance: dev.upload(&f32s(g[2])).unwrap(),
        };
        let mut grads = renderer.grads_zeros(r, p.params.len()).unwrap();
        renderer
            .backward(&grids, None, &params, &rays, &grad_out, &mut grads)
            .unwrap_or_else(|e| panic!("{dev_name}: {tag}: {e}"));
        let g_params = grads.params.download().unwrap();
        let mut checks = vec![
            ("grids", grads.grids.download().unwrap(), &want_g.grids[..]),
            ("params", g_params.clone(), &want_g.params[..]),
            (
                "encoding",
                grads.encoding.download().unwrap(),
                &want_g.encoding[..],
            ),
        ];
        for (what, range) in parts {
            checks.push((
                what,
                g_params[range.clone()].to_vec(),
                &want_g.params[range.clone()],
            ));
        }
        for (what, got, want) in checks {
            let e = rel_l2(&got, want);
            assert!(
                e <= 1e-4,
                "{dev_name}: {tag}: grad {what} relative L2 {e:.2e}"
            );
            eprintln!("{dev_name}: {tag}: grad {what} relative L2 {e:.2e}");
        }
    }
}

#[test]
fn saturated_colors_keep_their_gradient_digits() {
    // The color head's last biases raised by 12: every color is within about 1e-4 of 1 (its
    // logit 9 to 15), and c (1 - c) from an f32 c would keep only the digits of 1 - c that
    // survive rounding c (relative error 6e-8 / 1e-4 and more). Forward and backward within
    // the usual rules.
    let mut p = problem(
        Config {
            rays: 40,
            ..small(TRIPLANE)
        },
        opts(24, 0),
        22,
    );
    let n = p.params.len();
    for b in &mut p.params[n - 3..] {
        *b += 12.0;
    }
    as_f32(&mut p);
    let want = reference::forward(&p.scene(), &p.rays).unwrap();
    let r = p.rays.len();
    let mut g = Gen::new(7);
    let (gf, gl, glam) = (
        g.vec(r * 3, -1.0, 1.0),
        g.vec(r, -1.0, 1.0),
        g.vec(r, -1.0, 1.0),
    );
    let lam_max = want
        .neg_log_transmittance
        .iter()
        .cloned()
        .fold(0.0, f64::max);
    assert!(
        lam_max > 0.1,
        "the rays see something: Lambda up to {lam_max:.2e}"
    );
    // The saturation shrinks the color head's gradients, which are then a small part of all
    // of them: they are held to the tolerance on their own.
    let dec = p.decoder;
    let color = Decoder {
        trunk_layers: 0,
        opacity_layers: 0,
        ..dec
    }
    .params_len(dec.hidden, None);
    every_backend_matches_both_ways(
        "saturated colors",
        &p,
        [&gf, &gl, &glam],
        &[("color head", n - color..n)],
    );
}

#[test]
fn nearly_transparent_rays_keep_their_digits() {
    // The opacity head's last bias lowered by 14: softplus(o) ~ 1e-6, so every sample's weight
    // T_{j-1} - T_j is about 1e-7 and the difference of two f32 transmittances near 1 would keep
    // none of its digits. Forward and backward within the usual rules on every backend.
    let mut p = problem(
        Config {
            rays: 40,
            ..small(TRIPLANE)
        },
        opts(24, 0),
        21,
    );
    let dec = p.decoder;
    let trunk = dec.params_len(p.grids.channels(), None)
        - Decoder {
            trunk_layers: 0,
            ..dec
        }
        .params_len(dec.hidden, None);
    let opacity = Decoder {
        trunk_layers: 0,
        color_layers: 0,
        ..dec
    }
    .params_len(dec.hidden, None);
    p.params[trunk + opacity - 1] -= 14.0;
    as_f32(&mut p);
    let want = reference::forward(&p.scene(), &p.rays).unwrap();
    let lam = want
        .neg_log_transmittance
        .iter()
        .cloned()
        .fold(0.0, f64::max);
    assert!(
        lam < 1e-3,
        "the rays are nearly transparent: Lambda up to {lam:.2e}"
    );
    let r = p.rays.len();
    let mut g = Gen::new(5);
    let (gf, gl, glam) = (
        g.vec(r * 3, -1.0, 1.0),
        g.vec(r, -1.0, 1.0),
        g.vec(r, -1.0, 1.0),
    );
    every_backend_matches_both_ways("nearly transparent", &p, [&gf, &gl, &glam], &[]);
}

#[test]
fn low_precision_grids_render_within_storage_tolerance() {
    let mut p = problem(
        Config {
            rays: 200,
            ..small(TRIPLANE)
        },
        opts(16, 4),
        8,
    );
    as_f32(&mut p);
    let want = reference::forward(&p.scene(), &p.rays).unwrap();
    let bf: Vec<half::bf16> = p.values.iter().map(|&x| half::bf16::from_f64(x)).collect();
    let f16: Vec<half::f16> = p.values.iter().map(|&x| half::f16::from_f64(x)).collect();
    let widen = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
    for (dev_name, dev) in common::devices() {
        let renderer = Renderer::new(dev, &p.grids, None, p.decoder, p.opts).unwrap();
        let ray_buffers = upload_rays(dev, &p.rays);
        let rays = ray_buffers.rays();
        let params = dev
            .upload(&p.params.iter().map(|&x| x as f32).collect::<Vec<_>>())
            .unwrap();
        let mut out = RenderOutput::zeros(dev, p.rays.len(), 3).unwrap();
        for (kind, stored) in [
            ("bf16", widen(bf.iter().map(|x| x.to_f32()).collect())),
            ("f16", widen(f16.iter().map(|x| x.to_f32()).collect())),
        ] {
            let res = if kind == "bf16" {
                renderer.forward(&dev.upload(&bf).unwrap(), None, &params, &rays, &mut out)
            } else {
                renderer.forward(&dev.upload(&f16).unwrap(), None, &params, &rays, &mut out)
            };
            match res {
                Ok(()) => {}
                Err(e) => panic!("{dev_name}: {kind}: {e}"),
            }
            let got = out.features.download().unwrap();
            let e = rel_l2(&got, &want.features);
            assert!(e <= 1e-2, "{dev_name}: {kind} grids: relative L2 {e:.2e}");
            // The same math on the stored values widened to f64 is the f32 rule's reference.
            let exact = reference::forward(
                &HostScene {
                    grid_values: &stored,
                    ..p.scene()
                },
                &p.rays,
            )
            .unwrap();
            let e = rel_l2(&got, &exact.features);
            assert!(
                e <= 1e-5,
                "{dev_name}: {kind} grids against their own values: {e:.2e}"
            );
            eprintln!("{dev_name}: {kind} grids render within tolerance");
        }
    }
}

// ---------------------------------------------------------------- bad input

#[test]
fn bad_input_is_a_clear_error() {
    let dev = Device::cpu();
    let p = problem(small(TRIPLANE), opts(4, 0), 9);
    let dec = p.decoder;
    let shape_err = |r: Result<GridList, Error>| matches!(r, Err(Error::Shape { .. }));
    assert!(shape_err(GridList::new(&[])));
    let named = GridList::new(&[[1, 0, 2, 2, 3]]).unwrap_err().to_string();
    assert!(
        named.contains("GridList::new") && named.contains("shapes"),
        "{named}"
    );
    assert!(shape_err(GridList::new(&[[1, 0, 2, 2, 3]])));
    assert!(
        shape_err(GridList::new(&[[1, 2, 2, 2, 3], [2, 2, 2, 2, 3]])),
        "batch differs"
    );
    assert!(
        shape_err(GridList::new(&[[1, 2, 2, 2, 3], [1, 2, 2, 2, 4]])),
        "channels differ"
    );
    assert!(
        shape_err(GridList::new(&[[1, 1, 1, 2, 3]])),
        "a line is no grid"
    );
    assert!(matches!(
        GridList::new(&[[usize::MAX, 2, 2, 2, 2]]),
        Err(Error::LimitExceeded { .. })
    ));

    let new = |d: Decoder, o: RenderOptions| Renderer::new(&dev, &p.grids, None, d, o);
    let msg = |r: Result<Renderer, Error>| r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg(new(dec, opts(1, 0))).contains("samples"));
    assert!(msg(new(Decoder { hidden: 129, ..dec }, opts(4, 0))).contains("decoder.hidden"));
    assert!(msg(new(Decoder { hidden: 0, ..dec }, opts(4, 0))).contains("decoder.hidden"));
    assert!(
        msg(new(
            Decoder {
                trunk_layers: 0,
                ..dec
            },
            opts(4, 0)
        ))
        .contains("trunk_layers")
    );
    assert!(
        msg(new(
            Decoder {
                opacity_layers: 0,
                ..dec
            },
            opts(4, 0)
        ))
        .contains("opacity_layers")
    );
    assert!(
        msg(new(
            dec,
            RenderOptions {
                gain: f32::NAN,
                ..opts(4, 0)
            }
        ))
        .contains("gain")
    );
    assert!(
        msg(new(
            dec,
            RenderOptions {
                disparity_at_inf: 0.0,
                ..opts(4, 0)
            }
        ))
        .contains("disparity")
    );
    let wide = GridList::new(&[[1, 2, 2, 2, 200]]).unwrap();
    assert!(Renderer::new(&dev, &wide, None, dec, opts(4, 0)).is_err());

    let renderer = new(dec, opts(4, 0)).unwrap();
    let r = p.rays.len();
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
    let grids = dev.upload(&f32s(&p.values)).unwrap();
    let params = dev.upload(&f32s(&p.params)).unwrap();
    let ray_buffers = upload_rays(&dev, &p.rays);
    let rays = ray_buffers.rays();
    let mut out = RenderOutput::zeros(&dev, r, 3).unwrap();
    let run = |g: &trainkern::Buffer<f32>,
               pr: &trainkern::Buffer<f32>,
               rays: &Rays,
               out: &mut RenderOutput| {
        renderer
            .forward(g, None, pr, rays, out)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert_eq!(run(&grids, &params, &rays, &mut out), "");
    let before = out.features.download().unwrap();
    let short = dev.upload(&f32s(&p.params[1..])).unwrap();
    assert!(run(&grids, &short, &rays, &mut out).contains("mlp_params"));
    assert!(run(&short, &params, &rays, &mut out).contains("grids"));
    let bad_batch = dev.upload(&vec![2u32; r]).unwrap();
    let e = run(
        &grids,
        &params,
        &Rays {
            batch: &bad_batch,
            ..rays
        },
        &mut out,
    );
    assert!(
        e.contains("rays.batch") && e.contains("out of range"),
        "{e}"
    );
    let flipped = dev.upload(&f32s(&p.rays.far)).unwrap();
    let nearer = dev.upload(&f32s(&p.rays.near)).unwrap();
    let e = run(
        &grids,
        &params,
        &Rays {
            near: &flipped,
            far: &nearer,
            ..rays
        },
        &mut out,
    );
    assert!(e.contains("near <= far"), "{e}");
    let short_enc = dev.upload(&[0.0f32; 2]).unwrap();
    assert!(
        run(
            &grids,
            &params,
            &Rays {
                encoding: Some(&short_enc),
                ..rays
            },
            &mut out
        )
        .contains("rays.encoding")
    );
    let mut wrong_out = RenderOutput::zeros(&dev, r, 4).unwrap();
    assert!(run(&grids, &params, &rays, &mut wrong_out).contains("out"));
    assert_eq!(
        out.features.download().unwrap(),
        before,
        "a failed call writes nothing"
    );
    // A color grid where none was planned.
    let e = renderer
        .forward(&grids, Some(&grids), &params, &rays, &mut out)
        .unwrap_err();
    assert!(e.to_string().contains("color_grids"), "{e}");
}

#[test]
fn no_rays_is_a_no_op() {
    let dev = Device::cpu();
    let p = problem(small(VOXEL), opts(4, 0), 4);
    let renderer = Renderer::new(&dev, &p.grids, None, p.decoder, p.opts).unwrap();
    let e = dev.upload::<f32>(&[]).unwrap();
    let b = dev.upload::<u32>(&[]).unwrap();
    let rays = Rays {
        origins: &e,
        directions: &e,
        batch: &b,
        near: &e,
        far: &e,
        encoding: None,
    };
    let grids = dev
        .upload(&p.values.iter().map(|&x| x as f32).collect::<Vec<_>>())
        .unwrap();
    let params = dev
        .upload(&p.params.iter().map(|&x| x as f32).collect::<Vec<_>>())
        .unwrap();
    let mut out = RenderOutput::zeros(&dev, 0, 3).unwrap();
    renderer
        .forward(&grids, None, &params, &rays, &mut out)
        .unwrap();
    let mut grads = renderer.grads_zeros(0, p.params.len()).unwrap();
    renderer
        .backward(&grids, None, &params, &rays, &out, &mut grads)
        .unwrap();
    assert!(grads.params.download().unwrap().iter().all(|x| *x == 0.0));
}

#[test]
fn helpers_follow_lightplane() {
    use trainkern::render::{composite_background, harmonic_dim, harmonic_embedding};
    assert_eq!(harmonic_dim(3), 21);
    // Direction (0, 0, 2): unit (0, 0, 1); sin block then cos block, x then y then z, each over
    // frequencies 1, 2, 4; then the unit direction.
    let e = harmonic_embedding(&[0.0, 0.0, 2.0], 3);
    let mut want = vec![0.0f32; 6];
    want.extend([1f64.sin(), 2f64.sin(), 4f64.sin()].map(|x| x as f32));
    want.extend([1.0f32; 6]);
    want.extend([1f64.cos(), 2f64.cos(), 4f64.cos()].map(|x| x as f32));
    want.extend([0.0, 0.0, 1.0]);
    assert_eq!(e.len(), 21);
    for (a, b) in e.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{e:?} vs {want:?}");
    }
    let (color, alpha) =
        composite_background(&[0.2, 0.3, 0.0, 0.0], &[2f32.ln(), 0.0], &[1.0, 0.5]);
    assert_eq!(color, vec![0.7, 0.55, 1.0, 0.5]);
    assert_eq!(alpha, vec![0.5, 0.0]);
}

#[test]
fn xavier_init_has_lightplane_shape_and_bounds() {
    let dec = Decoder {
        trunk_layers: 2,
        opacity_layers: 2,
        color_layers: 2,
        hidden: 32,
        color_channels: 3,
    };
    let p = dec.xavier_init(32, None, -5.0, 1).unwrap();
    // trunk 32x32 + 32x32 + 64 biases; opacity 32x32 + 32x1 + 33; color 32x32 + 32x3 + 35.
    let trunk = 2 * 1024 + 64;
    let opacity = 1024 + 32 + 33;
    let color = 1024 + 96 + 35;
    assert_eq!(p.len(), trunk + opacity + color);
    assert_eq!(
        p[trunk + 1024 + 32 + 32],
        -5.0,
        "the opacity head's last bias"
    );
    let bound = 2f32.sqrt() * (6.0f32 / 64.0).sqrt();
    let w0 = &p[..1024];
    assert!(w0.iter().all(|x| x.abs() <= bound));
    let mean = w0.iter().sum::<f32>() / 1024.0;
    let var = w0.iter().map(|x| x * x).sum::<f32>() / 1024.0;
    // Uniform(-a, a): variance a^2 / 3; 1024 samples put the estimate within 15% (5 sigma).
    assert!(
        mean.abs() < 0.05 && (var / (bound * bound / 3.0) - 1.0).abs() < 0.15,
        "{mean} {var}"
    );
    assert!(
        p[2048..2048 + 64].iter().all(|x| *x == 0.0),
        "trunk biases are zero"
    );
}

#[test]
fn bad_rays_are_caught_on_every_backend() {
    let p = problem(small(TRIPLANE), opts(4, 0), 12);
    for (dev_name, dev) in common::devices() {
        let renderer = Renderer::new(dev, &p.grids, None, p.decoder, p.opts).unwrap();
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
        let grids = dev.upload(&f32s(&p.values)).unwrap();
        let params = dev.upload(&f32s(&p.params)).unwrap();
        let ray_buffers = upload_rays(dev, &p.rays);
        let r = p.rays.len();
        let mut batch = p.rays.batch.clone();
        batch[r - 1] = 2; // the grids have batch 2
        let bad_batch = dev.upload(&batch).unwrap();
        let mut out = RenderOutput::zeros(dev, r, 3).unwrap();
        let rays = Rays {
            batch: &bad_batch,
            encoding: None,
            ..ray_buffers.rays()
        };
        let e = match renderer.forward(&grids, None, &params, &rays, &mut out) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{dev_name}: a batch index out of range passed"),
        };
        assert!(
            e.contains("rays.batch") && e.contains("out of range"),
            "{dev_name}: {e}"
        );
        let mut flipped = f32s(&p.rays.near);
        flipped[0] = f32s(&p.rays.far)[0] + 1.0;
        let flipped = dev.upload(&flipped).unwrap();
        let rays = Rays {
            near: &flipped,
            encoding: None,
            ..ray_buffers.rays()
        };
        let e = renderer
            .forward(&grids, None, &params, &rays, &mut out)
            .unwrap_err();
        assert!(e.to_string().contains("near <= far"), "{dev_name}: {e}");
        eprintln!("{dev_name}: bad rays refused");
    }
}

#[test]
fn the_widest_decoder_renders_forward_and_backward() {
    // Width 128 (the documented maximum) and four layers per MLP, 128 channels: one sample
    // passes llvmpipe's 65 535 loop iterations per invocation, so lavapipe runs each sample
    // split over dispatches (wgpu.rs); every backend must match the reference both ways.
    let cfg = Config {
        rays: 2,
        layers: [4, 4, 4],
        hidden: 128,
        channels: 128,
        ..small(TRIPLANE)
    };
    let mut p = problem(cfg, opts(4, 2), 13);
    // Xavier-scaled weights (uniform ones this wide saturate every color and opacity), and
    // small biases.
    let mut g = Gen::new(6);
    let xavier = p.decoder.xavier_init(128, None, 0.5, 3).unwrap();
    p.params = xavier
        .iter()
        .map(|&x| f64::from(x) + g.uni(-0.05, 0.05))
        .collect();
    as_f32(&mut p);
    let want = reference::forward(&p.scene(), &p.rays).unwrap();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!(norm(&want.features) > 0.1, "{:?}", want.features);
    let r = p.rays.len();
    let (gf, gl, glam) = (
        g.vec(r * 3, -1.0, 1.0),
        g.vec(r, -1.0, 1.0),
        g.vec(r, -1.0, 1.0),
    );
    let want_g = reference::backward(&p.scene(), &p.rays, &gf, &gl, &glam).unwrap();
    assert!(norm(&want_g.encoding) > 1e-3, "{:?}", want_g.encoding);
    every_backend_matches_both_ways("width 128", &p, [&gf, &gl, &glam], &[]);
}
