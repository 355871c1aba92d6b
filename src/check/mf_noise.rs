//! Check cases of the MF noise generators: each mechanism for `3p` (or `n`) steps over a ring
//! that wraps, a gradient of one element, a ragged length at an offset that carries into the high
//! RNG word, and 2^22 coordinates (70 001 and 2^18 + 3 on the emulator), against the CPU
//! reference after every step.

use super::{Row, compare};
use crate::backend::Device;
use crate::buffer::DType;
use crate::mf::{Strategy, toeplitz};
use crate::mf_noise::NoiseGenerator;
use crate::{Backend, Result};

/// Max scaled error of the gradient over all steps (f32 rule `|d| / (1 + |ref|)`).
fn run(dev: &Device, s: &Strategy, n: usize, len: usize, offset: u64) -> Result<f64> {
    let cpu = Device::cpu();
    let mut want = NoiseGenerator::new(&cpu, s, n, len, offset, 11, 0.9)?;
    let mut got = NoiseGenerator::new(dev, s, n, len, offset, 11, 0.9)?;
    let start: Vec<f32> = (0..len).map(|i| (i % 7) as f32 * 0.1).collect();
    let (mut a, mut b) = (cpu.upload(&start)?, dev.upload(&start)?);
    let mut worst = 0.0f64;
    for t in 0..n as u64 {
        want.step(t, &mut a)?;
        got.step(t, &mut b)?;
        let f = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
        worst = worst.max(compare::scaled_max_error(
            &f(b.download()?),
            &f(a.download()?),
        ));
    }
    Ok(worst)
}

pub(super) fn cases(dev: &Device, progress: &mut dyn FnMut(&str), rows: &mut Vec<Row>) {
    let sizes: Vec<(&'static str, usize, u64)> = match dev.backend() {
        Backend::PtxEmu => vec![("one", 1, 5), ("ragged", 70_001, (1 << 34) - 1_999)],
        _ => vec![
            ("one", 1, 5),
            ("ragged", 1_000_003, (1 << 34) - 1_999),
            ("4M", 1 << 22, 0),
        ],
    };
    let strategies: [(&'static str, Strategy, usize); 6] = [
        ("mf band p=16", Strategy::banded_sqrt(16), 48),
        (
            "mf blt m=4",
            Strategy::Blt {
                theta: vec![0.5, 0.9, 0.99, 0.999],
                omega: vec![0.2, 0.1, 0.05, 0.01],
            },
            48,
        ),
        ("mf bisr p=8", Strategy::bisr(8), 24),
        (
            "mf sqrt",
            Strategy::Toeplitz(toeplitz::sqrt_prefix_sum(12)),
            12,
        ),
        ("mf independent", Strategy::Toeplitz(vec![1.0]), 4),
        ("mf fourier", Strategy::Fourier, 16),
    ];
    for (size, len, offset) in &sizes {
        for (op, s, n) in &strategies {
            progress(&format!("{op} {size}"));
            let mut row = Row {
                op,
                dtype: DType::F32,
                backend: dev.backend().to_string(),
                size,
                len: *len,
                metric: "max |d|/(1+|ref|)",
                error: f64::INFINITY,
                tolerance: 1e-5,
                pass: false,
                note: format!("{n} steps"),
            };
            match run(dev, s, *n, *len, *offset) {
                Ok(e) => {
                    row.error = e;
                    row.pass = e <= row.tolerance;
                }
                Err(e) => row.note = e.to_string(),
            }
            rows.push(row);
        }
    }
}
