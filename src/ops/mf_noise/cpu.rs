//! The CPU reference of the MF noise generators: per coordinate, the recurrences of the module
//! table in f64 from the state (f32 or bf16, each stored value rounded once), the portable f32
//! Gaussians of [`crate::rng`], and the sum `g + sigma * x` formed in f32 and rounded once to
//! the gradient's type. State blocks of `W`
//! coordinates run in parallel; each draws its own Gaussians.

use rayon::prelude::*;

use super::{Mechanism, STREAM_TAG, StepArgs};
use crate::buffer::Float;
use crate::rng;

/// Coordinates per piece of a state block on the CPU.
const PIECE: usize = 2048;

pub(super) fn step<T: Float, S: Float>(
    mech: &Mechanism,
    a: &StepArgs,
    grad: &mut [T],
    state: &mut [S],
) {
    let w = a.block;
    let vectors = mech.state_vectors();
    // A block in pieces of PIECE coordinates, so that a piece's Gaussians, its f64 values and
    // its state words stay in cache between the loops that touch them.
    let add = |b: usize, g: &mut [T], parts: &mut [&mut [S]]| {
        for (p, gp) in g.chunks_mut(PIECE).enumerate() {
            let at = p * PIECE;
            let first = a.offset + (b * w + at) as u64;
            let mut sub: Vec<&mut [S]> = parts
                .iter_mut()
                .map(|v| &mut v[at..at + gp.len()])
                .collect();
            let x = block(mech, a, first, gp.len(), &mut sub);
            for (g, x) in gp.iter_mut().zip(&x) {
                *g = T::from_f32(g.to_f32() + a.sigma * (*x as f32));
            }
        }
    };
    if vectors == 0 {
        // No state (the buffer is a one-element placeholder): blocks of the gradient alone.
        grad.par_chunks_mut(w)
            .enumerate()
            .for_each(|(b, g)| add(b, g, &mut []));
        return;
    }
    // One rayon task per state block: its W gradient elements and its V x W state words.
    grad.par_chunks_mut(w)
        .zip(state.par_chunks_mut(vectors * w))
        .enumerate()
        .for_each(|(b, (g, st))| {
            let mut parts: Vec<&mut [S]> = st.chunks_mut(w).map(|v| &mut v[..g.len()]).collect();
            add(b, g, &mut parts);
        });
}

/// The Gaussians of step `s` for `n` coordinates from global index `first`.
fn z(a: &StepArgs, s: u64, first: u64, n: usize) -> Vec<f32> {
    let mut z = vec![0.0f32; n];
    rng::gaussians_into(a.seed, STREAM_TAG | s, first, &mut z);
    z
}

/// `x_t` for one block of `n` coordinates, updating its state slices (stored values rounded
/// once to the state's type).
fn block<S: Float>(
    mech: &Mechanism,
    a: &StepArgs,
    first: u64,
    n: usize,
    state: &mut [&mut [S]],
) -> Vec<f64> {
    let t = a.t;
    match mech {
        Mechanism::Fir { weights, dense } => {
            let taps = if *dense {
                t as usize + 1
            } else {
                weights.len().min(t as usize + 1)
            };
            let row = if *dense { t as usize * a.n } else { 0 };
            let mut x = vec![0.0f64; n];
            for q in 0..taps {
                let w = f64::from(weights[row + q]);
                for (xi, zi) in x.iter_mut().zip(z(a, t - q as u64, first, n)) {
                    *xi += w * f64::from(zi);
                }
            }
            x
        }
        Mechanism::Band { c, nu } => {
            let slots = c.len() - 1;
            let zt = z(a, t, first, n);
            let mut y: Vec<f64> = zt.iter().map(|&v| f64::from(v)).collect();
            for r in 1..=slots.min(t as usize) {
                let s = &state[(t as usize - r) % slots];
                let cr = f64::from(c[r]);
                for (yi, si) in y.iter_mut().zip(s.iter()) {
                    *yi -= cr * f64::from(si.to_f32());
                }
            }
            let c0 = f64::from(c[0]);
            y.iter_mut().for_each(|v| *v /= c0);
            if slots > 0 {
                for (s, v) in state[t as usize % slots].iter_mut().zip(&y) {
                    *s = S::from_f32(*v as f32);
                }
            }
            let nu_t = f64::from(nu[t as usize]);
            y.iter().map(|v| v * nu_t).collect()
        }
        Mechanism::Blt { theta, omega } => {
            let zt = z(a, t, first, n);
            let mut x: Vec<f64> = zt.iter().map(|&v| f64::from(v)).collect();
            for (s, w) in state.iter().zip(omega) {
                let w = f64::from(*w);
                for (xi, si) in x.iter_mut().zip(s.iter()) {
                    *xi -= w * f64::from(si.to_f32());
                }
            }
            for (s, th) in state.iter_mut().zip(theta) {
                let th = f64::from(*th);
                for (si, xi) in s.iter_mut().zip(&x) {
                    *si = S::from_f32((th * f64::from(si.to_f32()) + xi) as f32);
                }
            }
            x
        }
        // The Fourier table's vector for this step.
        Mechanism::Table { .. } => state[t as usize]
            .iter()
            .map(|v| f64::from(v.to_f32()))
            .collect(),
    }
}
