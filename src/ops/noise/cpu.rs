//! CPU backend of the noise ops: rayon over chunks, each chunk through the portable f32
//! Gaussian of [`crate::rng`] (the definition's values in f64 are `rng::gaussians_f64`).

use rayon::prelude::*;

use super::{Gaussian, Mode};
use crate::backend::cpu::CHUNK;
use crate::buffer::{DType, Float};
use crate::rng;

/// Elements converted per inner batch: the f32 samples stay in L1 between the two loops.
const BATCH: usize = 1024;

pub(super) fn gaussian<T: Float>(out: &mut [T], g: &Gaussian, mode: Mode) {
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let mut z = [0.0f32; BATCH];
            for (b, part) in chunk.chunks_mut(BATCH).enumerate() {
                let first = g.offset + (c * CHUNK + b * BATCH) as u64;
                let z = &mut z[..part.len()];
                rng::gaussians_into(g.seed, g.stream, first, z);
                match mode {
                    // f16's conversion is fastest in batches (F16C); the others convert
                    // as they store.
                    Mode::Fill if T::DTYPE == DType::F16 => {
                        z.iter_mut().for_each(|z| *z *= g.std);
                        T::from_f32_slice(part, z);
                    }
                    Mode::Fill => {
                        for (o, z) in part.iter_mut().zip(z.iter()) {
                            *o = T::from_f32(g.std * z);
                        }
                    }
                    Mode::Add => {
                        for (o, z) in part.iter_mut().zip(z.iter()) {
                            *o = T::from_f32(o.to_f32() + g.std * z);
                        }
                    }
                }
            }
        });
}

pub(super) fn bits(out: &mut [u32], seed: u64, stream: u64, offset: u64) {
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| rng::words_into(seed, stream, offset + (c * CHUNK) as u64, chunk));
}
