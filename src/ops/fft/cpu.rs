//! The CPU reference: rustfft in f64 on each signal, rounded once to f32.

use rayon::prelude::*;
use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

use super::Layout;

pub(super) fn process(n: usize, batch: usize, layout: Layout, data: &mut [f32], inverse: bool) {
    let mut planner = FftPlanner::<f64>::new();
    let plan = if inverse {
        planner.plan_fft_inverse(n)
    } else {
        planner.plan_fft_forward(n)
    };
    let run = |signal: &mut Vec<Complex<f64>>| plan.process(signal);
    match layout {
        Layout::Contiguous => data.par_chunks_mut(2 * n).for_each(|s| {
            let mut v: Vec<Complex<f64>> = s
                .chunks_exact(2)
                .map(|c| Complex::new(f64::from(c[0]), f64::from(c[1])))
                .collect();
            run(&mut v);
            for (c, x) in s.chunks_exact_mut(2).zip(&v) {
                c[0] = x.re as f32;
                c[1] = x.im as f32;
            }
        }),
        Layout::Interleaved => {
            // Gather each signal (a strided column), transform, scatter back.
            let signals: Vec<Vec<Complex<f64>>> = (0..batch)
                .into_par_iter()
                .map(|b| {
                    let mut v: Vec<Complex<f64>> = (0..n)
                        .map(|k| {
                            let at = 2 * (k * batch + b);
                            Complex::new(f64::from(data[at]), f64::from(data[at + 1]))
                        })
                        .collect();
                    run(&mut v);
                    v
                })
                .collect();
            data.par_chunks_mut(2 * batch)
                .enumerate()
                .for_each(|(k, row)| {
                    for (b, c) in row.chunks_exact_mut(2).enumerate() {
                        c[0] = signals[b][k].re as f32;
                        c[1] = signals[b][k].im as f32;
                    }
                });
        }
    }
}
