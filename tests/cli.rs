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
