//! Check cases of the noise ops: every dtype, fill and add, and the raw words.

use rayon::prelude::*;

use super::{Row, SizeClass, compare, size_classes};
use crate::backend::Device;
use crate::buffer::{DType, Float};
use crate::noise::{self, Gaussian};
use crate::{Result, rng};

const STD: f32 = 0.75;
const SEED: u64 = 0x7a11_c0de_5eed_0001;
const STREAM: u64 = 0x0000_0003_0000_0002;

pub(super) fn cases(dev: &Device, progress: &mut dyn FnMut(&str), rows: &mut Vec<Row>) {
    for class in size_classes(DType::F32, dev.backend()) {
        gaussian_cases::<f32>(dev, class, progress, rows);
        progress(&format!("fill_bits u32 {}", class.name));
        rows.push(bits_case(dev, class));
    }
    for class in size_classes(DType::F16, dev.backend()) {
        gaussian_cases::<half::f16>(dev, class, progress, rows);
        gaussian_cases::<half::bf16>(dev, class, progress, rows);
    }
}

fn gaussian_cases<T: Float>(
    dev: &Device,
    class: SizeClass,
    progress: &mut dyn FnMut(&str),
    rows: &mut Vec<Row>,
) {
    for add in [false, true] {
        let op = if add { "add_gaussian" } else { "fill_gaussian" };
        progress(&format!("{op} {} {}", T::DTYPE, class.name));
        rows.push(gaussian_case::<T>(dev, class, add, op));
    }
}

/// Inputs of add: uniform in [-2, 2) from a stream of their own, stored in T.
fn inputs<T: Float>(n: usize) -> Vec<T> {
    let mut w = vec![0u32; n];
    w.par_chunks_mut(1 << 16).enumerate().for_each(|(c, part)| {
        rng::words_into(SEED ^ 0xabcd, 99, (c << 16) as u64, part);
    });
    w.par_iter()
        .map(|&x| T::from_f32(4.0 * rng::uniform(x) - 2.0))
        .collect()
}

/// The reference in f64: `base_j + std * z(offset + j)`.
fn reference(base: Option<&[f64]>, n: usize, g: &Gaussian) -> Vec<f64> {
    let mut z = vec![0.0f64; n];
    z.par_chunks_mut(1 << 16).enumerate().for_each(|(c, part)| {
        rng::gaussians_f64_into(g.seed, g.stream, g.offset + (c << 16) as u64, part);
    });
    let std = f64::from(g.std);
    match base {
        None => z.par_iter().map(|z| std * z).collect(),
        Some(b) => z.par_iter().zip(b).map(|(z, b)| b + std * z).collect(),
    }
}

fn gaussian_case<T: Float>(dev: &Device, class: SizeClass, add: bool, op: &'static str) -> Row {
    let mut row = Row {
        op,
        dtype: T::DTYPE,
        backend: dev.backend().to_string(),
        size: class.name,
        len: class.len,
        metric: "",
        error: f64::INFINITY,
        tolerance: 0.0,
        pass: false,
        note: String::new(),
    };
    let g = Gaussian {
        std: STD,
        seed: SEED,
        stream: STREAM,
        offset: class.offset,
    };
    let run = || -> Result<(Vec<T>, Vec<T>)> {
        // Fill must overwrite every element: start from NaN and look for survivors.
        let input = if add {
            inputs::<T>(class.len)
        } else {
            vec![T::from_f32(f32::NAN); class.len]
        };
        let mut buf = dev.upload(&input)?;
        if add {
            noise::add_gaussian(dev, &mut buf, &g)?;
        } else {
            noise::fill_gaussian(dev, &mut buf, &g)?;
        }
        Ok((input, buf.download()?))
    };
    let (input, got) = match run() {
        Ok(x) => x,
        Err(e) => {
            row.note = e.to_string();
            return row;
        }
    };
    let base: Option<Vec<f64>> =
        add.then(|| input.par_iter().map(|x| f64::from(x.to_f32())).collect());
    drop(input);
    let want = reference(base.as_deref(), class.len, &g);
    drop(base);
    let got: Vec<f64> = got.par_iter().map(|x| f64::from(x.to_f32())).collect();
    match T::DTYPE {
        DType::F32 => {
            row.metric = "max |d|/(1+|ref|)";
            row.tolerance = 1e-5;
            row.error = compare::scaled_max_error(&got, &want);
            row.pass = row.error <= row.tolerance;
        }
        _ => {
            row.metric = "relative L2";
            row.tolerance = 1e-2;
            row.error = compare::rel_l2(&got, &want);
            // Each element also within one unit in the last place of its storage type (half
            // an ulp from the final rounding, the rest from the f32 sample).
            let (mant, min_exp) = if T::DTYPE == DType::F16 {
                (10, -14)
            } else {
                (7, -126)
            };
            let beyond = got
                .par_iter()
                .zip(&want)
                .filter(|(g, w)| {
                    (*g - *w).abs() > compare::ulp16(**w, mant, min_exp) + 1e-5 * (1.0 + w.abs())
                        || g.is_nan()
                })
                .count();
            row.pass = row.error <= row.tolerance && beyond == 0;
            if beyond > 0 {
                row.note = format!("{beyond} elements beyond one ulp of {}", T::DTYPE);
            }
        }
    }
    row
}

fn bits_case(dev: &Device, class: SizeClass) -> Row {
    let mut row = Row {
        op: "fill_bits",
        dtype: DType::U32,
        backend: dev.backend().to_string(),
        size: class.name,
        len: class.len,
        metric: "mismatched words",
        error: f64::INFINITY,
        tolerance: 0.0,
        pass: false,
        note: String::new(),
    };
    let run = || -> Result<Vec<u32>> {
        let mut buf = dev.upload(&vec![0xDEAD_BEEFu32; class.len])?;
        noise::fill_bits(dev, &mut buf, SEED, STREAM, class.offset)?;
        buf.download()
    };
    match run() {
        Ok(got) => {
            let mut want = vec![0u32; class.len];
            want.par_chunks_mut(1 << 16)
                .enumerate()
                .for_each(|(c, part)| {
                    rng::words_into(SEED, STREAM, class.offset + (c << 16) as u64, part);
                });
            let bad = got.par_iter().zip(&want).filter(|(a, b)| a != b).count();
            row.error = bad as f64;
            row.pass = bad == 0;
        }
        Err(e) => row.note = e.to_string(),
    }
    row
}
