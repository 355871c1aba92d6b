//! The batched FFT: the CPU reference against closed forms and a direct DFT, every backend
//! against rustfft for every power of two from 2 to 2^20, both layouts and directions, bad
//! input.

mod common;

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;
use trainkern::fft::{Direction, Fft, Layout};
use trainkern::{Device, Error};

type Gen = common::Gen<0xff7>;

/// rustfft in f64 on the f32 input, laid out as `layout` says.
fn rustfft_of(x: &[f32], n: usize, batch: usize, layout: Layout, dir: Direction) -> Vec<f64> {
    let mut planner = FftPlanner::<f64>::new();
    let plan = match dir {
        Direction::Forward => planner.plan_fft_forward(n),
        Direction::Inverse => planner.plan_fft_inverse(n),
    };
    let at = |b: usize, k: usize| match layout {
        Layout::Contiguous => b * n + k,
        Layout::Interleaved => k * batch + b,
    };
    let mut out = vec![0.0f64; x.len()];
    for b in 0..batch {
        let mut v: Vec<Complex<f64>> = (0..n)
            .map(|k| Complex::new(f64::from(x[2 * at(b, k)]), f64::from(x[2 * at(b, k) + 1])))
            .collect();
        plan.process(&mut v);
        for (k, c) in v.iter().enumerate() {
            out[2 * at(b, k)] = c.re;
            out[2 * at(b, k) + 1] = c.im;
        }
    }
    out
}

fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    let mut err = 0.0;
    let mut norm = 0.0;
    for (g, w) in got.iter().zip(want) {
        let d = f64::from(*g) - w;
        err += if g.is_nan() { f64::INFINITY } else { d * d };
        norm += w * w;
    }
    (err / norm).sqrt()
}

fn run(
    dev: &Device,
    x: &[f32],
    n: usize,
    batch: usize,
    layout: Layout,
    dir: Direction,
) -> Vec<f32> {
    let mut fft = Fft::new(dev, n, batch, layout).unwrap();
    let mut data = dev.upload(x).unwrap();
    fft.process(&mut data, dir).unwrap();
    data.download().unwrap()
}

#[test]
fn reference_meets_closed_forms_and_the_direct_dft() {
    let cpu = Device::cpu();
    // An impulse at point 3 of n = 8: X_j = e^{-2 pi i 3 j / 8}.
    let mut x = vec![0.0f32; 16];
    x[6] = 1.0;
    let got = run(&cpu, &x, 8, 1, Layout::Contiguous, Direction::Forward);
    for j in 0..8 {
        let a = -std::f64::consts::TAU * 3.0 * j as f64 / 8.0;
        assert!((f64::from(got[2 * j]) - a.cos()).abs() < 1e-7);
        assert!((f64::from(got[2 * j + 1]) - a.sin()).abs() < 1e-7);
    }
    // A pure tone e^{+2 pi i 5 k / 64} is 64 at bin 5 and 0 elsewhere.
    let tone: Vec<f32> = (0..64)
        .flat_map(|k| {
            let a = std::f64::consts::TAU * 5.0 * k as f64 / 64.0;
            [a.cos() as f32, a.sin() as f32]
        })
        .collect();
    let got = run(&cpu, &tone, 64, 1, Layout::Contiguous, Direction::Forward);
    for j in 0..64 {
        let want = if j == 5 { 64.0 } else { 0.0 };
        assert!((f64::from(got[2 * j]) - want).abs() < 1e-5, "bin {j}");
        assert!(f64::from(got[2 * j + 1]).abs() < 1e-5, "bin {j}");
    }
    // The direct O(n^2) DFT, both layouts and directions, batch 3.
    let (n, batch) = (16, 3);
    let mut g = Gen::new(1);
    let x: Vec<f32> = g
        .vec(2 * n * batch, -1.0, 1.0)
        .iter()
        .map(|&v| v as f32)
        .collect();
    for layout in [Layout::Contiguous, Layout::Interleaved] {
        for (dir, sign) in [(Direction::Forward, -1.0), (Direction::Inverse, 1.0)] {
            let got = run(&cpu, &x, n, batch, layout, dir);
            let at = |b: usize, k: usize| match layout {
                Layout::Contiguous => b * n + k,
                Layout::Interleaved => k * batch + b,
            };
            for b in 0..batch {
                for j in 0..n {
                    let (mut re, mut im) = (0.0f64, 0.0f64);
                    for k in 0..n {
                        let a = sign * std::f64::consts::TAU * (j * k) as f64 / n as f64;
                        let (xr, xi) = (f64::from(x[2 * at(b, k)]), f64::from(x[2 * at(b, k) + 1]));
                        re += xr * a.cos() - xi * a.sin();
                        im += xr * a.sin() + xi * a.cos();
                    }
                    assert!(
                        (f64::from(got[2 * at(b, j)]) - re).abs() < 1e-6,
                        "{layout:?} {dir:?}"
                    );
                    assert!(
                        (f64::from(got[2 * at(b, j) + 1]) - im).abs() < 1e-6,
                        "{layout:?} {dir:?}"
                    );
                }
            }
        }
    }
    // n = 1 is the identity.
    assert_eq!(
        run(
            &cpu,
            &[2.0, -3.0],
            1,
            1,
            Layout::Contiguous,
            Direction::Inverse
        ),
        [2.0, -3.0]
    );
}

/// Every power of two from 2 to 2^20 on every backend: relative L2 against rustfft in f64
/// within testing.md's 1e-5 for sums (measured: a few 1e-7 at 2^20). Batches are odd where
/// they are not 1, layouts and directions alternate with the size, and a data buffer that does
/// not fit a binding (the 4 KiB wgpu twin) must be refused by name.
#[test]
fn every_backend_matches_rustfft_for_every_power_of_two() {
    for (name, dev) in common::devices() {
        let mut worst = 0.0f64;
        for log in 1..=20u32 {
            let n = 1usize << log;
            let batch = if n <= 1 << 12 {
                5
            } else if n <= 1 << 16 {
                3
            } else {
                1
            };
            let layout = if log % 2 == 0 {
                Layout::Contiguous
            } else {
                Layout::Interleaved
            };
            let dir = if log % 3 == 0 {
                Direction::Inverse
            } else {
                Direction::Forward
            };
            let mut g = Gen::new(u64::from(log));
            let x: Vec<f32> = g
                .vec(2 * n * batch, -1.0, 1.0)
                .iter()
                .map(|&v| v as f32)
                .collect();
            let mut fft = match Fft::new(dev, n, batch, layout) {
                Ok(f) => f,
                Err(Error::LimitExceeded { what, .. }) if name == "wgpu/4KiB-chunks" => {
                    assert!(what.contains("fft"), "{what}");
                    continue;
                }
                Err(e) => panic!("{name}: n = {n}: {e}"),
            };
            let mut data = dev.upload(&x).unwrap();
            fft.process(&mut data, dir).unwrap();
            let got = data.download().unwrap();
            let err = rel_l2(&got, &rustfft_of(&x, n, batch, layout, dir));
            assert!(
                err <= 1e-5,
                "{name}: n = {n} {layout:?} {dir:?}: rel L2 {err:e}"
            );
            worst = worst.max(err);
            // Planned once, run again: the scratch buffer's leftovers must not matter.
            if log == 5 {
                let mut again = dev.upload(&x).unwrap();
                fft.process(&mut again, dir).unwrap();
                assert_eq!(
                    again.download().unwrap(),
                    got,
                    "{name}: a second run differs"
                );
            }
        }
        eprintln!("fft on {name}: worst rel L2 against rustfft (f64) {worst:.2e}");
    }
}

/// Forward then inverse is `n` times the input, on every backend, both layouts.
#[test]
fn inverse_undoes_forward_on_every_backend() {
    let (n, batch) = (32, 7);
    let mut g = Gen::new(77);
    let x: Vec<f32> = g
        .vec(2 * n * batch, -1.0, 1.0)
        .iter()
        .map(|&v| v as f32)
        .collect();
    for (name, dev) in common::devices() {
        for layout in [Layout::Contiguous, Layout::Interleaved] {
            let mut fft = Fft::new(dev, n, batch, layout).unwrap();
            let mut data = dev.upload(&x).unwrap();
            fft.process(&mut data, Direction::Forward).unwrap();
            fft.process(&mut data, Direction::Inverse).unwrap();
            let want: Vec<f64> = x.iter().map(|&v| f64::from(v) * n as f64).collect();
            let err = rel_l2(&data.download().unwrap(), &want);
            assert!(err <= 1e-6, "{name} {layout:?}: {err:e}");
        }
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let cpu = Device::cpu();
    for n in [0usize, 3, 12] {
        let e = Fft::new(&cpu, n, 1, Layout::Contiguous)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("fft") && e.contains("power of two"), "{e}");
    }
    let e = Fft::new(&cpu, 1 << 27, 1, Layout::Contiguous)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("power of two in [1, 2^26]"), "{e}");
    let e = Fft::new(&cpu, 8, 0, Layout::Contiguous)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("batch"), "{e}");
    let e = Fft::new(&cpu, 1 << 26, 1 << 10, Layout::Contiguous)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("f32 elements"), "{e}");
    let mut fft = Fft::new(&cpu, 8, 2, Layout::Interleaved).unwrap();
    let mut short = cpu.upload(&[0.0f32; 30]).unwrap();
    let e = fft
        .process(&mut short, Direction::Forward)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("fft") && e.contains("data") && e.contains("32 elements"),
        "{e}"
    );
    // Untouched after the refusal.
    assert_eq!(short.download().unwrap(), vec![0.0; 30]);
    for (name, dev) in common::devices() {
        if dev.same(&cpu) {
            continue;
        }
        let mut elsewhere = dev.upload(&[0.0f32; 32]).unwrap();
        let e = fft
            .process(&mut elsewhere, Direction::Forward)
            .err()
            .unwrap();
        assert!(
            matches!(e, Error::WrongDevice { op: "fft", .. }),
            "{name}: {e}"
        );
    }
}
