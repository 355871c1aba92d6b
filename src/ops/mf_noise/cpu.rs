//! The CPU reference of the MF noise generators: per coordinate, the recurrences of the module
//! table in f64 from the f32 state, the portable f32 Gaussians of [`crate::rng`], and the sum
//! `g + sigma * x` formed in f32 and rounded once to the gradient's type.

use rayon::prelude::*;

use super::{Mechanism, STREAM_TAG, StepArgs};
use crate::buffer::Float;
use crate::rng;

/// The Gaussians of step `t` for the generator's coordinates.
fn z(a: &StepArgs, t: u64) -> Vec<f32> {
    let mut z = vec![0.0f32; a.len];
    rng::gaussians_into(a.seed, STREAM_TAG | t, a.offset, &mut z);
    z
}

pub(super) fn step<T: Float>(mech: &Mechanism, a: &StepArgs, grad: &mut [T], state: &mut [f32]) {
    let len = a.len;
    let t = a.t;
    let x: Vec<f64> = match mech {
        Mechanism::Fir { weights, dense } => {
            let taps = if *dense {
                t as usize + 1
            } else {
                weights.len().min(t as usize + 1)
            };
            let row = if *dense { t as usize * a.n } else { 0 };
            let mut x = vec![0.0f64; len];
            for q in 0..taps {
                let w = f64::from(weights[row + q]);
                for (xi, zi) in x.iter_mut().zip(z(a, t - q as u64)) {
                    *xi += w * f64::from(zi);
                }
            }
            x
        }
        Mechanism::Band { c, nu } => {
            let slots = c.len() - 1;
            let zt = z(a, t);
            let nu_t = f64::from(nu[t as usize]);
            let mut x = vec![0.0f64; len];
            x.par_iter_mut().enumerate().for_each(|(i, xi)| {
                let mut y = f64::from(zt[i]);
                for (r, cr) in c.iter().enumerate().take(slots.min(t as usize) + 1).skip(1) {
                    let slot = (t as usize - r) % slots;
                    y -= f64::from(*cr) * f64::from(state[slot * len + i]);
                }
                *xi = y / f64::from(c[0]);
            });
            if slots > 0 {
                let slot = t as usize % slots;
                for (s, y) in state[slot * len..(slot + 1) * len].iter_mut().zip(&x) {
                    *s = *y as f32;
                }
            }
            x.iter_mut().for_each(|v| *v *= nu_t);
            x
        }
        Mechanism::Blt { theta, omega } => {
            let zt = z(a, t);
            let m = theta.len();
            let mut x = vec![0.0f64; len];
            for (i, xi) in x.iter_mut().enumerate() {
                let mut v = f64::from(zt[i]);
                for k in 0..m {
                    v -= f64::from(omega[k]) * f64::from(state[k * len + i]);
                }
                for k in 0..m {
                    let s = &mut state[k * len + i];
                    *s = (f64::from(theta[k]) * f64::from(*s) + v) as f32;
                }
                *xi = v;
            }
            x
        }
    };
    for (g, x) in grad.iter_mut().zip(&x) {
        *g = T::from_f32(g.to_f32() + a.sigma * (*x as f32));
    }
}
