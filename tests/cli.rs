//! The command-line tool: `run noise` writes what the library computes, in .npy files a Python
//! user can load; `info` never fails; bad flags are errors, not panics.

use std::process::Command;

use trainkern::noise::{self, Gaussian};
use trainkern::{Device, Float};

fn trainkern() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trainkern"));
    c.env("TRAINKERN_BACKEND", "cpu");
    c
}

fn read_npy<T: npyz::Deserialize>(path: &std::path::Path) -> (Vec<u64>, Vec<T>) {
    let bytes = std::fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec().unwrap())
}

fn expected<T: Float>(len: usize, g: &Gaussian) -> Vec<T> {
    let dev = Device::cpu();
    let mut b = dev.zeros::<T>(len).unwrap();
    noise::fill_gaussian(&dev, &mut b, g).unwrap();
    b.download().unwrap()
}

#[test]
fn run_noise_writes_the_library_values() {
    let dir = std::env::temp_dir().join(format!("trainkern-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let g = Gaussian {
        std: 0.5,
        seed: 17,
        stream: 3,
        offset: 1001,
    };
    for dtype in ["f32", "f16", "bf16"] {
        let out = dir.join(format!("x_{dtype}.npy"));
        let o = trainkern()
            .args([
                "run", "noise", "--len", "999", "--std", "0.5", "--seed", "17",
            ])
            .args([
                "--stream", "3", "--offset", "1001", "--dtype", dtype, "--out",
            ])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            stdout.contains("\"seed\": 17") && stdout.contains("\"backend\": \"cpu\""),
            "{stdout}"
        );
        match dtype {
            "f32" => {
                let (shape, v) = read_npy::<f32>(&out);
                assert_eq!(shape, [999]);
                assert_eq!(v, expected::<f32>(999, &g));
            }
            "f16" => {
                let (_, v) = read_npy::<half::f16>(&out);
                assert_eq!(v, expected::<half::f16>(999, &g));
            }
            _ => {
                // bf16 is widened exactly to f32.
                let (_, v) = read_npy::<f32>(&out);
                let want: Vec<f32> = expected::<half::bf16>(999, &g)
                    .iter()
                    .map(|x| x.to_f32())
                    .collect();
                assert_eq!(v, want);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_flags_are_errors_not_panics() {
    let o = trainkern()
        .args([
            "run",
            "noise",
            "--len",
            "4",
            "--std",
            "-1",
            "--stream",
            "0",
            "--out",
            "/tmp/never.npy",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("fill_gaussian: std"), "{err}");
    let o = trainkern()
        .args(["run", "noise", "--len", "4"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let o = trainkern()
        .args(["bench", "--sizes", "99"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn info_lists_every_backend() {
    let o = trainkern().arg("info").output().unwrap();
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    for b in ["cpu", "wgpu", "cuda", "best:"] {
        assert!(s.contains(b), "{s}");
    }
}

fn write_npz(path: &std::path::Path, arrays: &[(&str, Vec<u64>, Vec<f32>)]) {
    use npyz::WriterBuilder;
    let mut z = npyz::npz::NpzWriter::create(path).unwrap();
    for (name, shape, data) in arrays {
        let mut w = z
            .array::<f32>(name, Default::default())
            .unwrap()
            .default_dtype()
            .shape(shape)
            .begin_nd()
            .unwrap();
        w.extend(data.iter().copied()).unwrap();
        w.finish().unwrap();
    }
}

#[test]
fn run_upgd_steps_the_files_like_the_library() {
    use trainkern::upgd::{Hyper, TensorSpec, Upgd, Variant};
    let dir = std::env::temp_dir().join(format!("trainkern-upgd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vals = |n: usize, s: f32| -> Vec<f32> {
        (0..n)
            .map(|i| s * ((i * 37 % 11) as f32 - 5.0) / 5.0)
            .collect()
    };
    // Two tensors: a 3x4 weight and a bias of 3; two steps.
    write_npz(
        &dir.join("w.npz"),
        &[
            ("fc.weight", vec![3, 4], vals(12, 1.0)),
            ("fc.bias", vec![3], vals(3, 0.5)),
        ],
    );
    write_npz(
        &dir.join("g.npz"),
        &[
            ("fc.weight", vec![2, 3, 4], vals(24, 0.3)),
            ("fc.bias", vec![2, 3], vals(6, 0.2)),
        ],
    );
    let out = dir.join("w_out.npz");
    let o = trainkern()
        .args([
            "run",
            "upgd",
            "--variant",
            "first-local-protect",
            "--lr",
            "0.1",
            "--beta-utility",
            "0.9",
        ])
        .args([
            "--sigma",
            "0.01",
            "--weight-decay",
            "0.01",
            "--seed",
            "4",
            "--params",
        ])
        .arg(dir.join("w.npz"))
        .arg("--grads")
        .arg(dir.join("g.npz"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"steps\": 2"));
    // The same with the library.
    let dev = Device::cpu();
    let specs = [
        TensorSpec {
            offset: 0,
            len: 12,
            last_dim: 4,
        },
        TensorSpec {
            offset: 12,
            len: 3,
            last_dim: 3,
        },
    ];
    let hp = Hyper {
        lr: 0.1,
        weight_decay: 0.01,
        beta_utility: 0.9,
        sigma: 0.01,
    };
    let mut opt = Upgd::new(
        &dev,
        Variant::parse("first-local-protect").unwrap(),
        hp,
        &specs,
        15,
        4,
    )
    .unwrap();
    let mut w0 = vals(12, 1.0);
    w0.extend(vals(3, 0.5));
    let mut w = dev.upload(&w0).unwrap();
    let (gw, gb) = (vals(24, 0.3), vals(6, 0.2));
    for t in 0..2 {
        let mut g = gw[t * 12..(t + 1) * 12].to_vec();
        g.extend_from_slice(&gb[t * 3..(t + 1) * 3]);
        opt.step(&mut w, &dev.upload(&g).unwrap(), None).unwrap();
    }
    let want = w.download().unwrap();
    let mut z = npyz::npz::NpzArchive::open(&out).unwrap();
    let weight = z.by_name("fc.weight").unwrap().unwrap();
    assert_eq!(weight.shape(), &[3, 4]);
    let got_w: Vec<f32> = weight.into_vec().unwrap();
    let got_b: Vec<f32> = z.by_name("fc.bias").unwrap().unwrap().into_vec().unwrap();
    assert_eq!(got_w, want[..12]);
    assert_eq!(got_b, want[12..]);
    // A gradient archive with the wrong shape is an error, not a panic.
    write_npz(
        &dir.join("bad.npz"),
        &[
            ("fc.weight", vec![2, 4, 3], vals(24, 0.3)),
            ("fc.bias", vec![2, 3], vals(6, 0.2)),
        ],
    );
    let o = trainkern()
        .args([
            "run",
            "upgd",
            "--variant",
            "first-global-protect",
            "--lr",
            "0.1",
            "--params",
        ])
        .arg(dir.join("w.npz"))
        .arg("--grads")
        .arg(dir.join("bad.npz"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("fc.weight"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_upgd_feature_level_follows_the_gate_naming_rule() {
    use trainkern::upgd::{Hyper, Role, TensorSpec, Upgd, Variant};
    let dir = std::env::temp_dir().join(format!("trainkern-upgd-feature-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vals = |n: usize, s: f32| -> Vec<f32> {
        (0..n)
            .map(|i| s * ((i * 29 % 13) as f32 - 6.0) / 6.0)
            .collect()
    };
    let shapes: [(&str, Vec<u64>, usize); 5] = [
        ("fc1.weight", vec![4, 3], 12),
        ("fc1.bias", vec![4], 4),
        ("gate1", vec![1, 4], 4),
        ("fc2.weight", vec![2, 4], 8),
        ("fc2.bias", vec![2], 2),
    ];
    let w: Vec<(&str, Vec<u64>, Vec<f32>)> = shapes
        .iter()
        .map(|(n, s, l)| (*n, s.clone(), vals(*l, 1.0)))
        .collect();
    let g: Vec<(&str, Vec<u64>, Vec<f32>)> = shapes
        .iter()
        .map(|(n, s, l)| {
            let mut sh = vec![2u64];
            sh.extend(s);
            (*n, sh, vals(2 * l, 0.4))
        })
        .collect();
    write_npz(&dir.join("w.npz"), &w);
    write_npz(&dir.join("g.npz"), &g);
    let out = dir.join("out.npz");
    let o = trainkern()
        .args([
            "run",
            "upgd",
            "--feature",
            "--variant",
            "first-global-protect",
            "--lr",
            "0.1",
            "--sigma",
            "0.05",
        ])
        .args(["--seed", "8", "--params"])
        .arg(dir.join("w.npz"))
        .arg("--grads")
        .arg(dir.join("g.npz"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The library with the roles the rule implies: fc1.weight and fc1.bias gated by gate1 (the
    // bias one unit per row), fc2 ungated.
    let specs = [
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
            last_dim: 2,
        },
    ];
    let roles = [
        Role::Gated { gate: 2 },
        Role::Gated { gate: 2 },
        Role::Gate,
        Role::Param,
        Role::Param,
    ];
    let hp = Hyper {
        lr: 0.1,
        weight_decay: 0.0,
        beta_utility: 0.0,
        sigma: 0.05,
    };
    let dev = Device::cpu();
    let mut opt = Upgd::new_feature(
        &dev,
        Variant::parse("first-global-protect").unwrap(),
        hp,
        &specs,
        &roles,
        30,
        8,
    )
    .unwrap();
    let flat_w: Vec<f32> = w.iter().flat_map(|(_, _, v)| v.iter().copied()).collect();
    let mut wb = dev.upload(&flat_w).unwrap();
    for t in 0..2 {
        let flat_g: Vec<f32> = g
            .iter()
            .zip(&shapes)
            .flat_map(|((_, _, v), (_, _, l))| v[t * l..(t + 1) * l].to_vec())
            .collect();
        opt.step(&mut wb, &dev.upload(&flat_g).unwrap(), None)
            .unwrap();
    }
    let want = wb.download().unwrap();
    let mut z = npyz::npz::NpzArchive::open(&out).unwrap();
    let mut got = Vec::new();
    for (n, _, _) in &shapes {
        let v: Vec<f32> = z.by_name(n).unwrap().unwrap().into_vec().unwrap();
        got.extend(v);
    }
    assert_eq!(got, want);
    assert_eq!(got[16..20], flat_w[16..20], "gates are not updated");
    let _ = std::fs::remove_dir_all(&dir);
}

fn write_npy<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
    path: &std::path::Path,
    shape: &[u64],
    data: &[T],
) {
    use npyz::WriterBuilder;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(std::fs::File::create(path).unwrap())
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

#[test]
fn run_clip_writes_the_library_values() {
    use trainkern::clip::{Bounds, ClipNoise, ClipOptions, ClipRule, Clipper};
    let dir = std::env::temp_dir().join(format!("trainkern-clip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (b, d) = (4usize, 6usize);
    let g: Vec<f32> = (0..b * d).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
    let mut bad = g.clone();
    bad[d + 2] = f32::NAN;
    write_npy(&dir.join("g.npy"), &[b as u64, 2, 3], &bad);
    write_npy(&dir.join("o.npy"), &[3], &[0i64, 2, 6]);
    write_npy(&dir.join("c.npy"), &[2], &[1.5f32, 4.0]);
    let (sum, norms) = (dir.join("s.npy"), dir.join("n.npy"));
    let o = trainkern()
        .args(["run", "clip", "--grads"])
        .arg(dir.join("g.npy"))
        .args([
            "--rule",
            "opacus",
            "--noise-multiplier",
            "0.5",
            "--seed",
            "9",
        ])
        .args(["--stream", "2", "--scale", "0.25", "--groups"])
        .arg(dir.join("o.npy"))
        .arg("--group-norms")
        .arg(dir.join("c.npy"))
        .arg("--out-sum")
        .arg(&sum)
        .arg("--out-norms")
        .arg(&norms)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();

    let dev = Device::cpu();
    let mut c = Clipper::grouped(&dev, b, &[0, 2, 6]).unwrap();
    let opts = ClipOptions {
        rule: ClipRule::Opacus,
        noise: Some(ClipNoise {
            multiplier: 0.5,
            seed: 9,
            stream: 2,
            offset: 0,
        }),
        scale: 0.25,
    };
    let (mut s, mut n) = (dev.zeros(d).unwrap(), dev.zeros(b * 2).unwrap());
    let grads = dev.upload(&bad).unwrap();
    c.run(&grads, Bounds::Host(&[1.5, 4.0]), &opts, &mut s, &mut n)
        .unwrap();
    let counts = c.counts().unwrap();
    assert_eq!(counts.nonfinite, 1);
    let line = format!("{{\"clipped\": {}, \"nonfinite\": 1}}", counts.clipped);
    assert_eq!(stdout.trim(), line);
    let (shape, got) = read_npy::<f32>(&sum);
    assert_eq!(shape, [d as u64]);
    assert_eq!(got, s.download().unwrap());
    let (shape, got) = read_npy::<f32>(&norms);
    assert_eq!(shape, [b as u64, 2]);
    let want = n.download().unwrap();
    for (x, y) in got.iter().zip(&want) {
        assert!(x == y || (x.is_nan() && y.is_nan()), "{x} vs {y}");
    }

    // Offsets that do not end at d, and a missing bound, are errors naming the flag.
    write_npy(&dir.join("o2.npy"), &[3], &[0i64, 2, 5]);
    let o = trainkern()
        .args(["run", "clip", "--clip-norm", "1", "--grads"])
        .arg(dir.join("g.npy"))
        .arg("--groups")
        .arg(dir.join("o2.npy"))
        .arg("--out-sum")
        .arg(&sum)
        .arg("--out-norms")
        .arg(&norms)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--groups must end at d = 6"));
    let o = trainkern()
        .args(["run", "clip", "--grads"])
        .arg(dir.join("g.npy"))
        .arg("--out-sum")
        .arg(&sum)
        .arg("--out-norms")
        .arg(&norms)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--clip-norm"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_ghost_norms_matches_explicit_gradients() {
    let dir = std::env::temp_dir().join(format!("trainkern-ghost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (b, t, p, q) = (3usize, 4usize, 5usize, 2usize);
    let a: Vec<f32> = (0..b * t * p)
        .map(|i| ((i * 13) % 7) as f32 - 3.0)
        .collect();
    let g: Vec<f32> = (0..b * t * q).map(|i| ((i * 5) % 9) as f32 - 4.0).collect();
    write_npy(&dir.join("a.npy"), &[b as u64, t as u64, p as u64], &a);
    write_npy(&dir.join("g.npy"), &[b as u64, t as u64, q as u64], &g);
    let out = dir.join("n2.npy");
    let o = trainkern()
        .args(["run", "ghost-norms", "--bias", "--activations"])
        .arg(dir.join("a.npy"))
        .arg("--output-grads")
        .arg(dir.join("g.npy"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (shape, got) = read_npy::<f32>(&out);
    assert_eq!(shape, [b as u64]);
    for i in 0..b {
        // Integer data: the explicit sums are exact in f64.
        let mut want = 0.0f64;
        for r in 0..q {
            for c in 0..p {
                let m: f64 = (0..t)
                    .map(|s| f64::from(g[(i * t + s) * q + r]) * f64::from(a[(i * t + s) * p + c]))
                    .sum();
                want += m * m;
            }
            let s: f64 = (0..t).map(|s| f64::from(g[(i * t + s) * q + r])).sum();
            want += s * s;
        }
        assert_eq!(f64::from(got[i]), want, "example {i}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mf_plan_prints_the_table_and_writes_the_json() {
    let dir = std::env::temp_dir().join(format!("trainkern-mf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("plan.json");
    let o = trainkern()
        .args([
            "mf",
            "plan",
            "--strategy",
            "bandmf",
            "--steps",
            "512",
            "--epochs",
            "4",
        ])
        .args([
            "--min-sep",
            "128",
            "--bands",
            "64",
            "--epsilon",
            "2",
            "--delta",
            "1e-6",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("bandmf") && table.contains("yes"), "{table}");

    use trainkern::mf::{Objective, Participation, Plan, Strategy, optimize};
    let part = Participation::new(512, 4, 128).unwrap();
    let (best, _) = optimize::bandmf(&part, 64, Objective::Mean).unwrap();
    let mut plan = Plan::new(best, &part, Objective::Mean).unwrap();
    plan.calibrate(2.0, 1e-6).unwrap();
    let truncated = Plan::new(Strategy::banded_sqrt(64), &part, Objective::Mean).unwrap();
    assert!(
        plan.loss < truncated.loss,
        "{} vs {}",
        plan.loss,
        truncated.loss
    );
    let text = std::fs::read_to_string(&json).unwrap();
    assert_eq!(text, plan.labelled("bandmf").to_json());
    for key in [
        "\"sensitivity_squared\": 4.0",
        "\"sensitivity_exact\": true",
        "\"k\": 4",
    ] {
        assert!(text.contains(key), "{key} not in {text}");
    }

    // A strategy that needs what is not given is an error naming it; so is k = 0.
    let o = trainkern()
        .args([
            "mf",
            "plan",
            "--strategy",
            "blt",
            "--steps",
            "10",
            "--epochs",
            "1",
        ])
        .args(["--min-sep", "10", "--theta", "0.5"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--theta and --omega"));
    let o = trainkern()
        .args([
            "mf",
            "compare",
            "--steps",
            "10",
            "--epochs",
            "0",
            "--min-sep",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("k (epochs) must be at least 1"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_mf_noise_writes_the_generator_output() {
    use trainkern::mf::{Objective, Participation, Plan, Strategy};
    use trainkern::mf_noise::NoiseGenerator;
    let dir = std::env::temp_dir().join(format!("trainkern-mfn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let part = Participation::new(9, 3, 3).unwrap();
    let plan = Plan::new(Strategy::banded_sqrt(3), &part, Objective::Mean).unwrap();
    let json = dir.join("plan.json");
    std::fs::write(&json, plan.to_json()).unwrap();
    let out = dir.join("noise.npy");
    let o = trainkern()
        .args(["run", "mf-noise", "--plan"])
        .arg(&json)
        .args([
            "--dim", "7", "--steps", "9", "--seed", "4", "--sigma", "0.5",
        ])
        .args(["--offset", "100", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (shape, got) = read_npy::<f32>(&out);
    assert_eq!(shape, [9, 7]);
    let dev = Device::cpu();
    // The file holds the generator's 9 steps of 7 coordinates, row by row.
    let same_as = |got: &[f32], mut g: NoiseGenerator| {
        for t in 0..9 {
            let mut x = dev.zeros::<f32>(7).unwrap();
            g.step(t, &mut x).unwrap();
            assert_eq!(
                &got[t as usize * 7..(t as usize + 1) * 7],
                &x.download().unwrap()[..]
            );
        }
    };
    same_as(
        &got,
        NoiseGenerator::new(&dev, &plan.strategy, 9, 7, 100, 4, 0.5).unwrap(),
    );
    // --bf16-state: the library's generator with bf16 state.
    let o = trainkern()
        .args(["run", "mf-noise", "--plan"])
        .arg(&json)
        .args([
            "--dim",
            "7",
            "--steps",
            "9",
            "--seed",
            "4",
            "--bf16-state",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, got) = read_npy::<f32>(&out);
    let mut g = NoiseGenerator::new(&dev, &plan.strategy, 9, 7, 0, 4, 1.0).unwrap();
    g.set_state_dtype(trainkern::DType::BF16).unwrap();
    same_as(&got, g);
    let o = trainkern()
        .args(["run", "mf-noise", "--plan"])
        .arg(&json)
        .args(["--dim", "7", "--steps", "10", "--seed", "4", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("exceeds the plan's n = 9"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rays as `run render` and `run splat` read them (`r.npz`: batch indices as floats) and as the
/// library takes them.
struct TestRays {
    origins: Vec<f32>,
    directions: Vec<f32>,
    near: Vec<f32>,
    far: Vec<f32>,
    batch: Vec<u32>,
    encoding: Option<Vec<f32>>,
}

impl TestRays {
    fn write(&self, path: &std::path::Path) {
        let r = self.near.len() as u64;
        let mut arrays = vec![
            ("origins", vec![r, 3], self.origins.clone()),
            ("directions", vec![r, 3], self.directions.clone()),
            ("near", vec![r], self.near.clone()),
            ("far", vec![r], self.far.clone()),
            (
                "batch",
                vec![r],
                self.batch.iter().map(|&b| b as f32).collect(),
            ),
        ];
        if let Some(e) = &self.encoding {
            arrays.push(("encoding", vec![r, e.len() as u64 / r], e.clone()));
        }
        write_npz(path, &arrays);
    }

    fn upload(&self, dev: &Device) -> trainkern::render::RayBuffers {
        trainkern::render::RayBuffers::upload(
            dev,
            &self.origins,
            &self.directions,
            &self.batch,
            &self.near,
            &self.far,
            self.encoding.as_deref(),
        )
        .unwrap()
    }
}

/// Each CLI output element within `1e-6 (1 + |want|)` of the library's, and not all zero.
fn close(what: &str, got: Vec<f32>, want: Vec<f32>) {
    assert_eq!(got.len(), want.len(), "{what}");
    assert!(want.iter().any(|x| *x != 0.0), "{what}: all zero");
    for (a, b) in got.iter().zip(&want) {
        assert!(
            (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
            "{what}: {a} vs {b}"
        );
    }
}

#[test]
fn run_render_writes_the_library_values() {
    use trainkern::render::{Decoder, GridList, RenderOptions, RenderOutput, Renderer};
    let dir = std::env::temp_dir().join(format!("tk_render_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vals = |n: usize, k: f32| -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 * 0.37 + k).sin()) * 0.8)
            .collect()
    };
    let shapes = [[1u64, 1, 4, 5, 3], [1, 3, 1, 5, 3], [1, 3, 4, 1, 3]];
    let grids: Vec<Vec<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| vals(s.iter().product::<u64>() as usize, i as f32))
        .collect();
    let named: Vec<(String, Vec<u64>, Vec<f32>)> = (0..3)
        .map(|i| (format!("g{i}"), shapes[i].to_vec(), grids[i].clone()))
        .collect();
    let refs: Vec<(&str, Vec<u64>, Vec<f32>)> = named
        .iter()
        .map(|(n, s, d)| (n.as_str(), s.clone(), d.clone()))
        .collect();
    write_npz(&dir.join("g.npz"), &refs);
    let decoder = Decoder {
        trunk_layers: 2,
        opacity_layers: 1,
        color_layers: 2,
        hidden: 8,
        color_channels: 3,
    };
    let params = decoder.xavier_init(3, None, 0.0, 3).unwrap();
    write_npy(&dir.join("p.npy"), &[params.len() as u64], &params);
    let r = 4;
    let origins = vec![
        0.0f32, 0.0, -2.0, 0.3, 0.1, -2.0, -0.4, 0.2, -2.0, 0.1, -0.5, -2.0,
    ];
    let directions = vec![
        0.0f32, 0.0, 1.0, 0.0, 0.1, 1.0, 0.2, 0.0, 1.0, 0.0, 0.3, 1.0,
    ];
    let rays = TestRays {
        origins,
        directions,
        near: vec![1.0; r],
        far: vec![3.0; r],
        batch: vec![0; r],
        encoding: None,
    };
    rays.write(&dir.join("r.npz"));
    let g_in = vals(r * 3, 5.0);
    let (gl, glam) = (vals(r, 6.0), vals(r, 7.0));
    write_npz(
        &dir.join("gin.npz"),
        &[
            ("features", vec![r as u64, 3], g_in.clone()),
            ("ray_length", vec![r as u64], gl.clone()),
            ("neg_log_transmittance", vec![r as u64], glam.clone()),
        ],
    );
    let out = trainkern()
        .args([
            "run",
            "render",
            "--samples",
            "8",
            "--samples-inf",
            "2",
            "--layers",
            "2,1,2",
        ])
        .args(["--hidden", "8", "--color-channels", "3", "--gain", "1.5"])
        .arg("--grids")
        .arg(dir.join("g.npz"))
        .arg("--params")
        .arg(dir.join("p.npy"))
        .arg("--rays")
        .arg(dir.join("r.npz"))
        .arg("--out")
        .arg(dir.join("o.npz"))
        .arg("--backward")
        .arg(dir.join("gin.npz"))
        .arg("--grads-out")
        .arg(dir.join("grads.npz"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The library on the same inputs.
    let dev = Device::cpu();
    let shapes5: Vec<[usize; 5]> = shapes.iter().map(|s| s.map(|x| x as usize)).collect();
    let list = GridList::new(&shapes5).unwrap();
    let opts = RenderOptions {
        samples: 8,
        samples_inf: 2,
        gain: 1.5,
        ..RenderOptions::default()
    };
    let renderer = Renderer::new(&dev, &list, None, decoder, opts).unwrap();
    let flat: Vec<f32> = grids.concat();
    let up = |v: &[f32]| dev.upload(v).unwrap();
    let on_dev = rays.upload(&dev);
    let rays = on_dev.rays();
    let (g, p) = (up(&flat), up(&params));
    let mut want = RenderOutput::zeros(&dev, r, 3).unwrap();
    renderer.forward(&g, None, &p, &rays, &mut want).unwrap();
    let grad_out = RenderOutput {
        features: up(&g_in),
        ray_length: up(&gl),
        neg_log_transmittance: up(&glam),
    };
    let mut grads = renderer.grads_zeros(r, params.len()).unwrap();
    renderer
        .backward(&g, None, &p, &rays, &grad_out, &mut grads)
        .unwrap();

    let mut z = npyz::npz::NpzArchive::open(dir.join("o.npz")).unwrap();
    let feat = z.by_name("features").unwrap().unwrap();
    assert_eq!(feat.shape(), &[r as u64, 3]);
    assert_eq!(
        feat.into_vec::<f32>().unwrap(),
        want.features.download().unwrap()
    );
    let lam: Vec<f32> = z
        .by_name("neg_log_transmittance")
        .unwrap()
        .unwrap()
        .into_vec()
        .unwrap();
    assert_eq!(lam, want.neg_log_transmittance.download().unwrap());
    let mut z = npyz::npz::NpzArchive::open(dir.join("grads.npz")).unwrap();
    let g1 = z.by_name("g1").unwrap().unwrap();
    assert_eq!(g1.shape(), &shapes[1]);
    let want_g = grads.grids.download().unwrap();
    let n0 = grids[0].len();
    assert_eq!(
        g1.into_vec::<f32>().unwrap(),
        want_g[n0..n0 + grids[1].len()]
    );
    let gp: Vec<f32> = z.by_name("params").unwrap().unwrap().into_vec().unwrap();
    assert_eq!(gp, grads.params.download().unwrap());
    assert!(gp.iter().any(|x| *x != 0.0));
    // A rays archive without `far` is an error naming it.
    write_npz(&dir.join("bad.npz"), &[("near", vec![1], vec![1.0])]);
    let out = trainkern()
        .args(["run", "render", "--samples", "8", "--hidden", "8"])
        .arg("--grids")
        .arg(dir.join("g.npz"))
        .arg("--params")
        .arg(dir.join("p.npy"))
        .arg("--rays")
        .arg(dir.join("bad.npz"))
        .arg("--out")
        .arg(dir.join("o2.npz"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("origins") || err.contains("far"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_writes_pngs_and_fitting_raises_psnr() {
    let dir = std::env::temp_dir().join(format!("trainkern-demo-{}", std::process::id()));
    let out = trainkern()
        .args(["demo", "--steps", "60", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "held-out view PSNR: before fitting X dB, after 60 steps Y dB"
    let line = stdout
        .lines()
        .find(|l| l.starts_with("held-out view PSNR"))
        .expect("a PSNR line");
    let numbers: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (before, after) = (numbers[0], numbers[2]);
    assert!(after > before + 3.0, "{line}");
    for (name, width) in [
        ("truth.png", 64),
        ("before.png", 64),
        ("after.png", 64),
        ("demo.png", 196),
    ] {
        let file = std::fs::File::open(dir.join(name)).unwrap();
        let reader = png::Decoder::new(std::io::BufReader::new(file))
            .read_info()
            .unwrap();
        let info = reader.info();
        assert_eq!((info.width, info.height), (width, 64), "{name}");
        assert_eq!(info.color_type, png::ColorType::Rgb, "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_splat_writes_the_library_values() {
    use trainkern::render::GridList;
    use trainkern::splat::{SplatMlp, SplatOptions, Splatter};
    let dir = std::env::temp_dir().join(format!("tk_splat_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vals = |n: usize, k: f32| -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 * 0.37 + k).sin()) * 0.8)
            .collect()
    };
    let out_shapes = [[1usize, 1, 4, 5, 3], [1, 3, 1, 5, 3]];
    let in_shape = [1u64, 3, 4, 5, 2];
    let input = vals(120, 1.0);
    write_npz(
        &dir.join("i.npz"),
        &[("i0", in_shape.to_vec(), input.clone())],
    );
    let mlp = SplatMlp {
        layers: 2,
        hidden: 6,
    };
    let params = mlp.xavier_init(2, 3, 5).unwrap();
    write_npy(&dir.join("p.npy"), &[params.len() as u64], &params);
    let r = 3;
    let rays = TestRays {
        origins: vec![0.0, 0.0, -2.0, 0.3, 0.1, -2.0, -0.4, 0.2, -2.0],
        directions: vec![0.0, 0.0, 1.0, 0.0, 0.1, 1.0, 0.2, 0.0, 1.0],
        near: vec![1.0; r],
        far: vec![3.0; r],
        batch: vec![0; r],
        encoding: Some(vals(2 * r, 3.0)),
    };
    rays.write(&dir.join("r.npz"));
    let list = GridList::new(&out_shapes).unwrap();
    let g_in = vals(list.len(), 4.0);
    let n0 = 60;
    write_npz(
        &dir.join("gin.npz"),
        &[
            ("g0", vec![1, 1, 4, 5, 3], g_in[..n0].to_vec()),
            ("g1", vec![1, 3, 1, 5, 3], g_in[n0..].to_vec()),
        ],
    );
    let out = trainkern()
        .args(["run", "splat", "--grid-sizes", "1,1,4,5,3; 1,3,1,5,3"])
        .args(["--samples", "9", "--layers", "2", "--hidden", "6"])
        .arg("--input-grids")
        .arg(dir.join("i.npz"))
        .arg("--params")
        .arg(dir.join("p.npy"))
        .arg("--rays")
        .arg(dir.join("r.npz"))
        .arg("--out")
        .arg(dir.join("o.npz"))
        .arg("--backward")
        .arg(dir.join("gin.npz"))
        .arg("--grads-out")
        .arg(dir.join("grads.npz"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The library on the same inputs.
    let dev = Device::cpu();
    let in_list = GridList::new(&[in_shape.map(|x| x as usize)]).unwrap();
    let opts = SplatOptions {
        samples: 9,
        ..Default::default()
    };
    let s = Splatter::with_mlp(&dev, &list, &in_list, mlp, opts).unwrap();
    let up = |v: &[f32]| dev.upload(v).unwrap();
    let on_dev = rays.upload(&dev);
    let rays = on_dev.rays();
    let (iv, pv) = (up(&input), up(&params));
    let mut want = dev.zeros::<f32>(list.len()).unwrap();
    s.forward_mlp(&iv, &pv, &rays, &mut want).unwrap();
    let mut grads = s.grads_zeros(r).unwrap();
    s.backward_mlp(&iv, &pv, &rays, &up(&g_in), &mut grads)
        .unwrap();
    let want = want.download().unwrap();
    let mut z = npyz::npz::NpzArchive::open(dir.join("o.npz")).unwrap();
    let g1 = z.by_name("g1").unwrap().unwrap();
    assert_eq!(g1.shape(), &[1, 3, 1, 5, 3]);
    close("g1", g1.into_vec().unwrap(), want[n0..].to_vec());
    let mut z = npyz::npz::NpzArchive::open(dir.join("grads.npz")).unwrap();
    let get = |z: &mut npyz::npz::NpzArchive<_>, name: &str| -> Vec<f32> {
        z.by_name(name).unwrap().unwrap().into_vec().unwrap()
    };
    close(
        "i0",
        get(&mut z, "i0"),
        grads.input_grids.download().unwrap(),
    );
    close(
        "params",
        get(&mut z, "params"),
        grads.params.download().unwrap(),
    );
    close(
        "encoding",
        get(&mut z, "encoding"),
        grads.encoding.download().unwrap(),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_splat_plain_writes_the_library_values() {
    use trainkern::render::GridList;
    use trainkern::splat::{SplatOptions, Splatter};
    let dir = std::env::temp_dir().join(format!("tk_splat_plain_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let r = 2;
    let rays = TestRays {
        origins: vec![0.1, 0.0, -2.0, -0.3, 0.2, -2.0],
        directions: vec![0.0, 0.1, 1.0, 0.1, 0.0, 1.0],
        near: vec![1.0; r],
        far: vec![3.0; r],
        batch: vec![0, 1],
        encoding: Some(vec![1.0, -2.0, 0.5, 0.25]),
    };
    rays.write(&dir.join("r.npz"));
    let shape = [2u64, 3, 4, 5, 2];
    let list = GridList::new(&[shape.map(|x| x as usize)]).unwrap();
    let g_in: Vec<f32> = (0..list.len()).map(|i| (i as f32 * 0.1).cos()).collect();
    write_npz(
        &dir.join("gin.npz"),
        &[("g0", shape.to_vec(), g_in.clone())],
    );
    let out = trainkern()
        .args([
            "run",
            "splat",
            "--grid-sizes",
            "2,3,4,5,2",
            "--samples",
            "7",
        ])
        .arg("--rays")
        .arg(dir.join("r.npz"))
        .arg("--out")
        .arg(dir.join("o.npz"))
        .arg("--backward")
        .arg(dir.join("gin.npz"))
        .arg("--grads-out")
        .arg(dir.join("grads.npz"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dev = Device::cpu();
    let s = Splatter::new(
        &dev,
        &list,
        SplatOptions {
            samples: 7,
            ..Default::default()
        },
    )
    .unwrap();
    let on_dev = rays.upload(&dev);
    let rays = on_dev.rays();
    let mut want = dev.zeros::<f32>(list.len()).unwrap();
    s.forward(&rays, &mut want).unwrap();
    let mut want_g = dev.zeros::<f32>(2 * r).unwrap();
    s.backward(&rays, &dev.upload(&g_in).unwrap(), &mut want_g)
        .unwrap();
    let mut z = npyz::npz::NpzArchive::open(dir.join("o.npz")).unwrap();
    let g0 = z.by_name("g0").unwrap().unwrap();
    assert_eq!(g0.shape(), &shape);
    close("g0", g0.into_vec().unwrap(), want.download().unwrap());
    let mut z = npyz::npz::NpzArchive::open(dir.join("grads.npz")).unwrap();
    let ge = z.by_name("encoding").unwrap().unwrap();
    assert_eq!(ge.shape(), &[r as u64, 2]);
    close(
        "encoding",
        ge.into_vec().unwrap(),
        want_g.download().unwrap(),
    );
    // A malformed --grid-sizes is an error naming the flag, not a panic.
    let bad = trainkern()
        .args(["run", "splat", "--grid-sizes", "2,3,4", "--samples", "7"])
        .arg("--rays")
        .arg(dir.join("r.npz"))
        .arg("--out")
        .arg(dir.join("o2.npz"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--grid-sizes"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
