//! Bench cases of the noise ops.

use super::{Row, row, time};
use crate::Result;
use crate::backend::Device;
use crate::buffer::{DType, Float};
use crate::noise::{self, Gaussian};

const G: Gaussian = Gaussian {
    std: 1.0,
    seed: 0x5eed,
    stream: 1,
    offset: 0,
};

pub(super) fn run(
    dev: &Device,
    len: usize,
    copy_gbps: f64,
    progress: &mut dyn FnMut(&str),
    rows: &mut Vec<Row>,
) -> Result<()> {
    fill::<f32>(dev, len, copy_gbps, progress, rows)?;
    fill::<half::f16>(dev, len, copy_gbps, progress, rows)?;
    fill::<half::bf16>(dev, len, copy_gbps, progress, rows)?;
    progress(&format!("add_gaussian f32 {len}"));
    let mut x = dev.zeros::<f32>(len)?;
    let t = time(dev, || noise::add_gaussian(dev, &mut x, &G))?;
    rows.push(row(
        dev,
        "add_gaussian",
        DType::F32,
        len,
        t,
        8 * len as u64,
        copy_gbps,
    ));
    progress(&format!("fill_bits u32 {len}"));
    let mut w = dev.zeros::<u32>(len)?;
    let t = time(dev, || noise::fill_bits(dev, &mut w, G.seed, G.stream, 0))?;
    rows.push(row(
        dev,
        "fill_bits",
        DType::U32,
        len,
        t,
        4 * len as u64,
        copy_gbps,
    ));
    Ok(())
}

fn fill<T: Float>(
    dev: &Device,
    len: usize,
    copy_gbps: f64,
    progress: &mut dyn FnMut(&str),
    rows: &mut Vec<Row>,
) -> Result<()> {
    progress(&format!("fill_gaussian {} {len}", T::DTYPE));
    let mut out = dev.zeros::<T>(len)?;
    let t = time(dev, || noise::fill_gaussian(dev, &mut out, &G))?;
    let bytes = (T::DTYPE.size() * len) as u64;
    rows.push(row(
        dev,
        "fill_gaussian",
        T::DTYPE,
        len,
        t,
        bytes,
        copy_gbps,
    ));
    Ok(())
}
