//! Per-example clipping: the CPU reference against hand-computed cases and explicit
//! per-example gradients, every backend against the reference (flat and grouped, three storage
//! types, noise on and off, dropped rows), ghost norms, the adaptive clip norm, bad input.

mod common;

use half::{bf16, f16};
use trainkern::check::rel_l2;
use trainkern::clip::{
    AdaptiveClip, Bounds, ClipNoise, ClipOptions, ClipRule, Clipper, GhostMethod, GhostReducer,
    GhostShape, Update, ghost_norms_by, split_noise_multiplier,
};
use trainkern::noise::{self, Gaussian};
use trainkern::{Device, Error, Float, rng};

/// Seeded values in [-1, 1) (never zeros, never all equal).
fn values(n: usize, salt: u64) -> Vec<f32> {
    let mut w = vec![0u32; n];
    rng::words_into(salt, 91, 0, &mut w);
    w.iter().map(|&x| 2.0 * rng::uniform(x) - 1.0).collect()
}

/// Rows whose norms spread over about two decades, so that some are clipped and some not.
fn gradients<T: Float>(b: usize, d: usize, salt: u64) -> Vec<T> {
    let v = values(b * d, salt);
    let mut out = Vec::with_capacity(b * d);
    for i in 0..b {
        let s = 0.1 + 10.0 * ((i * 7919) % 97) as f32 / 97.0;
        out.extend(v[i * d..(i + 1) * d].iter().map(|x| T::from_f32(s * x)));
    }
    out
}

struct Out {
    sum: Vec<f32>,
    norms: Vec<f32>,
    factors: Vec<f32>,
    clipped: u32,
    nonfinite: u32,
}

fn clip_on<T: Float>(
    dev: &Device,
    g: &[T],
    b: usize,
    offsets: &[usize],
    bounds: &[f32],
    opts: &ClipOptions,
) -> Out {
    let d = *offsets.last().unwrap();
    let l = offsets.len() - 1;
    let grads = dev.upload(g).unwrap();
    let mut sum = dev.upload(&vec![f32::NAN; d]).unwrap();
    let mut norms = dev.upload(&vec![f32::NAN; b * l]).unwrap();
    let mut c = Clipper::grouped(dev, b, offsets).unwrap();
    c.run(&grads, Bounds::Host(bounds), opts, &mut sum, &mut norms)
        .unwrap();
    let counts = c.counts().unwrap();
    Out {
        sum: sum.download().unwrap(),
        norms: norms.download().unwrap(),
        factors: c.factors().download().unwrap(),
        clipped: counts.clipped,
        nonfinite: counts.nonfinite,
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

#[test]
fn reference_follows_the_clip_factor_table() {
    let cpu = Device::cpu();
    // Rows: zero; NaN; +inf; norm 5 (3, 4); norm 5 exactly at the bound; norm 0.5.
    let nan = f32::NAN;
    let inf = f32::INFINITY;
    let g = [
        0.0, 0.0, //
        nan, 1.0, //
        inf, 1.0, //
        3.0, 4.0, //
        -4.0, 3.0, //
        0.3, -0.4,
    ];
    let run = |c: f32, rule: ClipRule| {
        let opts = ClipOptions {
            rule,
            ..ClipOptions::default()
        };
        clip_on::<f32>(&cpu, &g, 6, &[0, 2], &[c], &opts)
    };

    let o = run(5.0, ClipRule::Exact);
    assert_eq!(o.factors, vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    assert_eq!(o.norms[0], 0.0);
    assert!(o.norms[1].is_nan() && o.norms[2] == inf);
    assert_eq!(&o.norms[3..], &[5.0, 5.0, 0.5]);
    // Dropped rows count as clipped (c = 0 < 1) and as non-finite.
    assert_eq!((o.clipped, o.nonfinite), (2, 2));
    assert_eq!(o.sum, vec![3.0 - 4.0 + 0.3, 4.0 + 3.0 - 0.4]);

    // Opacus divides by n + 1e-6, so the row exactly at the bound is (just) clipped.
    let o = run(5.0, ClipRule::Opacus);
    let f = (5.0f64 / (5.0 + 1e-6)) as f32;
    assert_eq!(o.factors, vec![1.0, 0.0, 0.0, f, f, 1.0]);
    assert_eq!(o.clipped, 4);

    let o = run(1.0, ClipRule::Exact);
    assert_eq!(o.factors, vec![1.0, 0.0, 0.0, 0.2, 0.2, 1.0]);
    let want = [0.2 * 3.0 - 0.2 * 4.0 + 0.3, 0.2 * 4.0 + 0.2 * 3.0 - 0.4];
    for (s, w) in o.sum.iter().zip(want) {
        assert!((s - w).abs() <= 1e-6, "{s} vs {w}");
    }

    // C = 0: every factor 0, even of the zero row; the sum is 0, not NaN.
    let o = run(0.0, ClipRule::Exact);
    assert_eq!(o.factors, vec![0.0; 6]);
    assert_eq!(o.sum, vec![0.0, 0.0]);
    assert_eq!((o.clipped, o.nonfinite), (6, 2));

    // C = +inf: no clipping, but non-finite rows are still dropped.
    let o = run(inf, ClipRule::Opacus);
    assert_eq!(o.factors, vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    assert_eq!((o.clipped, o.nonfinite), (2, 2));
}

#[test]
fn reference_grouped_clipping() {
    let cpu = Device::cpu();
    let (b, d) = (5, 13);
    let g = gradients::<f32>(b, d, 3);
    // One group is flat clipping, bit for bit.
    let opts = ClipOptions {
        noise: Some(ClipNoise {
            multiplier: 0.7,
            seed: 1,
            stream: 2,
            offset: 3,
        }),
        scale: 0.25,
        ..ClipOptions::default()
    };
    let flat = clip_on::<f32>(&cpu, &g, b, &[0, d], &[1.5], &opts);
    let mut c = Clipper::flat(&cpu, b, d).unwrap();
    let grads = cpu.upload(&g).unwrap();
    let (mut s, mut n) = (cpu.zeros(d).unwrap(), cpu.zeros(b).unwrap());
    c.run(&grads, Bounds::Host(&[1.5]), &opts, &mut s, &mut n)
        .unwrap();
    assert_eq!(s.download().unwrap(), flat.sum);
    assert_eq!(n.download().unwrap(), flat.norms);

    // Two groups, hand-computed: each (row, group) clipped by its own bound, the sum of the
    // clipped pieces, noise of std multiplier * sqrt(C_0^2 + C_1^2) on every coordinate.
    let offsets = [0, 4, d];
    let bounds = [0.5f32, 2.0];
    let o = clip_on::<f32>(&cpu, &g, b, &offsets, &bounds, &ClipOptions::default());
    let mut want = vec![0.0f64; d];
    let mut clipped = 0;
    for i in 0..b {
        let mut any = false;
        for (l, w) in offsets.windows(2).enumerate() {
            let piece = &g[i * d + w[0]..i * d + w[1]];
            let n = piece
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt();
            assert_eq!(o.norms[i * 2 + l], n as f32);
            let c = (f64::from(bounds[l]) / n).min(1.0);
            any |= c < 1.0;
            assert_eq!(o.factors[i * 2 + l], c as f32);
            for (k, x) in piece.iter().enumerate() {
                want[w[0] + k] += c * f64::from(*x);
            }
        }
        clipped += u32::from(any);
    }
    assert_eq!(o.clipped, clipped);
    assert!(rel_l2(&f64s(&o.sum), &want) <= 1e-7);

    let opts = ClipOptions {
        noise: Some(ClipNoise {
            multiplier: 2.0,
            seed: 9,
            stream: 0,
            offset: 0,
        }),
        ..ClipOptions::default()
    };
    let noisy = clip_on::<f32>(&cpu, &g, b, &offsets, &bounds, &opts);
    let sigma = 2.0 * (0.25f64 + 4.0).sqrt() as f32;
    let mut z = vec![0.0f32; d];
    rng::gaussians_into(9, 0, 0, &mut z);
    for ((got, quiet), z) in noisy.sum.iter().zip(&o.sum).zip(&z) {
        assert_eq!(*got, quiet + sigma * z);
    }

    // A non-finite value in one group drops the whole row.
    let mut bad = g.clone();
    bad[2 * d + 7] = f32::NEG_INFINITY;
    let o2 = clip_on::<f32>(&cpu, &bad, b, &offsets, &bounds, &ClipOptions::default());
    assert_eq!(&o2.factors[4..6], &[0.0, 0.0]);
    assert_eq!(o2.nonfinite, 1);
    assert!(o2.sum.iter().all(|x| x.is_finite()));
}

/// A clip bound that no row norm is near (so counts cannot differ by rounding).
fn clear_bound(norms: &[f32]) -> f32 {
    let mut n: Vec<f32> = norms.iter().copied().filter(|x| x.is_finite()).collect();
    n.sort_by(f32::total_cmp);
    if n.len() < 2 {
        return n.first().map_or(1.0, |x| 0.5 * x);
    }
    let mut k = n.len() / 2 - 1;
    while k + 2 < n.len() && n[k + 1] - n[k] <= 1e-4 * n[k + 1] {
        k += 1;
    }
    0.5 * (n[k] + n[k + 1])
}

/// The cases every backend runs: (B, column offsets). The PTX emulator interprets each
/// instruction on the CPU, so it skips the largest.
fn cases(emu: bool) -> Vec<(usize, Vec<usize>)> {
    let mut v = vec![
        (1, vec![0, 1]),
        (3, vec![0, 300]),
        (64, vec![0, 1100]),
        (1000, vec![0, 37]),
        (3, vec![0, 5, 700, 701, 2 * 16384 + 9]),
        (64, vec![0, 257, 1100]),
    ];
    if !emu {
        v.push((64, vec![0, 70_001]));
        v.push((1000, vec![0, 600, 1100]));
    }
    v
}

fn conformance<T: Float>() {
    for (name, dev) in common::devices() {
        let emu = name == "ptx-emu";
        for (b, offsets) in cases(emu) {
            let d = *offsets.last().unwrap();
            let l = offsets.len() - 1;
            let mut g = gradients::<T>(b, d, (b * 31 + d) as u64);
            if b >= 3 {
                g[d + d / 2] = T::from_f32(f32::NAN);
                g[2 * d] = T::from_f32(f32::INFINITY);
            }
            let cpu_norms = clip_on::<T>(
                &Device::cpu(),
                &g,
                b,
                &offsets,
                &vec![f32::INFINITY; l],
                &ClipOptions::default(),
            )
            .norms;
            let bounds: Vec<f32> = (0..l)
                .map(|k| {
                    let col: Vec<f32> = (0..b).map(|i| cpu_norms[i * l + k]).collect();
                    clear_bound(&col)
                })
                .collect();
            for noisy in [false, true] {
                let opts = ClipOptions {
                    rule: if noisy {
                        ClipRule::Opacus
                    } else {
                        ClipRule::Exact
                    },
                    noise: noisy.then_some(ClipNoise {
                        multiplier: 1.1,
                        seed: 5,
                        stream: d as u64,
                        offset: (1 << 34) - 3,
                    }),
                    scale: if noisy { 1.0 / 64.0 } else { 1.0 },
                };
                let what = format!(
                    "{name} {} B={b} offsets={offsets:?} noise={noisy}",
                    T::DTYPE
                );
                let want = clip_on::<T>(&Device::cpu(), &g, b, &offsets, &bounds, &opts);
                let got = clip_on::<T>(dev, &g, b, &offsets, &bounds, &opts);
                assert!(
                    got.sum.iter().all(|x| x.is_finite()),
                    "{what}: sum not finite"
                );
                let e = rel_l2(&f64s(&got.sum), &f64s(&want.sum));
                assert!(e <= 1e-5, "{what}: sum relative L2 {e:e}");
                for (j, (x, y)) in got.norms.iter().zip(&want.norms).enumerate() {
                    let ok =
                        (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= 1e-5 * y.abs();
                    assert!(ok, "{what}: norm {j}: {x} vs {y}");
                }
                for (j, (x, y)) in got.factors.iter().zip(&want.factors).enumerate() {
                    assert!(
                        (x - y).abs() <= 1e-5 * y.abs(),
                        "{what}: factor {j}: {x} vs {y}"
                    );
                }
                assert_eq!(
                    (got.clipped, got.nonfinite),
                    (want.clipped, want.nonfinite),
                    "{what}: counts"
                );
            }
        }
    }
}

#[test]
fn f32_clipping_matches_the_reference_on_every_backend() {
    conformance::<f32>();
}

#[test]
fn f16_clipping_matches_the_reference_on_every_backend() {
    conformance::<f16>();
}

#[test]
fn bf16_clipping_matches_the_reference_on_every_backend() {
    conformance::<bf16>();
}

/// Noise on is bit for bit `add_gaussian` applied to the noiseless sum, on every backend.
#[test]
fn noise_is_add_gaussian_of_the_noiseless_sum() {
    for (name, dev) in common::devices() {
        for (b, d) in [(3, 1), (5, 1100), (64, 777)] {
            let g = gradients::<f32>(b, d, 17);
            let n = ClipNoise {
                multiplier: 0.9,
                seed: 0xfeed,
                stream: 4,
                offset: (1 << 32) - 5,
            };
            let quiet = clip_on::<f32>(dev, &g, b, &[0, d], &[1.3], &ClipOptions::default());
            let opts = ClipOptions {
                noise: Some(n),
                ..ClipOptions::default()
            };
            let noisy = clip_on::<f32>(dev, &g, b, &[0, d], &[1.3], &opts);
            let mut x = dev.upload(&quiet.sum).unwrap();
            let std = 0.9f32 * 1.3f32;
            let gauss = Gaussian {
                std,
                seed: n.seed,
                stream: n.stream,
                offset: n.offset,
            };
            noise::add_gaussian(dev, &mut x, &gauss).unwrap();
            let want = x.download().unwrap();
            for (k, (got, want)) in noisy.sum.iter().zip(&want).enumerate() {
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{name} B={b} d={d}: element {k}: {got} vs {want}"
                );
            }
        }
    }
}

/// A clipper copies host bounds to the device only when they change; every change must count.
#[test]
fn host_bounds_follow_every_change() {
    for (name, dev) in common::devices() {
        let (b, d) = (6, 40);
        let g = gradients::<f32>(b, d, 23);
        let grads = dev.upload(&g).unwrap();
        let mut c = Clipper::flat(dev, b, d).unwrap();
        let (mut s, mut n) = (dev.zeros(d).unwrap(), dev.zeros(b).unwrap());
        for bound in [1.3f32, 0.5, 0.5, 1.3, f32::INFINITY] {
            let opts = ClipOptions::default();
            c.run(&grads, Bounds::Host(&[bound]), &opts, &mut s, &mut n)
                .unwrap();
            let fresh = clip_on::<f32>(dev, &g, b, &[0, d], &[bound], &opts);
            assert_eq!(s.download().unwrap(), fresh.sum, "{name}: C = {bound}");
        }
    }
}

/// The weight gradient of example i explicitly: (G_i^T A_i)[r, c] = sum_t g[t, r] a[t, c].
fn explicit_sq_norm(a: &[f32], g: &[f32], t: usize, p: usize, q: usize, bias: bool) -> f64 {
    let mut total = 0.0;
    for r in 0..q {
        for c in 0..p {
            let m: f64 = (0..t)
                .map(|s| f64::from(g[s * q + r]) * f64::from(a[s * p + c]))
                .sum();
            total += m * m;
        }
        if bias {
            let s: f64 = (0..t).map(|s| f64::from(g[s * q + r])).sum();
            total += s * s;
        }
    }
    total
}

#[test]
fn ghost_norms_equal_explicit_per_example_gradients_on_every_backend() {
    let shapes = [
        (1, 1, 1, 1),
        (3, 1, 20, 7),
        (4, 5, 9, 300),
        (2, 70, 3, 4),
        (64, 3, 33, 17),
    ];
    for (name, dev) in common::devices() {
        for &(b, t, p, q) in &shapes {
            let shape = GhostShape {
                batch: b,
                positions: t,
                inputs: p,
                outputs: q,
            };
            let a = values(b * t * p, 1 + p as u64);
            let g = values(b * t * q, 2 + q as u64);
            for method in [GhostMethod::Gram, GhostMethod::Direct] {
                for bias in [false, true] {
                    let what = format!("{name} {shape:?} {method:?} bias={bias}");
                    let (ab, gb) = (dev.upload(&a).unwrap(), dev.upload(&g).unwrap());
                    let mut out = dev.upload(&vec![f32::NAN; b]).unwrap();
                    let r = ghost_norms_by(dev, &ab, &gb, &shape, bias, method, &mut out);
                    // One example must fit one binding; the 4 KiB test device holds 512 f32.
                    if name == "wgpu/4KiB-chunks" && t * p.max(q) > 512 {
                        assert!(matches!(r, Err(Error::LimitExceeded { .. })), "{what}");
                        continue;
                    }
                    r.unwrap();
                    let got = out.download().unwrap();
                    for i in 0..b {
                        let want = explicit_sq_norm(
                            &a[i * t * p..(i + 1) * t * p],
                            &g[i * t * q..(i + 1) * t * q],
                            t,
                            p,
                            q,
                            bias,
                        );
                        let tol = if name == "cpu" { 1e-6 } else { 1e-5 };
                        let err = (f64::from(got[i]) - want).abs();
                        assert!(
                            err <= tol * want,
                            "{what}: example {i}: {} vs {want}",
                            got[i]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn ghost_reduction_gives_per_example_factors_on_every_backend() {
    let (b, layers) = (300, 3);
    let mut sq: Vec<f32> = values(b * layers, 8).iter().map(|x| 4.0 * x * x).collect();
    sq[7 * layers + 1] = f32::INFINITY;
    for (name, dev) in common::devices() {
        let mut r = GhostReducer::new(dev, b, layers).unwrap();
        let s = dev.upload(&sq).unwrap();
        let mut norms = dev.upload(&vec![f32::NAN; b]).unwrap();
        let mut factors = dev.upload(&vec![f32::NAN; b]).unwrap();
        r.run(
            &s,
            Bounds::Host(&[2.1]),
            ClipRule::Exact,
            &mut norms,
            &mut factors,
        )
        .unwrap();
        let (n, f) = (norms.download().unwrap(), factors.download().unwrap());
        let mut clipped = 0;
        for i in 0..b {
            let want: f64 = sq[i * layers..(i + 1) * layers]
                .iter()
                .map(|&x| f64::from(x))
                .sum::<f64>()
                .sqrt();
            if i == 7 {
                assert_eq!((n[i], f[i]), (f32::INFINITY, 0.0), "{name}");
                clipped += 1;
                continue;
            }
            assert!(
                (f64::from(n[i]) - want).abs() <= 1e-6 * want,
                "{name}: norm {i}"
            );
            let c = (2.1f64 / want).min(1.0);
            assert!((f64::from(f[i]) - c).abs() <= 1e-6, "{name}: factor {i}");
            clipped += u32::from(c < 1.0);
        }
        let counts = r.counts().unwrap();
        assert_eq!((counts.clipped, counts.nonfinite), (clipped, 1), "{name}");
    }
}

#[test]
fn adaptive_update_is_the_formula() {
    // sigma_b = 0: the update is exactly C exp(-eta (b - gamma)) or C - eta (b - gamma).
    let mut a = AdaptiveClip::new(40, 3, 4);
    a.count_noise = 0.0;
    let b = (40.0 - 13.0) / 40.0;
    let want = (2.5f64 * (-0.2f64 * (b - 0.5)).exp()) as f32;
    assert_eq!(a.next(13, 40, 2.5, 0).unwrap(), want);
    a.update = Update::Linear;
    assert_eq!(
        a.next(13, 40, 2.5, 9).unwrap(),
        (2.5 - 0.2 * (b - 0.5)) as f32
    );
    a.min = 2.48;
    assert_eq!(a.next(13, 40, 2.5, 9).unwrap(), 2.48);

    // With noise, the count noise is the Gaussian of index `step` in the adaptive stream.
    let a = AdaptiveClip::new(40, 3, 4);
    let mut z = vec![0.0f32; 8];
    rng::gaussians_into(3, 4, 0, &mut z);
    let bn = (27.0 + 2.0 * f64::from(z[5])) / 40.0;
    let want = (2.5f64 * (-0.2f64 * (bn - 0.5)).exp()) as f32;
    assert_eq!(a.next(13, 40, 2.5, 5).unwrap(), want);
}

/// Every backend's on-device update against the reference, and C converging to the target
/// quantile. The norms are |x| of one-column rows with x uniform in [-10, 10), so the median
/// norm is 5. Starting from C = 1 with the defaults (eta 0.2, sigma_b = B / 20), log C moves by
/// about 0.014 per step and reverts at rate about 0.1, so its stationary spread is about 0.03;
/// the mean of the last 100 bounds lies within 6% of 5 except with probability far below 1e-9.
#[test]
fn adaptive_clip_tracks_the_median_on_every_backend() {
    let (b, steps) = (100, 250);
    for (name, dev) in common::devices() {
        let mut clipper = Clipper::flat(dev, b, 1).unwrap();
        let mut adaptive = AdaptiveClip::new(b, 77, 1);
        adaptive.max = 50.0;
        let mut bound = dev.upload(&[1.0f32]).unwrap();
        let (mut sum, mut norms) = (dev.zeros(1).unwrap(), dev.zeros(b).unwrap());
        let mut tail = 0.0f64;
        let mut c_ref = 1.0f32;
        for step in 0..steps {
            let x: Vec<f32> = values(b, step).iter().map(|v| 10.0 * v).collect();
            let grads = dev.upload(&x).unwrap();
            clipper
                .run(
                    &grads,
                    Bounds::Device(&bound),
                    &ClipOptions::default(),
                    &mut sum,
                    &mut norms,
                )
                .unwrap();
            adaptive
                .update(dev, clipper.stats(), b, &mut bound, step)
                .unwrap();
            let c = bound.download().unwrap()[0];
            // The reference from the same count, one step at a time (no drift between them).
            let clipped = x.iter().filter(|v| v.abs() > c_ref).count() as u32;
            let want = adaptive.next(clipped, b, c_ref, step).unwrap();
            assert!(
                (c - want).abs() <= 1e-5 * want,
                "{name}: step {step}: bound {c} vs reference {want}"
            );
            c_ref = c;
            if step >= steps - 100 {
                tail += f64::from(c) / 100.0;
            }
        }
        assert!((tail - 5.0).abs() <= 0.3, "{name}: mean bound {tail}");
    }
}

#[test]
fn split_noise_multiplier_exists_only_below_twice_sigma_b() {
    let z = split_noise_multiplier(1.0, 5.0).unwrap();
    assert!((z - (1.0f64 - 0.01).powf(-0.5)).abs() < 1e-15);
    let e = split_noise_multiplier(10.0, 5.0).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("z = 10") && msg.contains("sigma_b = 5"),
        "{msg}"
    );
    assert!(split_noise_multiplier(1.0, 0.0).is_err());
}

#[test]
fn a_bad_device_bound_poisons_the_sum_and_reports() {
    for (name, dev) in common::devices() {
        let (b, d) = (3, 10);
        let grads = dev.upload(&gradients::<f32>(b, d, 1)).unwrap();
        let mut c = Clipper::flat(dev, b, d).unwrap();
        let (mut s, mut n) = (dev.zeros(d).unwrap(), dev.zeros(b).unwrap());
        let bound = dev.upload(&[-1.0f32]).unwrap();
        let r = c.run(
            &grads,
            Bounds::Device(&bound),
            &ClipOptions::default(),
            &mut s,
            &mut n,
        );
        if matches!(dev, Device::Cpu) {
            // The CPU sees the value and refuses it up front.
            assert!(matches!(r, Err(Error::InvalidArgument { .. })), "{name}");
            continue;
        }
        r.unwrap();
        assert!(s.download().unwrap().iter().all(|x| x.is_nan()), "{name}");
        let e = c.counts().unwrap_err().to_string();
        assert!(e.contains("negative or NaN"), "{name}: {e}");
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let cpu = Device::cpu();
    let msg = |r: Result<(), Error>| r.unwrap_err().to_string();
    let to_unit = |r: Result<Clipper, Error>| r.map(|_| ());
    assert!(msg(to_unit(Clipper::grouped(&cpu, 2, &[0, 3, 3]))).contains("strictly increase"));
    assert!(msg(to_unit(Clipper::grouped(&cpu, 2, &[1, 3]))).contains("start at 0"));
    assert!(msg(to_unit(Clipper::grouped(&cpu, 2, &[0]))).contains("at least one group"));
    assert!(msg(to_unit(Clipper::flat(&cpu, 0, 3))).contains("batch"));

    let mut c = Clipper::flat(&cpu, 2, 3).unwrap();
    let g = cpu.upload(&[1.0f32; 6]).unwrap();
    let (mut s, mut n) = (cpu.zeros(3).unwrap(), cpu.zeros(2).unwrap());
    let opts = ClipOptions::default();
    let short = cpu.upload(&[1.0f32; 5]).unwrap();
    let e = msg(c.run(&short, Bounds::Host(&[1.0]), &opts, &mut s, &mut n));
    assert!(e.contains("clip") && e.contains("grads"), "{e}");
    let e = msg(c.run(&g, Bounds::Host(&[-1.0]), &opts, &mut s, &mut n));
    assert!(e.contains("C[0]") && e.contains("-1"), "{e}");
    let e = msg(c.run(&g, Bounds::Host(&[f32::NAN]), &opts, &mut s, &mut n));
    assert!(e.contains("NaN"), "{e}");
    let e = msg(c.run(&g, Bounds::Host(&[1.0, 2.0]), &opts, &mut s, &mut n));
    assert!(e.contains("bounds"), "{e}");
    let noisy = ClipOptions {
        noise: Some(ClipNoise {
            multiplier: -1.0,
            seed: 0,
            stream: 0,
            offset: 0,
        }),
        ..opts
    };
    let e = msg(c.run(&g, Bounds::Host(&[1.0]), &noisy, &mut s, &mut n));
    assert!(e.contains("noise multiplier"), "{e}");
    let mut wrong = cpu.zeros(4).unwrap();
    let e = msg(c.run(&g, Bounds::Host(&[1.0]), &opts, &mut wrong, &mut n));
    assert!(e.contains("sum"), "{e}");

    let shape = GhostShape {
        batch: 2,
        positions: 0,
        inputs: 3,
        outputs: 1,
    };
    let a = cpu.zeros::<f32>(0).unwrap();
    let mut out = cpu.zeros(2).unwrap();
    let e = msg(ghost_norms_by(
        &cpu,
        &a,
        &a,
        &shape,
        false,
        GhostMethod::Gram,
        &mut out,
    ));
    assert!(e.contains("positions T"), "{e}");

    let mut a = AdaptiveClip::new(10, 0, 0);
    a.target_quantile = 1.5;
    let stats = cpu.zeros::<u32>(4).unwrap();
    let mut bound = cpu.upload(&[1.0f32]).unwrap();
    let e = msg(a.update(&cpu, &stats, 10, &mut bound, 0));
    assert!(e.contains("quantile"), "{e}");
}
