//! Check cases of the FFT: forward and inverse against the CPU reference (rustfft in f64) by
//! relative L2 (`design/testing.md`, sums): a 2-point signal, 1000 interleaved signals of 1024
//! points (a batch that is no power of two), and one signal of 2^20 points (2^16 on the
//! emulator, which interprets every butterfly).

use super::{Row, compare};
use crate::backend::Device;
use crate::buffer::DType;
use crate::fft::{Direction, Fft, Layout};
use crate::{Backend, Result};

fn run(dev: &Device, n: usize, batch: usize, layout: Layout, dir: Direction) -> Result<f64> {
    let x: Vec<f32> = (0..2 * n * batch)
        .map(|i| crate::rng::uniform(crate::rng::word(3, 0xff7, i as u64)) - 0.5)
        .collect();
    let cpu = Device::cpu();
    let mut want = cpu.upload(&x)?;
    Fft::new(&cpu, n, batch, layout)?.process(&mut want, dir)?;
    let mut got = dev.upload(&x)?;
    Fft::new(dev, n, batch, layout)?.process(&mut got, dir)?;
    let f = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
    Ok(compare::rel_l2(&f(got.download()?), &f(want.download()?)))
}

pub(super) fn cases(dev: &Device, progress: &mut dyn FnMut(&str), rows: &mut Vec<Row>) {
    let long = if dev.backend() == Backend::PtxEmu {
        1 << 16
    } else {
        1 << 20
    };
    let cases: [(&'static str, usize, usize, Layout); 3] = [
        ("one", 2, 1, Layout::Contiguous),
        ("batched", 1024, 1000, Layout::Interleaved),
        ("long", long, 1, Layout::Contiguous),
    ];
    for (size, n, batch, layout) in cases {
        for (op, dir) in [("fft", Direction::Forward), ("ifft", Direction::Inverse)] {
            progress(&format!("{op} {size}"));
            let mut row = Row {
                op,
                dtype: DType::F32,
                backend: dev.backend().to_string(),
                size,
                len: n * batch,
                metric: "rel L2",
                error: f64::INFINITY,
                tolerance: 1e-5,
                pass: false,
                note: format!("{batch} x {n} points, {layout:?}"),
            };
            match run(dev, n, batch, layout, dir) {
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
