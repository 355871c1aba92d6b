//! Bench cases of the MF noise generators: one step over `len` coordinates of BandMF (`p` = 8,
//! 16), BLT (`m` = 4, 8), BISR (`p` = 8) and independent noise. Minimum bytes per step, from
//! `design/mf.md`: BandMF `(p + 2) 4 d` (the gradient read and written, `p - 1` state vectors
//! read, one written), BLT `(2m + 2) 4 d`, BISR and independent `8 d`.

use super::{Row, Timing, row, time};
use crate::Result;
use crate::backend::Device;
use crate::buffer::DType;
use crate::mf::{Strategy, toeplitz};
use crate::mf_noise::NoiseGenerator;

/// Steps planned per generator: more than the bench ever takes.
const STEPS: usize = 4096;

/// The timing of one step, after the ring has filled.
fn one(dev: &Device, strategy: &Strategy, len: usize) -> Result<Timing> {
    let mut g = NoiseGenerator::new(dev, strategy, STEPS, len, 0, 1, 1.0)?;
    let mut grad = dev.zeros::<f32>(len)?;
    // Warm the ring past its first p - 1 steps so every step reads the whole state.
    for _ in 0..16 {
        let t = g.next_step();
        g.step(t, &mut grad)?;
    }
    time(dev, || {
        let t = g.next_step();
        g.step(t, &mut grad)
    })
}

pub(super) fn run(
    dev: &Device,
    len: usize,
    copy_gbps: f64,
    progress: &mut dyn FnMut(&str),
    rows: &mut Vec<Row>,
) -> Result<()> {
    let blt = |m: usize| Strategy::Blt {
        theta: (0..m).map(|i| 1.0 - 0.5f64.powi(i as i32 + 1)).collect(),
        omega: vec![0.5 / m as f64; m],
    };
    let cases: [(&'static str, Strategy, usize); 6] = [
        ("mf band p=8", Strategy::banded_sqrt(8), 10),
        ("mf band p=16", Strategy::banded_sqrt(16), 18),
        ("mf blt m=4", blt(4), 10),
        ("mf blt m=8", blt(8), 18),
        ("mf bisr p=8", Strategy::bisr(8), 2),
        (
            "mf independent",
            Strategy::Toeplitz(toeplitz::sqrt_prefix_sum(1)),
            2,
        ),
    ];
    for (op, strategy, words) in cases {
        progress(&format!("{op} {len}"));
        match one(dev, &strategy, len) {
            Ok(timing) => {
                let bytes = (words * 4 * len) as u64;
                rows.push(row(dev, op, DType::F32, len, timing, bytes, copy_gbps));
            }
            // A state of up to 15 vectors of len may not fit one wgpu binding or buffer: say so
            // and go on with the other cases.
            Err(e @ crate::Error::LimitExceeded { .. }) => {
                eprintln!("bench: {op} at {len} coordinates skipped: {e}");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
