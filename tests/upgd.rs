//! UPGD: the CPU reference against a straight-line transcription of the public optimizers'
//! rules (tensor by tensor, as their Python loops run), statistics of the noise, save/restore,
//! and bad input.

mod common;

use trainkern::upgd::{Hyper, Role, Rule, STREAM_TAG, Scaling, TensorSpec, Upgd, Variant};
use trainkern::{Device, Error, rng};

/// A model of uneven tensors: a 1-element tensor, a 3x5 "Linear" weight, a bias, a tensor with
/// rows of 1 (every element its own row), and a larger one.
fn layout() -> (Vec<TensorSpec>, usize) {
    let specs = vec![
        TensorSpec {
            offset: 0,
            len: 1,
            last_dim: 1,
        },
        TensorSpec {
            offset: 1,
            len: 15,
            last_dim: 5,
        },
        TensorSpec {
            offset: 16,
            len: 7,
            last_dim: 7,
        },
        TensorSpec {
            offset: 23,
            len: 4,
            last_dim: 1,
        },
        TensorSpec {
            offset: 30,
            len: 600,
            last_dim: 24,
        },
    ];
    (specs, 640)
}

fn data(n: usize, salt: u64, scale: f32) -> Vec<f32> {
    let mut w = vec![0u32; n];
    rng::words_into(salt, 1, 0, &mut w);
    w.iter()
        .map(|&x| scale * (2.0 * rng::uniform(x) - 1.0))
        .collect()
}

/// The public optimizer's step, transcribed: first loop (traces and max), second loop
/// (update), plain f32 scalars, one tensor at a time.
#[allow(clippy::too_many_arguments)]
fn transcribed_step(
    variant: Variant,
    hp: Hyper,
    specs: &[TensorSpec],
    seed: u64,
    t: u64,
    w: &mut [f32],
    g: &[f32],
    h: Option<&[f32]>,
    u: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    scale_by: Option<&Reductions>,
) -> Reductions {
    let beta = hp.beta_utility;
    let mut global_max = f32::NEG_INFINITY;
    for s in specs {
        let mut tensor_max = f32::NEG_INFINITY;
        for i in s.offset..s.offset + s.len {
            let util = match h {
                Some(h) => 0.5 * h[i] * (w[i] * w[i]) - g[i] * w[i],
                None => -g[i] * w[i],
            };
            u[i] = u[i] * beta + ((1.0 - f64::from(beta)) as f32) * util;
            tensor_max = tensor_max.max(u[i]);
        }
        if tensor_max > global_max {
            global_max = tensor_max;
        }
    }
    let bc = (1.0 - f64::from(beta).powf(t as f64)) as f32;
    let decay = (1.0 - f64::from(hp.lr) * f64::from(hp.weight_decay)) as f32;
    let mut z = vec![0f32; w.len()];
    rng::gaussians_into(seed, STREAM_TAG | t, 0, &mut z);
    // This step's reductions: the maximum and every row's norm of u / bc.
    let norms: Vec<Vec<f32>> = specs
        .iter()
        .map(|s| {
            u[s.offset..s.offset + s.len]
                .chunks(s.last_dim)
                .map(|row| {
                    let ss: f64 = row.iter().map(|&x| f64::from(x / bc).powi(2)).sum();
                    (ss.sqrt() as f32).max(1e-12)
                })
                .collect()
        })
        .collect();
    let current = (global_max, norms);
    // The one-pass mode scales by the previous step's.
    let (global_max, norms) = scale_by.unwrap_or(&current).clone();
    for (si, s) in specs.iter().enumerate() {
        let r = s.offset..s.offset + s.len;
        let scaled: Vec<f32> = match variant.scaling() {
            Scaling::Global => r
                .clone()
                .map(|i| {
                    if global_max == 0.0 {
                        0.5
                    } else {
                        1.0 / (1.0 + (-((u[i] / bc) / global_max)).exp())
                    }
                })
                .collect(),
            Scaling::Local => r
                .clone()
                .map(|i| {
                    let norm = norms[si][(i - s.offset) / s.last_dim];
                    1.0 / (1.0 + (-((u[i] / bc) / norm)).exp())
                })
                .collect(),
        };
        for (k, i) in r.enumerate() {
            let noise = z[i] * hp.sigma;
            w[i] *= decay;
            match variant {
                Variant::Upgd {
                    rule: Rule::Protect,
                    ..
                } => {
                    w[i] += -hp.lr * ((g[i] + noise) * (1.0 - scaled[k]));
                }
                Variant::Upgd {
                    rule: Rule::NoProtect,
                    ..
                } => {
                    w[i] += -hp.lr * (g[i] + noise * (1.0 - scaled[k]));
                }
                Variant::Adaptive {
                    k: ks,
                    beta1,
                    beta2,
                    eps,
                } => {
                    m[i] = m[i] * beta1 + ((1.0 - f64::from(beta1)) as f32) * g[i];
                    v[i] = v[i] * beta2 + ((1.0 - f64::from(beta2)) as f32) * (g[i] * g[i]);
                    let bc1 = (1.0 - f64::from(beta1).powf(t as f64)) as f32;
                    let bc2 = (1.0 - f64::from(beta2).powf(t as f64)).sqrt() as f32;
                    let denom = v[i].sqrt() / bc2 + eps;
                    let lr = (-(f64::from(ks) * f64::from(hp.lr))) as f32;
                    w[i] += lr * ((m[i] / denom / bc1 + noise) * (1.0 - scaled[k]));
                }
            }
        }
    }
    current
}

/// A step's maximum raw trace and per-tensor row norms.
type Reductions = (f32, Vec<Vec<f32>>);

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-5 * (1.0 + b.abs()) || (a.is_nan() && b.is_nan())
}

fn run_against_transcription(variant: Variant, hp: Hyper, steps: u64, g_scale: f32) {
    run_transcription(variant, hp, steps, g_scale, false);
}

fn run_transcription(variant: Variant, hp: Hyper, steps: u64, g_scale: f32, one_pass: bool) {
    run_transcription_of(layout(), variant, hp, steps, g_scale, one_pass);
}

fn run_transcription_of(
    (specs, n): (Vec<TensorSpec>, usize),
    variant: Variant,
    hp: Hyper,
    steps: u64,
    g_scale: f32,
    one_pass: bool,
) {
    let dev = Device::cpu();
    let seed = 77;
    let mut opt = Upgd::new(&dev, variant, hp, &specs, n, seed).unwrap();
    opt.set_one_pass(one_pass).unwrap();
    let mut prev: Option<Reductions> = None;
    let mut w_ref = data(n, 1, 1.0);
    let mut w = dev.upload(&w_ref).unwrap();
    let (mut u, mut m, mut v) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    for t in 1..=steps {
        let g_host = data(n, 100 + t, g_scale);
        let h_host = data(n, 200 + t, 2.0);
        let g = dev.upload(&g_host).unwrap();
        let h = dev.upload(&h_host).unwrap();
        let hopt = variant.second_order().then_some(&h);
        opt.step(&mut w, &g, hopt).unwrap();
        let href = variant.second_order().then_some(h_host.as_slice());
        let scale_by = if one_pass { prev.as_ref() } else { None };
        let current = transcribed_step(
            variant, hp, &specs, seed, t, &mut w_ref, &g_host, href, &mut u, &mut m, &mut v,
            scale_by,
        );
        prev = Some(current);
        let got = w.download().unwrap();
        for (i, (a, b)) in got.iter().zip(&w_ref).enumerate() {
            assert!(
                close(*a, *b),
                "{} step {t} weight {i}: {a} vs {b}",
                variant.name()
            );
        }
        let ut = opt.utility().unwrap();
        for (i, (a, b)) in ut.iter().zip(&u).enumerate() {
            assert!(
                close(*a, *b),
                "{} step {t} trace {i}: {a} vs {b}",
                variant.name()
            );
        }
    }
}

#[test]
fn every_variant_matches_the_transcription_without_noise() {
    let hp = Hyper {
        lr: 0.01,
        weight_decay: 0.1,
        beta_utility: 0.9,
        sigma: 0.0,
    };
    for variant in Variant::all() {
        run_against_transcription(variant, hp, 6, 1.0);
    }
}

#[test]
fn every_variant_matches_the_transcription_with_noise() {
    // beta = 0.999: bc is tiny in the early steps, so the global gate is almost hard 0/1.
    let hp = Hyper {
        lr: 0.01,
        weight_decay: 0.0,
        beta_utility: 0.999,
        sigma: 0.5,
    };
    for variant in Variant::all() {
        run_against_transcription(variant, hp, 4, 1.0);
    }
    let hp = Hyper {
        beta_utility: 0.0,
        ..hp
    };
    for variant in Variant::all() {
        run_against_transcription(variant, hp, 3, 1.0);
    }
}

/// Local scaling's row sums are taken in three ways on the CPU (rows up to 2048 elements in
/// blocks of rows as they are traced, rows up to 16 384 one at a time as they are traced, longer
/// rows in a pass of their own); each against the transcription, with rows that straddle the
/// chunks of a tensor, in both modes.
#[test]
fn local_rows_of_every_length_match_the_transcription() {
    let tensor = |offset, len, last_dim| TensorSpec {
        offset,
        len,
        last_dim,
    };
    let specs = vec![
        tensor(0, 35_000, 7),
        tensor(35_000, 9_000, 3_000),
        tensor(44_000, 40_000, 20_000),
        tensor(84_000, 20_000, 1),
        tensor(104_000, 2_049, 2_049),
    ];
    let hp = Hyper {
        lr: 0.01,
        weight_decay: 0.1,
        beta_utility: 0.9,
        sigma: 0.5,
    };
    let local = Variant::all()
        .into_iter()
        .filter(|v| v.scaling() == Scaling::Local);
    for variant in local {
        for one_pass in [false, true] {
            run_transcription_of((specs.clone(), 106_049), variant, hp, 3, 1.0, one_pass);
        }
    }
}

#[test]
fn eta_zero_gives_one_half_and_eta_negative_flips_the_order() {
    let (specs, n) = layout();
    let dev = Device::cpu();
    let variant = Variant::parse("first-global-protect").unwrap();
    let hp = Hyper {
        lr: 1.0,
        weight_decay: 0.0,
        beta_utility: 0.0,
        sigma: 0.0,
    };
    // g = 0: every utility is 0, eta == 0, s = 0.5 everywhere (the documented deviation).
    let mut opt = Upgd::new(&dev, variant, hp, &specs, n, 1).unwrap();
    let mut w = dev.upload(&vec![1.0f32; n]).unwrap();
    let g = dev.upload(&vec![0.0f32; n]).unwrap();
    opt.step(&mut w, &g, None).unwrap();
    assert!(
        w.download().unwrap().iter().all(|&x| x == 1.0),
        "no NaN where eta == 0"
    );
    run_against_transcription(variant, hp, 2, 0.0);
    // All utilities negative (g w > 0 everywhere): eta < 0, and the transcription agrees.
    let mut opt = Upgd::new(&dev, variant, hp, &specs, n, 1).unwrap();
    let mut w = dev.upload(&vec![1.0f32; n]).unwrap();
    let gv: Vec<f32> = (0..n).map(|i| 0.5 + i as f32 / n as f32).collect();
    let g = dev.upload(&gv).unwrap();
    opt.step(&mut w, &g, None).unwrap();
    let u = opt.utility().unwrap();
    for sp in &specs {
        assert!(u[sp.offset..sp.offset + sp.len].iter().all(|&x| x < 0.0));
    }
    let got = w.download().unwrap();
    // eta = max(u) = -0.5 (the smallest |g|); s = sigmoid(u / eta) = sigmoid(2 g): larger
    // gradients gate harder, the reverse of the positive case.
    for i in [0usize, 100, 629] {
        let s = 1.0 / (1.0 + (-(gv[i] / 0.5)).exp());
        let want = 1.0 - gv[i] * (1.0 - s);
        assert!(close(got[i], want), "weight {i}: {} vs {want}", got[i]);
    }
    assert_eq!(got[639], 1.0, "elements outside every tensor are untouched");
}

#[test]
fn local_rows_with_zero_norm_stay_finite() {
    let (specs, n) = layout();
    let dev = Device::cpu();
    let variant = Variant::parse("first-local-protect").unwrap();
    let hp = Hyper {
        lr: 0.1,
        weight_decay: 0.0,
        beta_utility: 0.5,
        sigma: 0.0,
    };
    let mut opt = Upgd::new(&dev, variant, hp, &specs, n, 1).unwrap();
    let mut w = dev.upload(&data(n, 3, 1.0)).unwrap();
    // Gradients zero on tensor 1: its rows have zero norm, the 1e-12 floor applies, s = 0.5.
    let mut gv = data(n, 4, 1.0);
    gv[1..16].iter_mut().for_each(|x| *x = 0.0);
    let g = dev.upload(&gv).unwrap();
    let before = w.download().unwrap();
    opt.step(&mut w, &g, None).unwrap();
    let after = w.download().unwrap();
    assert!(after.iter().all(|x| x.is_finite()));
    assert_eq!(
        &after[1..16],
        &before[1..16],
        "zero gradient, no noise: unchanged"
    );
    run_against_transcription(variant, hp, 3, 1.0);
}

#[test]
fn noise_std_is_lr_sigma_one_minus_s() {
    // Second order with g = 0 and the same w, h everywhere: every trace is equal, so eta is
    // that trace and s = sigmoid(1 / bc) = sigmoid(1) with beta = 0. The update is then
    // -lr * sigma * z * (1 - s): its standard deviation over N = 2^20 weights is lr sigma (1 - s)
    // within 6 standard errors (sd of a sample sd ~ 1/sqrt(2N) relative), a false alarm rate
    // of 2e-9; its mean is 0 within 6 / sqrt(N).
    let n = 1 << 20;
    let specs = [TensorSpec {
        offset: 0,
        len: n,
        last_dim: 1024,
    }];
    let dev = Device::cpu();
    let hp = Hyper {
        lr: 0.1,
        weight_decay: 0.0,
        beta_utility: 0.0,
        sigma: 2.0,
    };
    let variant = Variant::parse("second-global-protect").unwrap();
    let mut opt = Upgd::new(&dev, variant, hp, &specs, n, 99).unwrap();
    let mut w = dev.upload(&vec![1.0f32; n]).unwrap();
    let g = dev.upload(&vec![0.0f32; n]).unwrap();
    let h = dev.upload(&vec![1.0f32; n]).unwrap();
    opt.step(&mut w, &g, Some(&h)).unwrap();
    let d: Vec<f64> = w
        .download()
        .unwrap()
        .iter()
        .map(|&x| f64::from(x) - 1.0)
        .collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
    let s = 1.0 / (1.0 + (-1.0f64).exp());
    let want = 0.1 * 2.0 * (1.0 - s);
    let rel = sd / want - 1.0;
    println!("update sd {sd:.6} vs {want:.6} ({rel:+.2e}), mean {mean:+.2e}");
    assert!(rel.abs() < 6.0 / (2.0 * n as f64).sqrt(), "{rel}");
    assert!(mean.abs() < 6.0 * want / (n as f64).sqrt(), "{mean}");
}

#[test]
fn save_and_restore_continue_identically() {
    let (specs, n) = layout();
    let dev = Device::cpu();
    for variant in [
        Variant::parse("second-local-noprotect").unwrap(),
        Variant::parse("adaptive").unwrap(),
    ] {
        let hp = Hyper {
            lr: 0.01,
            weight_decay: 0.01,
            beta_utility: 0.9,
            sigma: 0.1,
        };
        let mut a = Upgd::new(&dev, variant, hp, &specs, n, 5).unwrap();
        let mut wa = dev.upload(&data(n, 9, 1.0)).unwrap();
        let gs: Vec<_> = (0..6)
            .map(|t| dev.upload(&data(n, 50 + t, 1.0)).unwrap())
            .collect();
        let h = dev.upload(&data(n, 7, 1.0)).unwrap();
        let hh = variant.second_order().then_some(&h);
        for g in &gs[..3] {
            a.step(&mut wa, g, hh).unwrap();
        }
        let saved = a.save().unwrap();
        let mut b = Upgd::restore(&dev, &saved).unwrap();
        assert_eq!(b.steps(), 3);
        let mut wb = dev.upload(&wa.download().unwrap()).unwrap();
        for g in &gs[3..] {
            a.step(&mut wa, g, hh).unwrap();
            b.step(&mut wb, g, hh).unwrap();
        }
        assert_eq!(
            wa.download().unwrap(),
            wb.download().unwrap(),
            "{}",
            variant.name()
        );
        assert!(Upgd::restore(&dev, &saved[..saved.len() - 1]).is_err());
        assert!(Upgd::restore(&dev, b"not a state").is_err());
    }
}

#[test]
fn nonfinite_gradients_are_counted() {
    let (specs, n) = layout();
    let dev = Device::cpu();
    let mut opt = Upgd::new(
        &dev,
        Variant::parse("first-global-protect").unwrap(),
        Hyper::default(),
        &specs,
        n,
        1,
    )
    .unwrap();
    let mut gv = data(n, 1, 1.0);
    gv[3] = f32::NAN;
    gv[40] = f32::INFINITY;
    let mut w = dev.upload(&data(n, 2, 1.0)).unwrap();
    opt.step(&mut w, &dev.upload(&gv).unwrap(), None).unwrap();
    assert_eq!(opt.nonfinite().unwrap(), 2);
}

#[test]
fn bad_input_is_a_clear_error() {
    let (specs, n) = layout();
    let dev = Device::cpu();
    let v = Variant::parse("first-global-protect").unwrap();
    let hp = Hyper::default();
    let err = |r: Result<Upgd, Error>, what: &str| {
        let e = r.err().expect("an error");
        assert!(e.to_string().contains(what), "{e}");
    };
    err(
        Upgd::new(
            &dev,
            v,
            Hyper {
                beta_utility: 1.0,
                ..hp
            },
            &specs,
            n,
            1,
        ),
        "beta_utility",
    );
    err(
        Upgd::new(&dev, v, Hyper { sigma: -1.0, ..hp }, &specs, n, 1),
        "sigma",
    );
    err(
        Upgd::new(&dev, v, Hyper { lr: f32::NAN, ..hp }, &specs, n, 1),
        "lr",
    );
    err(
        Upgd::new(
            &dev,
            v,
            hp,
            &[TensorSpec {
                offset: 0,
                len: 10,
                last_dim: 3,
            }],
            10,
            1,
        ),
        "last_dim",
    );
    err(
        Upgd::new(
            &dev,
            v,
            hp,
            &[TensorSpec {
                offset: 5,
                len: 10,
                last_dim: 5,
            }],
            10,
            1,
        ),
        "outside",
    );
    err(
        Upgd::new(
            &dev,
            v,
            hp,
            &[
                TensorSpec {
                    offset: 0,
                    len: 4,
                    last_dim: 2,
                },
                TensorSpec {
                    offset: 2,
                    len: 4,
                    last_dim: 2,
                },
            ],
            10,
            1,
        ),
        "overlaps",
    );
    assert!(Variant::parse("third-global-protect").is_err());
    let mut opt = Upgd::new(&dev, v, hp, &specs, n, 1).unwrap();
    let mut w = dev.upload(&vec![0f32; n]).unwrap();
    let short = dev.upload(&vec![0f32; n - 1]).unwrap();
    let e = opt.step(&mut w, &short, None).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Shape {
                op: "upgd",
                arg: "g",
                ..
            }
        ),
        "{e}"
    );
    let g = dev.upload(&vec![0f32; n]).unwrap();
    let e = opt.step(&mut w, &g, Some(&g)).unwrap_err();
    assert!(e.to_string().contains("second-order"), "{e}");
    let mut second = Upgd::new(
        &dev,
        Variant::parse("second-global-protect").unwrap(),
        hp,
        &specs,
        n,
        1,
    )
    .unwrap();
    assert!(second.step(&mut w, &g, None).is_err());
    assert_eq!(opt.steps(), 0, "a refused step does not count");
    for name in ["first-global-protect", "second-local-noprotect", "adaptive"] {
        assert_eq!(Variant::parse(name).unwrap().name(), name);
    }
}

/// Uneven tensors for the device kernels: one element; rows of 1; rows of 100 that straddle the
/// 256-element chunks; a bias; a gap between tensors.
fn device_layout() -> (Vec<TensorSpec>, usize) {
    let specs = vec![
        TensorSpec {
            offset: 0,
            len: 1,
            last_dim: 1,
        },
        TensorSpec {
            offset: 1,
            len: 300,
            last_dim: 1,
        },
        TensorSpec {
            offset: 301,
            len: 1000,
            last_dim: 100,
        },
        TensorSpec {
            offset: 1301,
            len: 37,
            last_dim: 37,
        },
        TensorSpec {
            offset: 1400,
            len: 777,
            last_dim: 7,
        },
    ];
    (specs, 2200)
}

/// Whether `dev` binds so little (the 4 KiB test device) that the model's chunk table or row
/// sums do not fit one binding, which UPGD on wgpu refuses with LimitExceeded (checked here).
fn refuses_small_bindings(dev: &Device, name: &str) -> bool {
    let (specs, n) = device_layout();
    match Upgd::new(dev, Variant::all()[2], Hyper::default(), &specs, n, 1) {
        Ok(mut o) => {
            let mut w = dev.zeros::<f32>(n).unwrap();
            match o.step(&mut w, &dev.zeros::<f32>(n).unwrap(), None) {
                Ok(()) => false,
                Err(e) => {
                    assert!(matches!(e, Error::LimitExceeded { .. }), "{name}: {e}");
                    eprintln!("NOT CHECKED on {name}: {e}");
                    true
                }
            }
        }
        Err(e) => panic!("{name}: {e}"),
    }
}

fn device_case<W: trainkern::Float, G: trainkern::Float>(
    dev: &Device,
    name: &str,
    variant: Variant,
) {
    let (specs, n) = device_layout();
    let hp = Hyper {
        lr: 0.05,
        weight_decay: 0.01,
        beta_utility: 0.9,
        sigma: 0.3,
    };
    let cpu = Device::cpu();
    let mut a = Upgd::new(&cpu, variant, hp, &specs, n, 11).unwrap();
    let mut b = Upgd::new(dev, variant, hp, &specs, n, 11).unwrap();
    let w0: Vec<W> = data(n, 3, 1.0).iter().map(|&x| W::from_f32(x)).collect();
    let mut wa = cpu.upload(&w0).unwrap();
    let mut wb = dev.upload(&w0).unwrap();
    for t in 0..3u64 {
        let gv: Vec<G> = data(n, 20 + t, 1.0)
            .iter()
            .map(|&x| G::from_f32(x))
            .collect();
        let hv: Vec<G> = data(n, 40 + t, 1.0)
            .iter()
            .map(|&x| G::from_f32(x))
            .collect();
        let (ga, ha) = (cpu.upload(&gv).unwrap(), cpu.upload(&hv).unwrap());
        let (gb, hb) = (dev.upload(&gv).unwrap(), dev.upload(&hv).unwrap());
        let so = variant.second_order();
        a.step(&mut wa, &ga, so.then_some(&ha)).unwrap();
        b.step(&mut wb, &gb, so.then_some(&hb))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let what = format!(
            "{name} {} w {} g {} step {}",
            variant.name(),
            W::DTYPE,
            G::DTYPE,
            t + 1
        );
        let want: Vec<f64> = wa
            .download()
            .unwrap()
            .iter()
            .map(|x| f64::from(x.to_f32()))
            .collect();
        let got: Vec<f64> = wb
            .download()
            .unwrap()
            .iter()
            .map(|x| f64::from(x.to_f32()))
            .collect();
        if W::DTYPE == trainkern::DType::F32 {
            let e = trainkern::check::scaled_max_error(&got, &want);
            assert!(e <= 1e-5, "{what}: weights off by {e:e}");
        } else {
            let e = trainkern::check::rel_l2(&got, &want);
            assert!(e <= 1e-2, "{what}: weights relative L2 {e:e}");
        }
        let ua: Vec<f64> = a.utility().unwrap().iter().map(|&x| f64::from(x)).collect();
        let ub: Vec<f64> = b.utility().unwrap().iter().map(|&x| f64::from(x)).collect();
        let e = trainkern::check::rel_l2(&ub, &ua);
        assert!(e <= 1e-2, "{what}: traces relative L2 {e:e}");
        if W::DTYPE == trainkern::DType::F32 && G::DTYPE == trainkern::DType::F32 {
            let e = trainkern::check::scaled_max_error(&ub, &ua);
            assert!(e <= 1e-5, "{what}: traces off by {e:e}");
        }
    }
    assert_eq!(b.nonfinite().unwrap(), 0);
}

#[test]
fn every_backend_matches_the_reference() {
    use half::{bf16, f16};
    for (name, dev) in common::devices() {
        if dev.backend() == trainkern::Backend::Cpu {
            continue;
        }
        if refuses_small_bindings(dev, name) {
            continue;
        }
        for variant in Variant::all() {
            device_case::<f32, f32>(dev, name, variant);
        }
        let v = Variant::parse("second-local-protect").unwrap();
        device_case::<bf16, f16>(dev, name, v);
        device_case::<f32, bf16>(dev, name, Variant::parse("first-global-noprotect").unwrap());
        device_case::<bf16, bf16>(dev, name, Variant::parse("adaptive").unwrap());
    }
}

#[test]
fn device_counts_nonfinite_gradients_and_saves() {
    for (name, dev) in common::devices() {
        if dev.backend() != trainkern::Backend::Cpu && refuses_small_bindings(dev, name) {
            continue;
        }
        if dev.backend() == trainkern::Backend::Cpu {
            continue;
        }
        let (specs, n) = device_layout();
        let v = Variant::parse("second-global-protect").unwrap();
        let mut o = Upgd::new(dev, v, Hyper::default(), &specs, n, 1).unwrap();
        let mut gv = data(n, 1, 1.0);
        gv[5] = f32::NAN;
        let mut hv = data(n, 2, 1.0);
        hv[1500] = f32::NEG_INFINITY;
        let mut w = dev.upload(&data(n, 3, 1.0)).unwrap();
        o.step(
            &mut w,
            &dev.upload(&gv).unwrap(),
            Some(&dev.upload(&hv).unwrap()),
        )
        .unwrap();
        assert_eq!(o.nonfinite().unwrap(), 2, "{name}");
        let r = Upgd::restore(dev, &o.save().unwrap()).unwrap();
        assert_eq!(r.nonfinite().unwrap(), 2, "{name}");
        assert_eq!(r.steps(), 1);
    }
}

/// A small MLP for feature-level UPGD: fc1 (4x3 weight, bias 4) gated by gate1 (4 units), then
/// fc2 (2x4 weight, bias 2) with no gate after it.
fn mlp() -> (Vec<TensorSpec>, Vec<Role>, usize) {
    let specs = vec![
        TensorSpec {
            offset: 0,
            len: 12,
            last_dim: 3,
        },
        TensorSpec {
            offset: 12,
            len: 4,
            last_dim: 1,
        },
        TensorSpec {
            offset: 16,
            len: 4,
            last_dim: 4,
        },
        TensorSpec {
            offset: 20,
            len: 8,
            last_dim: 4,
        },
        TensorSpec {
            offset: 28,
            len: 2,
            last_dim: 1,
        },
    ];
    let roles = vec![
        Role::Gated { gate: 2 },
        Role::Gated { gate: 2 },
        Role::Gate,
        Role::Param,
        Role::Param,
    ];
    (specs, roles, 30)
}

/// The public feature-level optimizer's step, transcribed: traces on gates (forward order,
/// with the maximum), then the parameters in reverse order, a gate's scaled utility applying
/// to the bias and the weight before it (rows of the weight), other tensors plain SGD.
fn transcribed_feature_step(
    variant: Variant,
    hp: Hyper,
    seed: u64,
    t: u64,
    w: &mut [f32],
    g: &[f32],
    u: &mut [f32],
) {
    let (specs, roles, n) = mlp();
    let beta = hp.beta_utility;
    let mut global_max = f32::NEG_INFINITY;
    for (s, r) in specs.iter().zip(&roles) {
        if *r == Role::Gate {
            let mut mx = f32::NEG_INFINITY;
            for i in s.offset..s.offset + s.len {
                u[i] = u[i] * beta + ((1.0 - f64::from(beta)) as f32) * (-g[i] * w[i]);
                mx = mx.max(u[i]);
            }
            if mx > global_max {
                global_max = mx;
            }
        }
    }
    let bc = (1.0 - f64::from(beta).powf(t as f64)) as f32;
    let decay = (1.0 - f64::from(hp.lr) * f64::from(hp.weight_decay)) as f32;
    let mut z = vec![0f32; n];
    rng::gaussians_into(seed, STREAM_TAG | t, 0, &mut z);
    let mut gate_utility: Option<Vec<f32>> = None;
    for (s, r) in specs.iter().zip(&roles).rev() {
        if *r == Role::Gate {
            let x: Vec<f32> = (s.offset..s.offset + s.len).map(|i| u[i] / bc).collect();
            let su = match variant.scaling() {
                Scaling::Global => x
                    .iter()
                    .map(|&x| {
                        if global_max == 0.0 {
                            0.5
                        } else {
                            1.0 / (1.0 + (-(x / global_max)).exp())
                        }
                    })
                    .collect(),
                Scaling::Local => {
                    let norm = (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt() as f32)
                        .max(1e-12);
                    x.iter()
                        .map(|&v| 1.0 / (1.0 + (-(v / norm)).exp()))
                        .collect()
                }
            };
            gate_utility = Some(su);
            continue;
        }
        for i in s.offset..s.offset + s.len {
            w[i] *= decay;
            match &gate_utility {
                Some(su) => {
                    let sj = su[(i - s.offset) / s.last_dim];
                    let noise = z[i] * hp.sigma;
                    let d = match variant {
                        Variant::Upgd {
                            rule: Rule::Protect,
                            ..
                        } => (g[i] + noise) * (1.0 - sj),
                        _ => g[i] + noise * (1.0 - sj),
                    };
                    w[i] += -hp.lr * d;
                }
                None => w[i] += -hp.lr * g[i],
            }
        }
        if s.last_dim > 1 {
            gate_utility = None; // a weight matrix ends the gate's reach
        }
    }
}

#[test]
fn feature_level_matches_the_transcription() {
    let (specs, roles, n) = mlp();
    let hp = Hyper {
        lr: 0.05,
        weight_decay: 0.1,
        beta_utility: 0.8,
        sigma: 0.2,
    };
    for name in [
        "first-global-protect",
        "first-global-noprotect",
        "first-local-protect",
        "first-local-noprotect",
    ] {
        let variant = Variant::parse(name).unwrap();
        for (dname, dev) in common::devices() {
            let mut opt = Upgd::new_feature(dev, variant, hp, &specs, &roles, n, 3).unwrap();
            let mut w_ref = data(n, 8, 1.0);
            let mut w = dev.upload(&w_ref).unwrap();
            let mut u = vec![0f32; n];
            for t in 1..=4u64 {
                let gv = data(n, 60 + t, 1.0);
                opt.step(&mut w, &dev.upload(&gv).unwrap(), None).unwrap();
                transcribed_feature_step(variant, hp, 3, t, &mut w_ref, &gv, &mut u);
                let got = w.download().unwrap();
                for (i, (a, b)) in got.iter().zip(&w_ref).enumerate() {
                    assert!(
                        close(*a, *b),
                        "{dname} {name} step {t} weight {i}: {a} vs {b}"
                    );
                }
            }
            // Gates are never updated.
            assert_eq!(w.download().unwrap()[16..20], data(n, 8, 1.0)[16..20]);
            let saved = opt.save().unwrap();
            assert_eq!(Upgd::restore(dev, &saved).unwrap().steps(), 4, "{dname}");
        }
    }
}

#[test]
fn feature_level_layout_errors() {
    let (specs, roles, n) = mlp();
    let dev = Device::cpu();
    let v = Variant::parse("first-global-protect").unwrap();
    let hp = Hyper::default();
    let e = Upgd::new_feature(
        &dev,
        Variant::parse("adaptive").unwrap(),
        hp,
        &specs,
        &roles,
        n,
        1,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("adaptive"), "{e}");
    let mut r = roles.clone();
    r[0] = Role::Gated { gate: 3 };
    let e = Upgd::new_feature(&dev, v, hp, &specs, &r, n, 1)
        .err()
        .unwrap();
    assert!(e.to_string().contains("not a gate"), "{e}");
    let mut r = roles.clone();
    r[3] = Role::Gated { gate: 2 };
    let e = Upgd::new_feature(&dev, v, hp, &specs, &r, n, 1)
        .err()
        .unwrap();
    assert!(e.to_string().contains("units"), "{e}");
    let e = Upgd::new_feature(&dev, v, hp, &specs, &roles[..4], n, 1)
        .err()
        .unwrap();
    assert!(e.to_string().contains("roles"), "{e}");
}

#[test]
fn one_pass_mode_scales_by_the_previous_step() {
    let hp = Hyper {
        lr: 0.02,
        weight_decay: 0.05,
        beta_utility: 0.9,
        sigma: 0.3,
    };
    for variant in Variant::all() {
        run_transcription(variant, hp, 5, 1.0, true);
    }
    // Feature-level UPGD has no one-pass mode.
    let (specs, roles, n) = mlp();
    let mut o =
        Upgd::new_feature(&Device::cpu(), Variant::all()[0], hp, &specs, &roles, n, 1).unwrap();
    assert!(o.set_one_pass(true).is_err());
}

#[test]
fn one_pass_mode_on_every_backend_and_across_save_restore() {
    let (specs, n) = device_layout();
    let hp = Hyper {
        lr: 0.05,
        weight_decay: 0.01,
        beta_utility: 0.9,
        sigma: 0.3,
    };
    for (name, dev) in common::devices() {
        if dev.backend() != trainkern::Backend::Cpu && refuses_small_bindings(dev, name) {
            continue;
        }
        for variant in Variant::all() {
            let cpu = Device::cpu();
            let mut a = Upgd::new(&cpu, variant, hp, &specs, n, 5).unwrap();
            let mut b = Upgd::new(dev, variant, hp, &specs, n, 5).unwrap();
            a.set_one_pass(true).unwrap();
            b.set_one_pass(true).unwrap();
            let w0 = data(n, 4, 1.0);
            let (mut wa, mut wb) = (cpu.upload(&w0).unwrap(), dev.upload(&w0).unwrap());
            for t in 0..5u64 {
                let gv = data(n, 80 + t, 1.0);
                let hv = data(n, 90 + t, 1.0);
                let so = variant.second_order();
                let (ha, hb) = (cpu.upload(&hv).unwrap(), dev.upload(&hv).unwrap());
                a.step(&mut wa, &cpu.upload(&gv).unwrap(), so.then_some(&ha))
                    .unwrap();
                b.step(&mut wb, &dev.upload(&gv).unwrap(), so.then_some(&hb))
                    .unwrap();
                if t == 2 {
                    // Save and restore mid-run: the next step must still scale by this one.
                    b = Upgd::restore(dev, &b.save().unwrap()).unwrap();
                    assert!(b.one_pass());
                }
                let got: Vec<f64> = wb
                    .download()
                    .unwrap()
                    .iter()
                    .map(|&x| f64::from(x))
                    .collect();
                let want: Vec<f64> = wa
                    .download()
                    .unwrap()
                    .iter()
                    .map(|&x| f64::from(x))
                    .collect();
                let e = trainkern::check::scaled_max_error(&got, &want);
                assert!(
                    e <= 1e-5,
                    "{name} {} one-pass step {}: {e:e}",
                    variant.name(),
                    t + 1
                );
            }
        }
    }
}

#[test]
fn bf16_traces_on_every_backend() {
    use trainkern::DType;
    let (specs, n) = device_layout();
    let hp = Hyper {
        lr: 0.05,
        weight_decay: 0.01,
        beta_utility: 0.9,
        sigma: 0.3,
    };
    for (name, dev) in common::devices() {
        if dev.backend() != trainkern::Backend::Cpu && refuses_small_bindings(dev, name) {
            continue;
        }
        for (variant, one_pass) in Variant::all()
            .into_iter()
            .map(|v| (v, false))
            .chain([(Variant::all()[2], true)])
        {
            let cpu = Device::cpu();
            let mut a = Upgd::new(&cpu, variant, hp, &specs, n, 9).unwrap();
            let mut b = Upgd::new(dev, variant, hp, &specs, n, 9).unwrap();
            for o in [&mut a, &mut b] {
                o.set_trace_dtype(DType::BF16).unwrap();
                o.set_one_pass(one_pass).unwrap();
            }
            let w0 = data(n, 6, 1.0);
            let (mut wa, mut wb) = (cpu.upload(&w0).unwrap(), dev.upload(&w0).unwrap());
            for t in 0..4u64 {
                let gv = data(n, 30 + t, 1.0);
                let hv = data(n, 50 + t, 1.0);
                let so = variant.second_order();
                let (ha, hb) = (cpu.upload(&hv).unwrap(), dev.upload(&hv).unwrap());
                a.step(&mut wa, &cpu.upload(&gv).unwrap(), so.then_some(&ha))
                    .unwrap();
                b.step(&mut wb, &dev.upload(&gv).unwrap(), so.then_some(&hb))
                    .unwrap();
                if t == 1 {
                    b = Upgd::restore(dev, &b.save().unwrap()).unwrap();
                    assert_eq!(b.trace_dtype(), DType::BF16);
                }
            }
            // 16-bit storage: relative L2 (testing.md), on the traces and on the weights' moves.
            let f = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
            let e = trainkern::check::rel_l2(&f(b.utility().unwrap()), &f(a.utility().unwrap()));
            assert!(
                e <= 1e-2,
                "{name} {}: bf16 traces relative L2 {e:e}",
                variant.name()
            );
            let mv = |w: Vec<f32>| {
                w.iter()
                    .zip(&w0)
                    .map(|(x, y)| f64::from(x - y))
                    .collect::<Vec<_>>()
            };
            let e =
                trainkern::check::rel_l2(&mv(wb.download().unwrap()), &mv(wa.download().unwrap()));
            assert!(
                e <= 1e-2,
                "{name} {}: weight moves relative L2 {e:e}",
                variant.name()
            );
        }
    }
    let mut o = Upgd::new(&Device::cpu(), Variant::all()[0], hp, &specs, n, 1).unwrap();
    assert!(o.set_trace_dtype(DType::F16).is_err());
    o.step(
        &mut Device::cpu().upload(&vec![0f32; n]).unwrap(),
        &Device::cpu().upload(&vec![0f32; n]).unwrap(),
        None,
    )
    .unwrap();
    assert!(
        o.set_trace_dtype(DType::BF16).is_err(),
        "only before the first step"
    );
}

#[test]
fn bf16_traces_cost_against_f32_is_measured() {
    // 200 steps with the README's hyperparameters on a 100-tensor model with gradients that
    // drift: how far do bf16 traces move the weights from the f32-trace run? The figure is
    // printed and recorded in BENCHMARKS.md; the bound only catches a broken rounding path.
    use trainkern::DType;
    let specs: Vec<TensorSpec> = (0..100)
        .map(|k| TensorSpec {
            offset: k * 640,
            len: 640,
            last_dim: 64,
        })
        .collect();
    let n = 64_000;
    let hp = Hyper {
        lr: 0.01,
        weight_decay: 0.001,
        beta_utility: 0.999,
        sigma: 0.001,
    };
    let dev = Device::cpu();
    for name in ["first-global-protect", "first-local-protect", "adaptive"] {
        let variant = Variant::parse(name).unwrap();
        let w0 = data(n, 1, 1.0);
        let mut runs = Vec::new();
        for dtype in [DType::F32, DType::BF16] {
            let mut o = Upgd::new(&dev, variant, hp, &specs, n, 21).unwrap();
            o.set_trace_dtype(dtype).unwrap();
            let mut w = dev.upload(&w0).unwrap();
            let base = data(n, 2, 1.0);
            for t in 0..200u64 {
                let jitter = data(n, 1000 + t, 0.5);
                let g: Vec<f32> = base.iter().zip(&jitter).map(|(b, j)| b + j).collect();
                o.step(&mut w, &dev.upload(&g).unwrap(), None).unwrap();
            }
            runs.push(w.download().unwrap());
        }
        let mv = |w: &[f32]| {
            w.iter()
                .zip(&w0)
                .map(|(x, y)| f64::from(x - y))
                .collect::<Vec<_>>()
        };
        let e = trainkern::check::rel_l2(&mv(&runs[1]), &mv(&runs[0]));
        println!(
            "{name}: bf16 traces move the weights {e:.3e} (relative L2 of the moves) from f32 traces after 200 steps"
        );
        assert!(e < 0.05, "{name}: {e}");
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_windows_refuse_a_gate_outside_its_window() {
    // With 4 KiB bindings a window spans 1024 elements: a 2048-element gated weight whose gate
    // sits after it cannot see the gate from its first window.
    let Some((_, dev)) = common::devices().iter().find(|(n, _)| n.contains("chunks")) else {
        common::missing("wgpu", "no adapter");
        return;
    };
    let specs = [
        TensorSpec {
            offset: 0,
            len: 2048,
            last_dim: 64,
        },
        TensorSpec {
            offset: 2048,
            len: 32,
            last_dim: 32,
        },
    ];
    let roles = [Role::Gated { gate: 1 }, Role::Gate];
    let e = Upgd::new_feature(
        dev,
        Variant::all()[0],
        Hyper::default(),
        &specs,
        &roles,
        2080,
        1,
    )
    .err()
    .expect("refused");
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    // The same model fits one window on the full-size device and runs.
    let (_, big) = common::devices().iter().find(|(n, _)| n == "wgpu").unwrap();
    Upgd::new_feature(
        big,
        Variant::all()[0],
        Hyper::default(),
        &specs,
        &roles,
        2080,
        1,
    )
    .unwrap();
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_models_past_one_binding_run_in_windows() {
    // 16 KiB bindings: windows of 4096 elements, so this 20 000-element model runs in five
    // windows per pass, tensors straddling them, against the CPU reference.
    if common::wgpu_device().is_none() {
        common::missing("wgpu", "no adapter");
        return;
    }
    let dev = Device::Wgpu(
        trainkern::backend::wgpu::WgpuDevice::new(&trainkern::backend::wgpu::WgpuOptions {
            hardware_only: false,
            max_chunk_bytes: Some(16 << 10),
        })
        .unwrap(),
    );
    let specs: Vec<TensorSpec> = vec![
        TensorSpec {
            offset: 0,
            len: 3,
            last_dim: 3,
        },
        TensorSpec {
            offset: 5,
            len: 9000,
            last_dim: 100,
        },
        TensorSpec {
            offset: 9005,
            len: 6000,
            last_dim: 600,
        },
        TensorSpec {
            offset: 15005,
            len: 4995,
            last_dim: 5,
        },
    ];
    let n = 20_000;
    let hp = Hyper {
        lr: 0.05,
        weight_decay: 0.01,
        beta_utility: 0.9,
        sigma: 0.3,
    };
    for (variant, one_pass) in Variant::all()
        .into_iter()
        .map(|v| (v, false))
        .chain([(Variant::all()[2], true)])
    {
        let cpu = Device::cpu();
        let mut a = Upgd::new(&cpu, variant, hp, &specs, n, 2).unwrap();
        let mut b = Upgd::new(&dev, variant, hp, &specs, n, 2).unwrap();
        a.set_one_pass(one_pass).unwrap();
        b.set_one_pass(one_pass).unwrap();
        let w0 = data(n, 5, 1.0);
        let (mut wa, mut wb) = (cpu.upload(&w0).unwrap(), dev.upload(&w0).unwrap());
        for t in 0..3u64 {
            let gv = data(n, 70 + t, 1.0);
            let hv = data(n, 75 + t, 1.0);
            let so = variant.second_order();
            let (ha, hb) = (cpu.upload(&hv).unwrap(), dev.upload(&hv).unwrap());
            a.step(&mut wa, &cpu.upload(&gv).unwrap(), so.then_some(&ha))
                .unwrap();
            b.step(&mut wb, &dev.upload(&gv).unwrap(), so.then_some(&hb))
                .unwrap();
        }
        let f = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
        let e = trainkern::check::scaled_max_error(
            &f(wb.download().unwrap()),
            &f(wa.download().unwrap()),
        );
        assert!(e <= 1e-5, "{} windows: {e:e}", variant.name());
    }
}

/// Steps `steps` times over a packed layout given flat and as one buffer per tensor; returns
/// the flat result's tensors and the list's.
#[allow(clippy::type_complexity)]
fn flat_and_list(
    dev: &Device,
    variant: Variant,
    shapes: &[(usize, usize)],
    roles: Option<&[Role]>,
    one_pass: bool,
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let (specs, n) = TensorSpec::packed(shapes);
    let hp = Hyper {
        lr: 0.05,
        weight_decay: 0.01,
        beta_utility: 0.9,
        sigma: 0.1,
    };
    let make = || match roles {
        Some(r) => Upgd::new_feature(dev, variant, hp, &specs, r, n, 7).unwrap(),
        None => {
            let mut o = Upgd::new(dev, variant, hp, &specs, n, 7).unwrap();
            o.set_one_pass(one_pass).unwrap();
            o
        }
    };
    let (mut flat, mut list) = (make(), make());
    let w0 = data(n, 1, 1.0);
    let mut wf = dev.upload(&w0).unwrap();
    let mut wl: Vec<_> = specs
        .iter()
        .map(|s| dev.upload(&w0[s.offset..s.offset + s.len]).unwrap())
        .collect();
    let second = variant.second_order();
    for t in 0..3u64 {
        let g = data(n, 10 + t, 0.5);
        let h = data(n, 20 + t, 0.5);
        let per = |v: &[f32]| -> Vec<_> {
            specs
                .iter()
                .map(|s| dev.upload(&v[s.offset..s.offset + s.len]).unwrap())
                .collect()
        };
        let (gf, hf) = (dev.upload(&g).unwrap(), dev.upload(&h).unwrap());
        flat.step(&mut wf, &gf, second.then_some(&hf)).unwrap();
        let (gl, hl) = (per(&g), per(&h));
        list.step_list(&mut wl, &gl, second.then_some(hl.as_slice()))
            .unwrap();
    }
    let wf = wf.download().unwrap();
    (
        specs
            .iter()
            .map(|s| wf[s.offset..s.offset + s.len].to_vec())
            .collect(),
        wl.iter().map(|b| b.download().unwrap()).collect(),
    )
}

/// A model held as a list of buffers steps exactly as the same model in one flat buffer, on
/// every backend: every variant, the one-pass mode, feature-level UPGD, tensors of 1 element,
/// odd sizes and one larger than the 4 KiB wgpu twin's binding window.
#[test]
fn list_of_buffers_steps_as_the_flat_buffer() {
    let shapes = [(1, 1), (15, 5), (7, 7), (4, 1), (600, 24), (1300, 10)];
    let (_, roles, _) = mlp();
    let mlp_shapes = [(12, 3), (4, 1), (4, 4), (8, 4), (2, 1)];
    for (name, dev) in common::devices() {
        for variant in Variant::all() {
            let (a, b) = flat_and_list(dev, variant, &shapes, None, false);
            assert_eq!(a, b, "{name} {}", variant.name());
        }
        let v = Variant::parse("first-local-protect").unwrap();
        let (a, b) = flat_and_list(dev, v, &shapes, None, true);
        assert_eq!(a, b, "{name} one-pass");
        let v = Variant::parse("first-global-noprotect").unwrap();
        let (a, b) = flat_and_list(dev, v, &mlp_shapes, Some(&roles), false);
        assert_eq!(a, b, "{name} feature-level");
    }
}

#[test]
fn list_of_buffers_bad_input() {
    let cpu = Device::cpu();
    let v = Variant::parse("first-global-protect").unwrap();
    let (specs, n) = TensorSpec::packed(&[(10, 5), (3, 3)]);
    assert_eq!((specs[1].offset, n), (256, 512));
    let mut o = Upgd::new(&cpu, v, Hyper::default(), &specs, n, 1).unwrap();
    let mut w = vec![cpu.zeros::<f32>(10).unwrap(), cpu.zeros::<f32>(3).unwrap()];
    let g = vec![cpu.zeros::<f32>(10).unwrap(), cpu.zeros::<f32>(4).unwrap()];
    let e = o.step_list(&mut w, &g, None).err().unwrap().to_string();
    assert!(e.contains("upgd") && e.contains("g[k]"), "{e}");
    let e = o
        .step_list(&mut w, &g[..1], None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("g (tensors)"), "{e}");
    let (mut unaligned, n) = layout();
    unaligned.truncate(2);
    let mut o = Upgd::new(&cpu, v, Hyper::default(), &unaligned, n, 1).unwrap();
    let mut w = vec![cpu.zeros::<f32>(1).unwrap(), cpu.zeros::<f32>(15).unwrap()];
    let g = vec![cpu.zeros::<f32>(1).unwrap(), cpu.zeros::<f32>(15).unwrap()];
    let e = o.step_list(&mut w, &g, None).err().unwrap().to_string();
    assert!(e.contains("TensorSpec::packed"), "{e}");
    assert_eq!(o.steps(), 0, "a refused step does not count");
}
