//! The CPU reference of the MF noise generators: per coordinate, the recurrences of the module
//! table in f64 from the state (f32 or bf16, each stored value rounded once), the portable f32
//! Gaussians of [`crate::rng`], and the sum `g + sigma * x` formed in f32 and rounded once to
//! the gradient's type. State blocks of `W` coordinates run in parallel; each draws its own
//! Gaussians. Within a block, pieces of [`piece_len`] coordinates go through one loop per term,
//! in buffers that stay in L1, compiled for the widest vector ISA the CPU has.

use rayon::prelude::*;

use super::{Mechanism, STREAM_TAG, StepArgs};
use crate::backend::cpu;
use crate::buffer::Float;
use crate::rng;

/// The most coordinates per piece of a state block on the CPU.
const PIECE: usize = 1024;

/// How far ahead of its use, in elements, each stream is prefetched.
const AHEAD: usize = 1024;

/// Coordinates per piece for a step that touches `streams` distinct vectors (state and
/// gradient). The Gaussians of a piece are pure arithmetic, during which no stream advances, so
/// short pieces keep memory busier (BandMF p = 8 at 2^26 coordinates, A/B: 116 -> 100 ms, BLT
/// m = 8 156 -> 129 ms); but past about a dozen streams short runs of each cost more than they
/// gain (BandMF p = 16: 185 -> 203 ms), so long pieces there. 256 is the Gaussians' vector
/// batch.
fn piece_len(streams: usize) -> usize {
    if streams <= 12 { 256 } else { PIECE }
}

pub(super) fn step<T: Float, S: Float>(
    mech: &Mechanism,
    a: &StepArgs,
    grad: &mut [T],
    state: &mut [S],
) {
    let w = a.block;
    let vectors = mech.state_vectors();
    let add = |b: usize, g: &mut [T], parts: &mut [&mut [S]]| {
        cpu::vectorized(
            #[inline(always)]
            || add_block(mech, a, a.offset + (b * w) as u64, g, parts),
        )
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

/// `g += sigma x_t` for one state block from global coordinate `first`, piece by piece.
#[inline(always)]
fn add_block<T: Float, S: Float>(
    mech: &Mechanism,
    a: &StepArgs,
    first: u64,
    g: &mut [T],
    parts: &mut [&mut [S]],
) {
    let mut z = [0.0f32; PIECE];
    let mut x = [0.0f64; PIECE];
    // The Fourier table reads one of its vectors per step.
    let vectors = match mech {
        Mechanism::Table { .. } => 1,
        _ => parts.len(),
    };
    let len = piece_len(vectors + 1);
    if let Mechanism::Fir {
        weights,
        dense: false,
    } = mech
        && let [w] = weights[..]
    {
        // One tap (independent noise): `x = w z` formed and rounded in each coordinate's own
        // update, the same operations without the pieces' f64 buffer (2^26 coordinates, A/B:
        // 59-62 -> 43-47 ms, add_gaussian's time).
        let w = f64::from(w);
        for (p, gp) in g.chunks_mut(len).enumerate() {
            let z = &mut z[..gp.len()];
            let at = first + (p * len) as u64;
            rng::gaussians_into(a.seed, STREAM_TAG | a.t, at, z);
            for (g, z) in gp.iter_mut().zip(z.iter()) {
                // `0.0 +` as the general loop's zeroed sum: a -0.0 product becomes +0.0 there.
                let x = (0.0 + w * f64::from(*z)) as f32;
                *g = T::from_f32(g.to_f32() + a.sigma * x);
            }
        }
        return;
    }
    for (p, gp) in g.chunks_mut(len).enumerate() {
        let at = p * len;
        let n = gp.len();
        let (z, x) = (&mut z[..n], &mut x[..n]);
        let first = first + at as u64;
        piece(mech, a, first, z, x, parts, at);
        let line = 64 / std::mem::size_of::<T>();
        for (gl, xl) in gp.chunks_mut(line).zip(x.chunks(line)) {
            cpu::prefetch(gl.as_ptr().wrapping_add(AHEAD));
            for (g, x) in gl.iter_mut().zip(xl) {
                *g = T::from_f32(g.to_f32() + a.sigma * (*x as f32));
            }
        }
    }
}

/// `x = x_t` for the `x.len()` coordinates from global index `first`, which sit at `at` in
/// the block's state vectors (updated, stored values rounded once to the state's type); `z`
/// is scratch for Gaussians.
#[inline(always)]
fn piece<S: Float>(
    mech: &Mechanism,
    a: &StepArgs,
    first: u64,
    z: &mut [f32],
    x: &mut [f64],
    state: &mut [&mut [S]],
    at: usize,
) {
    let t = a.t;
    let n = x.len();
    let draw = |s: u64, z: &mut [f32]| rng::gaussians_into(a.seed, STREAM_TAG | s, first, z);
    match mech {
        Mechanism::Fir { weights, dense } => {
            let taps = if *dense {
                t as usize + 1
            } else {
                weights.len().min(t as usize + 1)
            };
            let row = if *dense { t as usize * a.n } else { 0 };
            x.fill(0.0);
            for q in 0..taps {
                let w = f64::from(weights[row + q]);
                draw(t - q as u64, z);
                for (xi, zi) in x.iter_mut().zip(z.iter()) {
                    *xi += w * f64::from(*zi);
                }
            }
        }
        Mechanism::Band { c, nu } => {
            let slots = c.len() - 1;
            draw(t, z);
            for (xi, zi) in x.iter_mut().zip(z.iter()) {
                *xi = f64::from(*zi);
            }
            // x -= c_r s_{t-r}, r = 1, 2, ... in order.
            sub_all(x, slots.min(t as usize), |k| {
                let r = k + 1;
                (
                    f64::from(c[r]),
                    &state[(t as usize - r) % slots][at..at + n],
                )
            });
            let c0 = f64::from(c[0]);
            let nu_t = f64::from(nu[t as usize]);
            if slots > 0 {
                let s = &mut state[t as usize % slots][at..at + n];
                let line = 64 / std::mem::size_of::<S>();
                for (sl, xl) in s.chunks_mut(line).zip(x.chunks_mut(line)) {
                    cpu::prefetch(sl.as_ptr().wrapping_add(AHEAD));
                    for (si, xi) in sl.iter_mut().zip(xl) {
                        let y = *xi / c0;
                        *si = S::from_f32(y as f32);
                        *xi = y * nu_t;
                    }
                }
            } else {
                for xi in x.iter_mut() {
                    *xi = *xi / c0 * nu_t;
                }
            }
        }
        Mechanism::Blt { theta, omega } => {
            draw(t, z);
            for (xi, zi) in x.iter_mut().zip(z.iter()) {
                *xi = f64::from(*zi);
            }
            sub_all(x, omega.len(), |k| {
                (f64::from(omega[k]), &state[k][at..at + n])
            });
            // The state was read (and prefetched) just above: it is in cache.
            for (s, th) in state.iter_mut().zip(theta) {
                let th = f64::from(*th);
                for (si, xi) in s[at..at + n].iter_mut().zip(x.iter()) {
                    *si = S::from_f32((th * f64::from(si.to_f32()) + xi) as f32);
                }
            }
        }
        // The Fourier table's vector for this step.
        Mechanism::Table { .. } => {
            for (xi, v) in x.iter_mut().zip(&state[t as usize][at..at + n]) {
                *xi = f64::from(v.to_f32());
            }
        }
    }
}

/// `x -= c_k s_k` for `k = 0 .. taps` in order, with `tap(k) = (c_k, s_k)`: up to four taps per
/// pass over `x`.
#[inline(always)]
fn sub_all<'a, S: Float + 'a>(x: &mut [f64], taps: usize, tap: impl Fn(usize) -> (f64, &'a [S])) {
    let mut k = 0;
    while k < taps {
        match taps - k {
            1 => sub_taps(x, [tap(k)]),
            2 => sub_taps(x, [tap(k), tap(k + 1)]),
            3 => sub_taps(x, [tap(k), tap(k + 1), tap(k + 2)]),
            _ => sub_taps(x, [tap(k), tap(k + 1), tap(k + 2), tap(k + 3)]),
        }
        k += 4;
    }
}

/// `x -= c_1 s_1`, then `x -= c_2 s_2`, ... for the `N` taps in order, in one pass over `x`;
/// each `s` is prefetched one piece ahead: a state vector is read in pieces with other work
/// between them, and crosses a 4 KiB page each piece, where the hardware prefetcher stops.
#[inline(always)]
fn sub_taps<S: Float, const N: usize>(x: &mut [f64], taps: [(f64, &[S]); N]) {
    // 16 elements: a 64-byte line of f32 state (half of one of bf16, prefetched twice).
    const LINE: usize = 16;
    let c = taps.map(|(c, _)| c);
    let whole = x.len() / LINE * LINE;
    let (x, tail) = x.split_at_mut(whole);
    for (j, xl) in x.chunks_exact_mut(LINE).enumerate() {
        let at = j * LINE;
        let s = taps.map(|(_, s)| &s[at..at + LINE]);
        for s in s {
            cpu::prefetch(s.as_ptr().wrapping_add(AHEAD));
        }
        // Arrays: the compiler sees lines of exactly LINE and vectorizes across them.
        let xl: &mut [f64; LINE] = xl.try_into().expect("chunks_exact");
        // A local copy of the line, and the taps as loops over it: written as one loop over
        // the elements with the taps inside, LLVM left three taps scalar (BandMF p = 8 spent
        // a fifth of its time there).
        let s: [&[S; LINE]; N] = s.map(|s| s.try_into().expect("a line"));
        let mut v = *xl;
        for k in 0..N {
            let sk = s[k].map(|e| f64::from(e.to_f32()));
            for l in 0..LINE {
                v[l] -= c[k] * sk[l];
            }
        }
        *xl = v;
    }
    sub_line(tail, c, taps.map(|(_, s)| &s[whole..]));
}

/// `x[l] -= c_k s_k[l]` for `k = 0 .. N` in order, for every `l` of `x`.
#[inline(always)]
fn sub_line<S: Float, const N: usize>(x: &mut [f64], c: [f64; N], s: [&[S]; N]) {
    for (l, xi) in x.iter_mut().enumerate() {
        let mut v = *xi;
        for k in 0..N {
            v -= c[k] * f64::from(s[k][l].to_f32());
        }
        *xi = v;
    }
}
