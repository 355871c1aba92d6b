//! Bench cases of the FFT: `len` complex points as 1024-point signals (interleaved, the layout
//! of a Fourier noise table) and as signals of `min(len, 2^20)` points (contiguous), forward;
//! and once per run, the Fourier mechanism's table for a block of 2^16 coordinates and 256
//! steps (N = 512), built where the generator lives. Minimum bytes: an FFT reads and writes
//! each point once (16 bytes); a table build writes the table (4 bytes per step and
//! coordinate). FLOPs: `5 N log2 N` per transform, two per coordinate for a table.

use super::{Row, row, time};
use crate::Result;
use crate::backend::Device;
use crate::buffer::DType;
use crate::fft::{Direction, Fft, Layout};
use crate::mf::Strategy;
use crate::mf_noise::NoiseGenerator;

fn flops(n: usize, batch: usize) -> u64 {
    5 * (n * batch) as u64 * u64::from(n.trailing_zeros())
}

pub(super) fn run(
    dev: &Device,
    len: usize,
    copy_gbps: f64,
    progress: &mut dyn FnMut(&str),
    rows: &mut Vec<Row>,
) -> Result<()> {
    let long = len.min(1 << 20);
    for (op, n, layout) in [
        ("fft n=1024", 1024, Layout::Interleaved),
        ("fft n=min(len,2^20)", long, Layout::Contiguous),
    ] {
        if n > len || !len.is_power_of_two() {
            continue;
        }
        progress(&format!("{op} {len}"));
        let batch = len / n;
        let mut fft = match Fft::new(dev, n, batch, layout) {
            Ok(f) => f,
            Err(e @ crate::Error::LimitExceeded { .. }) => {
                eprintln!("bench: {op} at {len} points skipped: {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut data = dev.zeros::<f32>(2 * len)?;
        let seconds = time(dev, || fft.process(&mut data, Direction::Forward))?;
        let mut r = row(
            dev,
            op,
            DType::F32,
            len,
            seconds,
            16 * len as u64,
            copy_gbps,
        );
        r.flops = flops(n, batch);
        rows.push(r);
    }
    Ok(())
}

/// The Fourier table of one block of coordinates, built once per call.
pub(super) fn table(
    dev: &Device,
    copy_gbps: f64,
    progress: &mut dyn FnMut(&str),
    rows: &mut Vec<Row>,
) -> Result<()> {
    let (steps, coords) = match dev.backend() {
        crate::Backend::PtxEmu => (16, 1 << 10),
        _ => (256, 1 << 16),
    };
    progress(&format!("mf fourier table {coords} x {steps}"));
    let big = crate::mf::fourier::size(steps);
    let seconds = time(dev, || {
        NoiseGenerator::new(dev, &Strategy::Fourier, steps, coords, 0, 1, 1.0).map(|_| ())
    })?;
    let bytes = 4 * (steps * coords) as u64;
    let mut r = row(
        dev,
        "mf fourier table",
        DType::F32,
        coords,
        seconds,
        bytes,
        copy_gbps,
    );
    // A forward and an inverse transform per pair of coordinates (one in the real part, one in
    // the imaginary).
    r.flops = 2 * flops(big, coords.div_ceil(2));
    rows.push(r);
    Ok(())
}
