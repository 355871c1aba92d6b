//! The CPU reference of UPGD: the public optimizers' arithmetic in f32, operation for
//! operation (PyTorch's order: `u*beta + (1-beta)*U`, `w*decay + (-lr)*d`), with the row norms
//! of local scaling accumulated in f64 and the sigmoid's exponential from [`exp_f32`].
//! Parallel over chunks of each tensor with rayon; within a chunk, pieces of [`PIECE`]
//! elements go through one loop per quantity (Gaussians, scaled utilities, the update), each
//! with its choices made outside it, so that the compiler vectorizes them. Local scaling sums
//! each row's squares in pass 1, right after the row is traced (rows up to a chunk long). In the
//! one-pass mode of weight-level UPGD the traces are updated inside the update's loop, so the
//! step reads the model once.

use rayon::prelude::*;

use super::{Role, Rule, Scalars, Scale, Scaling, TensorSpec, Variant, split_mut};
use crate::backend::cpu;
use crate::buffer::Float;
use crate::rng;

const CHUNK: usize = 1 << 14;

/// Elements per inner batch: their Gaussians and scaled utilities stay in L1. Short, because a
/// piece's Gaussians are pure arithmetic during which no stream advances (first-order global at
/// 2^26, A/B: 96-100 ms with 1024, 91-94 ms with 256, the Gaussians' vector batch).
const PIECE: usize = 256;

/// Elements per block of pass 1 whose rows are summed right after they are traced: the
/// block's `u`, `w` and `g` stay in L1.
const BLOCK: usize = 2048;

/// Lanes of the per-lane maxima and counts of pass 1 (a multiple of any vector width).
const LANES: usize = 16;

/// A chunk of the weights, of their own traces (weight-level UPGD) and, for adaptive, of the
/// moments.
struct Lane<'a, W, U> {
    w: &'a mut [W],
    u: Option<Trace<'a, U>>,
    m: Option<&'a mut [U]>,
    v: Option<&'a mut [U]>,
}

/// A chunk of traces as the update sees it: already traced by pass 1, or to be traced in the
/// update's own loop (the one-pass mode of weight-level UPGD, where an element's update reads
/// only its own trace and the scale comes from the previous step).
enum Trace<'a, U> {
    Read(&'a [U]),
    Update(&'a mut [U]),
}

/// The traces in their storage type `U` (f32 or bf16). A value is rounded to `U` when stored,
/// and every later use reads the stored value.
pub(super) struct State<'a, U> {
    pub u: &'a mut [U],
    pub m: Option<&'a mut [U]>,
    pub v: Option<&'a mut [U]>,
}

/// `U`, the instantaneous utility of one weight.
#[inline(always)]
pub(crate) fn utility(g: f32, w: f32, h: Option<f32>) -> f32 {
    match h {
        None => -g * w,
        Some(h) => 0.5 * h * (w * w) - g * w,
    }
}

/// `e^x` in f32 (Cephes `expf`): `x = k ln 2 + r` with `k = round(x / ln 2)` and `ln 2` split
/// in two parts so `r` is exact, a degree-7 polynomial for `e^r` on `|r| <= ln 2 / 2`, then
/// `2^k` applied as two exact powers of two (so `k = 128` near the top of the range does not
/// overflow the exponent field). About 1 ulp; `+inf` above `ln(f32::MAX)`, NaN for NaN, and
/// 0 below `-87.33`, where `e^x` nears the smallest normal f32: subnormal results are flushed
/// to zero (as flush-to-zero GPU arithmetic would), because producing one costs a CPU a
/// microcode assist per operation; the difference is below 1.2e-38 in absolute terms. Written
/// without calls or data-dependent branches so that loops over it vectorize, unlike libm's.
#[allow(clippy::excessive_precision)]
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const HI: f32 = 88.722_839; // ln(f32::MAX), rounded down
    // e^LO = 1.1763e-38, just above the smallest normal f32: nothing below is computed.
    const LO: f32 = -87.33;
    // 1.5 * 2^23: adding it rounds a value of magnitude below 2^22 to an integer (to nearest
    // even), which then sits in the low mantissa bits. No float-to-int conversion, whose
    // saturating NaN and range checks keep loops over this function scalar and branchy.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(LO, HI);
    let big = xc * std::f32::consts::LOG2_E + ROUND;
    let k = big.to_bits() as i32 - ROUND.to_bits() as i32;
    let kf = big - ROUND;
    let r = (xc - kf * 0.693_359_375) - kf * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452_0e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let e = p * (r * r) + r + 1.0;
    let k1 = k >> 1;
    let two_k1 = f32::from_bits(((k1 + 127) as u32) << 23);
    let two_k2 = f32::from_bits(((k - k1 + 127) as u32) << 23);
    let y = e * two_k1 * two_k2;
    // NaN passes through the arithmetic above.
    if x > HI {
        f32::INFINITY
    } else if x < LO {
        0.0
    } else {
        y
    }
}

/// `1 / (1 + e^-x)`, with results below the smallest normal f32 (`x < -87.3`) flushed to 0
/// (the PTX and WGSL keep subnormals; the difference is below 1.2e-38 in absolute terms): a
/// subnormal costs a CPU a microcode assist of a hundred cycles or more per operation, and a
/// saturated sigmoid is common (a trace far below `eta`).
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    // 2^126: where 1 / (1 + e) falls below 2^-126.
    const BIG: f32 = 8.507_059e37;
    let e = exp_f32(-x);
    let y = 1.0 / (1.0 + e.min(BIG));
    if e > BIG { 0.0 } else { y }
}

/// The scaled utility of global scaling; `s = 0.5` where `eta == 0` (the documented deviation).
#[inline(always)]
pub(crate) fn scaled_global(u: f32, bc: f32, eta: f32) -> f32 {
    if eta == 0.0 {
        0.5
    } else {
        sigmoid((u / bc) / eta)
    }
}

/// One step over every tensor, given as one slice per tensor of `w`, `g` (and `h`) in the
/// order of `tensors` (the traces stay flat, at the tensors' offsets); returns the number of
/// non-finite `g` and `h` entries and the step's reductions. `rows` is storage for the row sums
/// of local scaling, a vector an earlier step returned (or empty): every row that is read is
/// written, and the others are those of tensors never traced, still zero from its first step.
#[allow(clippy::too_many_arguments)]
pub(super) fn step<W: Float, G: Float, U: Float>(
    variant: Variant,
    sc: &Scalars,
    tensors: &[TensorSpec],
    roles: Option<&[Role]>,
    seed: u64,
    ws: Vec<&mut [W]>,
    gs: Vec<&[G]>,
    hs: Option<Vec<&[G]>>,
    st: State<'_, U>,
    prev: Option<&Scale>,
    mut rows: Vec<f32>,
) -> (u64, Scale) {
    let State { u, m, v } = st;
    // The one-pass mode of weight-level UPGD traces each chunk in the update's own loop: an
    // element's update reads only its own trace, and the scale is the previous step's. (Feature
    // level scales a unit's weights by its gate's trace, which must be traced first.)
    let fused = prev.is_some() && roles.is_none();
    // Pass 1: traces, the maximum raw trace, non-finite inputs and, for local scaling, the
    // row sums of squares of rows up to a chunk long, each taken right after its block is
    // traced so that it is read from cache (a separate pass reading `u` again cost 20-25% of
    // first-order local's step). One rayon task per chunk of every traced tensor (whole rows
    // where they are summed here), so the threads meet once per pass rather than once per
    // tensor. Feature-level UPGD traces the gates only.
    let traced = |k: usize| !fused && roles.is_none_or(|r| r[k] == Role::Gate);
    let local = variant.scaling() == Scaling::Local;
    let summed_in_pass1 = |k: usize| local && traced(k) && tensors[k].last_dim <= CHUNK;
    let row_base: Vec<usize> = tensors
        .iter()
        .scan(0, |acc, s| {
            let b = *acc;
            *acc += s.len / s.last_dim;
            Some(b)
        })
        .collect();
    rows.resize(if local { rows_in(tensors) } else { 0 }, 0.0);
    let mut rowsq = rows;
    let chunks: Vec<_> = split_mut(&mut *u, tensors)
        .into_iter()
        .zip(split_rows(&mut rowsq, tensors, local))
        .enumerate()
        .filter(|&(k, _)| traced(k))
        .flat_map(|(k, (uk, sk))| {
            let last_dim = tensors[k].last_dim;
            let per_task = if summed_in_pass1(k) {
                last_dim * rows_per_task(last_dim)
            } else {
                CHUNK
            };
            let mut sums = summed_in_pass1(k).then(|| sk.chunks_mut(per_task / last_dim));
            let chunks = uk.chunks_mut(per_task).enumerate();
            chunks.map(move |(c, uc)| {
                let s = sums.as_mut().and_then(Iterator::next);
                (k, c * per_task, uc, s)
            })
        })
        .collect();
    let (eta, mut nonfinite) = chunks
        .into_par_iter()
        .map(|(k, at, uc, sums)| {
            let r = at..at + uc.len();
            let (w, g) = (&ws[k][r.clone()], &gs[k][r.clone()]);
            let h = hs.as_ref().map(|h| &h[k][r]);
            cpu::vectorized(
                #[inline(always)]
                || match sums {
                    None => trace_chunk(sc, uc, w, g, h),
                    Some(sums) => trace_rows(sc, uc, w, g, h, tensors[k].last_dim, sums),
                },
            )
        })
        .reduce(|| (f32::NEG_INFINITY, 0), max_and_count);
    // The rest of the row sums: rows longer than a chunk, and every row in the one-pass mode,
    // which scales by the previous step's reductions and takes this step's after its update.
    if local && !fused {
        fill_row_sums(sc, tensors, u, &mut rowsq, |k| {
            traced(k) && !summed_in_pass1(k)
        });
    }
    let two_pass = Scale { eta, rowsq };
    let scale = prev.unwrap_or(&two_pass);
    // Pass 2: noise and the update (and the adaptive moments), one rayon task per chunk of
    // every updated tensor.
    // The traces as the update sees them, one slice per tensor: read (pass 1 traced them) or
    // updated there (fused); feature level reads the gates' through its `Source`.
    let (u_all, mut us): (&[U], Vec<Option<Trace<'_, U>>>) = if fused {
        let us = split_mut(&mut *u, tensors);
        (
            &[],
            us.into_iter().map(|u| Some(Trace::Update(u))).collect(),
        )
    } else {
        let u: &[U] = u;
        let own = |k: usize| {
            roles
                .is_none()
                .then(|| &u[tensors[k].offset..][..tensors[k].len])
        };
        (
            u,
            (0..tensors.len())
                .map(|k| own(k).map(Trace::Read))
                .collect(),
        )
    };
    let tensor_of = |ti: usize| {
        let s = tensors[ti];
        // Where each element's scaled utility comes from.
        let source = match roles.map(|r| r[ti]) {
            None => Source::Own { row0: row_base[ti] },
            Some(Role::Gated { gate }) => Source::Gate {
                u: &u_all[tensors[gate].offset..],
                row: row_base[gate],
            },
            // No gate: plain SGD with weight decay, no noise.
            _ => Source::None,
        };
        Tensor {
            variant,
            sc,
            scale,
            seed,
            offset: s.offset,
            last_dim: s.last_dim,
            source,
        }
    };
    let updated: Vec<Tensor<'_, U>> = (0..tensors.len()).map(tensor_of).collect();
    let mut ms = m.map(|m| split_mut(m, tensors).into_iter());
    let mut vs = v.map(|v| split_mut(v, tensors).into_iter());
    let mut chunks: Vec<(usize, usize, Lane<'_, W, U>)> = Vec::new();
    for (ti, w) in ws.into_iter().enumerate() {
        let (m, v) = (
            ms.as_mut().and_then(Iterator::next),
            vs.as_mut().and_then(Iterator::next),
        );
        if roles.is_some_and(|r| r[ti] == Role::Gate) {
            continue;
        }
        // A first chunk up to the next multiple of PIECE of the global index, so that every
        // piece after it draws whole RNG batches (first-order global at 2^26 over tensors of
        // odd length, a noisy hour: 106-112 ms at the last release, 76-81 now, as aligned ones).
        let head = ((PIECE - tensors[ti].offset % PIECE) % PIECE).min(w.len());
        let (w_head, w) = w.split_at_mut(head);
        let (u_head, u) = match us[ti].take() {
            Some(Trace::Read(u)) => {
                let (a, b) = u.split_at(head);
                (Some(Trace::Read(a)), Some(Trace::Read(b)))
            }
            Some(Trace::Update(u)) => {
                let (a, b) = u.split_at_mut(head);
                (Some(Trace::Update(a)), Some(Trace::Update(b)))
            }
            None => (None, None),
        };
        let (m_head, m) = m.map(|m| m.split_at_mut(head)).unzip();
        let (v_head, v) = v.map(|v| v.split_at_mut(head)).unzip();
        if head > 0 {
            let lane = Lane {
                w: w_head,
                u: u_head,
                m: m_head,
                v: v_head,
            };
            chunks.push((ti, 0, lane));
        }
        let mut uc = u.map(|u| match u {
            Trace::Read(u) => Chunks::Read(u.chunks(CHUNK)),
            Trace::Update(u) => Chunks::Update(u.chunks_mut(CHUNK)),
        });
        let mut mc = m.map(|m| m.chunks_mut(CHUNK));
        let mut vc = v.map(|v| v.chunks_mut(CHUNK));
        for (c, w) in w.chunks_mut(CHUNK).enumerate() {
            let u = uc.as_mut().and_then(|u| match u {
                Chunks::Read(it) => it.next().map(Trace::Read),
                Chunks::Update(it) => it.next().map(Trace::Update),
            });
            let m = mc.as_mut().and_then(Iterator::next);
            let v = vc.as_mut().and_then(Iterator::next);
            chunks.push((ti, head + c * CHUNK, Lane { w, u, m, v }));
        }
    }
    let (mx, bad) = chunks
        .into_par_iter()
        .map(|(ti, at, lane)| {
            let g = &gs[ti][at..];
            let h = hs.as_ref().map(|h| &h[ti][at..]);
            cpu::vectorized(
                #[inline(always)]
                || updated[ti].update_chunk(at, lane, g, h),
            )
        })
        .reduce(|| (f32::NEG_INFINITY, 0), max_and_count);
    let mut current = two_pass;
    if fused {
        // Traced in the update: this step's reductions come after it.
        (current.eta, nonfinite) = (mx, bad);
        if local {
            fill_row_sums(sc, tensors, u, &mut current.rowsq, |_| true);
        }
    }
    (nonfinite, current)
}

/// Two chunks' (maximum trace, non-finite count) as one: how both passes reduce.
fn max_and_count(a: (f32, u64), b: (f32, u64)) -> (f32, u64) {
    (a.0.max(b.0), a.1 + b.1)
}

/// Chunk iterators over one tensor's traces, as [`Trace`].
enum Chunks<'a, U> {
    Read(std::slice::Chunks<'a, U>),
    Update(std::slice::ChunksMut<'a, U>),
}

/// The number of rows of all tensors.
fn rows_in(tensors: &[TensorSpec]) -> usize {
    tensors.iter().map(|s| s.len / s.last_dim).sum()
}

/// `rowsq`, one sum per row of every tensor in order, as one slice per tensor (all empty
/// without `local` scaling, when `rowsq` is).
fn split_rows<'a>(rowsq: &'a mut [f32], tensors: &[TensorSpec], local: bool) -> Vec<&'a mut [f32]> {
    let mut rest = rowsq;
    tensors
        .iter()
        .map(|s| {
            let n = if local { s.len / s.last_dim } else { 0 };
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut(n);
            rest = tail;
            mine
        })
        .collect()
}

/// Per-row sums of squares of the bias-corrected trace of the tensors `which` selects, into
/// their rows of `rowsq` (one per row of every tensor, in order), in a pass of their own.
fn fill_row_sums<U: Float>(
    sc: &Scalars,
    tensors: &[TensorSpec],
    u: &[U],
    rowsq: &mut [f32],
    which: impl Fn(usize) -> bool,
) {
    let per_tensor = tensors.iter().zip(split_rows(rowsq, tensors, true));
    for (_, (s, sums)) in per_tensor.enumerate().filter(|&(k, _)| which(k)) {
        let rows = rows_per_task(s.last_dim);
        let u = &u[s.offset..s.offset + s.len];
        let tasks = u
            .par_chunks(rows * s.last_dim)
            .zip(sums.par_chunks_mut(rows));
        tasks.for_each(|(u, sums)| {
            cpu::vectorized(
                #[inline(always)]
                || sum_rows(u, s.last_dim, sc.bc, sums),
            )
        });
    }
}

/// Whole rows of `last_dim` per rayon task wherever rows are summed: about a chunk of elements,
/// or one row if longer.
fn rows_per_task(last_dim: usize) -> usize {
    (CHUNK / last_dim).max(1)
}

/// `sums[r]` = [`row_sumsq`] of row `r` of `u` (rows of `last_dim`).
#[inline(always)]
fn sum_rows<U: Float>(u: &[U], last_dim: usize, bc: f32, sums: &mut [f32]) {
    for (sum, row) in sums.iter_mut().zip(u.chunks(last_dim)) {
        *sum = row_sumsq(row, bc);
    }
}

/// The sum of squares of one row of the bias-corrected trace, `sum (u / bc)^2`, accumulated
/// in f64 in eight interleaved partial sums (element `k` into sum `k % 8`, added in order at the
/// end): a fixed order, so the result is deterministic, that vectorizes, unlike one running sum.
#[inline(always)]
fn row_sumsq<U: Float>(row: &[U], bc: f32) -> f32 {
    const SUMS: usize = 8;
    let mut acc = [0.0f64; SUMS];
    let mut add = |k: usize, u: &U| {
        let x = f64::from(u.to_f32() / bc);
        acc[k] += x * x;
    };
    let mut blocks = row.chunks_exact(SUMS);
    for b in &mut blocks {
        for (k, u) in b.iter().enumerate() {
            add(k, u);
        }
    }
    for (k, u) in blocks.remainder().iter().enumerate() {
        add(k, u);
    }
    acc.iter().sum::<f64>() as f32
}

/// Pass 1 over one chunk: `u <- u beta + (1 - beta) U`, stored in `U`; returns the maximum
/// stored trace (NaN left out) and the number of non-finite `g` and `h`.
#[inline(always)]
fn trace_chunk<W: Float, G: Float, U: Float>(
    sc: &Scalars,
    u: &mut [U],
    w: &[W],
    g: &[G],
    h: Option<&[G]>,
) -> (f32, u64) {
    // Per-lane maxima and counts over blocks of LANES, folded at the end, so the loop
    // vectorizes with the accumulators in registers; the last short block goes through the
    // same code.
    let mut acc = Lanes {
        mx: [f32::NEG_INFINITY; LANES],
        bad: [0; LANES],
    };
    let split = u.len() / LANES * LANES;
    let (u, ut) = u.split_at_mut(split);
    let (w, wt) = w.split_at(split);
    let (g, gt) = g.split_at(split);
    let blocks = u.chunks_exact_mut(LANES).zip(w.chunks_exact(LANES));
    let blocks = blocks.zip(g.chunks_exact(LANES));
    // Fixed-size arrays tell the compiler each block is exactly LANES long.
    let exact = "chunks_exact";
    match h {
        None => {
            for ((u, w), g) in blocks {
                let u: &mut [U; LANES] = u.try_into().expect(exact);
                let w: &[W; LANES] = w.try_into().expect(exact);
                let g: &[G; LANES] = g.try_into().expect(exact);
                acc.trace(sc, u, w, g, None);
            }
        }
        Some(h) => {
            for (((u, w), g), h) in blocks.zip(h.chunks_exact(LANES)) {
                let u: &mut [U; LANES] = u.try_into().expect(exact);
                let w: &[W; LANES] = w.try_into().expect(exact);
                let g: &[G; LANES] = g.try_into().expect(exact);
                let h: &[G; LANES] = h.try_into().expect(exact);
                acc.trace(sc, u, w, g, Some(h));
            }
        }
    }
    acc.trace(sc, ut, wt, gt, h.map(|h| &h[split..]));
    let mx = acc.mx.into_iter().fold(f32::NEG_INFINITY, f32::max);
    (mx, acc.bad.iter().map(|&b| u64::from(b)).sum())
}

/// Pass 1 over whole rows of `last_dim` (`u.len()` a multiple of it), as [`trace_chunk`], that
/// also writes each row's sum of squares (as [`row_sumsq`]) to `sums`: in blocks of whole rows
/// about [`BLOCK`] long (or one row, if longer), each summed right after it is traced, from
/// cache.
#[inline(always)]
fn trace_rows<W: Float, G: Float, U: Float>(
    sc: &Scalars,
    u: &mut [U],
    w: &[W],
    g: &[G],
    h: Option<&[G]>,
    last_dim: usize,
    sums: &mut [f32],
) -> (f32, u64) {
    let block = last_dim * (BLOCK / last_dim).max(1);
    let mut acc = (f32::NEG_INFINITY, 0);
    let blocks = u.chunks_mut(block).zip(sums.chunks_mut(block / last_dim));
    for (b, (ub, sb)) in blocks.enumerate() {
        let r = b * block..b * block + ub.len();
        let h = h.map(|h| &h[r.clone()]);
        acc = max_and_count(acc, trace_chunk(sc, ub, &w[r.clone()], &g[r], h));
        sum_rows(ub, last_dim, sc.bc, sb);
    }
    acc
}

/// Pass 1's running maxima and non-finite counts, lane by lane.
struct Lanes {
    mx: [f32; LANES],
    bad: [u32; LANES],
}

impl Lanes {
    /// Up to LANES elements, element `l` into lane `l`.
    #[inline(always)]
    fn trace<W: Float, G: Float, U: Float>(
        &mut self,
        sc: &Scalars,
        u: &mut [U],
        w: &[W],
        g: &[G],
        h: Option<&[G]>,
    ) {
        for l in 0..u.len().min(LANES) {
            let gi = g[l].to_f32();
            let hi = h.map(|h| h[l].to_f32());
            self.bad[l] +=
                u32::from(!gi.is_finite()) + u32::from(hi.is_some_and(|x| !x.is_finite()));
            let big_u = utility(gi, w[l].to_f32(), hi);
            u[l] = U::from_f32(u[l].to_f32() * sc.beta + sc.one_minus_beta * big_u);
            let stored = u[l].to_f32();
            // NaN traces are left out of the maximum (see the module docs).
            self.mx[l] = if stored > self.mx[l] {
                stored
            } else {
                self.mx[l]
            };
        }
    }
}

/// A row's norm for local scaling from its sum of squares, as on the devices.
#[inline(always)]
fn norm(sumsq: f32) -> f32 {
    sumsq.sqrt().max(1e-12)
}

/// Where the update of a tensor takes each element's scaled utility from.
#[derive(Clone, Copy)]
enum Source<'a, U> {
    /// Its own trace (weight-level UPGD, given with each chunk); `row0` is the tensor's first
    /// row among all rows.
    Own { row0: usize },
    /// The gate's trace for the element's row (from the gate's first element), scaled by the
    /// norm of the gate's single row `row` under local scaling.
    Gate { u: &'a [U], row: usize },
    /// No gate: plain SGD with weight decay, no noise.
    None,
}

/// What pass 2 needs of one tensor.
struct Tensor<'a, U> {
    variant: Variant,
    sc: &'a Scalars,
    scale: &'a Scale,
    seed: u64,
    offset: usize,
    last_dim: usize,
    source: Source<'a, U>,
}

impl<U: Float> Tensor<'_, U> {
    /// The scaled utility from trace `ut` in row `row` (among all rows).
    #[inline(always)]
    fn scaled(&self, ut: f32, norm: Option<f32>) -> f32 {
        match (self.variant.scaling(), norm) {
            (Scaling::Local, Some(norm)) => sigmoid((ut / self.sc.bc) / norm),
            _ => scaled_global(ut, self.sc.bc, self.scale.eta),
        }
    }

    /// The norm of row `row` for local scaling (`None` without row sums).
    fn norm_of(&self, row: usize) -> Option<f32> {
        self.scale.rowsq.get(row).copied().map(norm)
    }

    /// `s[k]`, the scaled utility of element `at + k` of the tensor, where it depends on the
    /// element's row: local scaling, or a gate's trace (global scaling of a tensor's own traces
    /// is computed in the update's loop instead, see `update_chunk`); `own` holds those
    /// elements' own traces (weight-level UPGD; empty otherwise).
    #[inline(always)]
    fn scaled_piece(&self, at: usize, s: &mut [f32], own: &[U]) {
        let sc = self.sc;
        let local = self.variant.scaling() == Scaling::Local;
        match self.source {
            Source::Gate { u, row } => {
                // One value per row of the piece: the gate's trace for the row.
                let norm = if local { self.norm_of(row) } else { None };
                self.by_row(at, s, |r, part| part.fill(self.scaled(u[r].to_f32(), norm)));
            }
            Source::Own { row0 } if local && !self.scale.rowsq.is_empty() => {
                // Each element's row norm first (row by row, or straight from the sums for
                // rows of one), then the scaled utilities in one loop over the piece, which
                // vectorizes whatever the rows' length (rows of 15 at 2^26: 235 -> 130 ms).
                if self.last_dim == 1 {
                    let sums = &self.scale.rowsq[row0 + at..][..s.len()];
                    for (s, ss) in s.iter_mut().zip(sums) {
                        *s = norm(*ss);
                    }
                } else {
                    let rowsq = &self.scale.rowsq[row0..];
                    self.by_row(at, s, |r, part| part.fill(norm(rowsq[r])));
                }
                for (s, u) in s.iter_mut().zip(own) {
                    *s = sigmoid((u.to_f32() / sc.bc) / *s);
                }
            }
            // Global scaling (or the one-pass mode's first local step, before any row sums).
            Source::Own { .. } => {
                for (s, u) in s.iter_mut().zip(own) {
                    *s = scaled_global(u.to_f32(), sc.bc, self.scale.eta);
                }
            }
            Source::None => {}
        }
    }

    /// `f(row, part)` for each run `part` of `s` (elements `at..` of the tensor) in one row.
    #[inline(always)]
    fn by_row(&self, at: usize, s: &mut [f32], mut f: impl FnMut(usize, &mut [f32])) {
        let (mut row, mut col) = (at / self.last_dim, at % self.last_dim);
        let mut k = 0;
        while k < s.len() {
            let n = (self.last_dim - col).min(s.len() - k);
            f(row, &mut s[k..k + n]);
            (k, row, col) = (k + n, row + 1, 0);
        }
    }

    /// Pass 2 over one chunk of weights from element `at` of the tensor (`g` from there on).
    /// Returns, where the chunk's traces are updated here ([`Trace::Update`]), their maximum
    /// and the number of non-finite `g` and `h` (else `-inf` and 0).
    #[inline(always)]
    fn update_chunk<W: Float, G: Float>(
        &self,
        at: usize,
        lane: Lane<'_, W, U>,
        g: &[G],
        h: Option<&[G]>,
    ) -> (f32, u64) {
        let Lane {
            w,
            mut u,
            mut m,
            mut v,
        } = lane;
        let sc = self.sc;
        let (mut mx, mut bad) = (f32::NEG_INFINITY, 0u64);
        if matches!(self.source, Source::None) {
            for (wk, gk) in w.iter_mut().zip(g) {
                *wk = W::from_f32(wk.to_f32() * sc.decay + sc.neg_lr * gk.to_f32());
            }
            return (mx, bad);
        }
        let mut z = [0.0f32; PIECE];
        let mut s = [0.0f32; PIECE];
        for (p, w) in w.chunks_mut(PIECE).enumerate() {
            let k0 = p * PIECE;
            let n = w.len();
            let (z, s) = (&mut z[..n], &mut s[..n]);
            let g = &g[k0..k0 + n];
            // The piece's own traces: traced here first in the fused one-pass mode (from the
            // weights before their update, as pass 1 would).
            let own: &[U] = match &mut u {
                Some(Trace::Read(u)) => &u[k0..k0 + n],
                Some(Trace::Update(u)) => {
                    let up = &mut u[k0..k0 + n];
                    let hp = h.map(|h| &h[k0..k0 + n]);
                    let (pm, pb) = trace_chunk(sc, up, w, g, hp);
                    (mx, bad) = (mx.max(pm), bad + pb);
                    up
                }
                None => &[],
            };
            rng::gaussians_into(self.seed, sc.stream, (self.offset + at + k0) as u64, z);
            let moments = match (m.as_deref_mut(), v.as_deref_mut()) {
                (Some(mc), Some(vc)) => Some((&mut mc[k0..k0 + n], &mut vc[k0..k0 + n])),
                _ => None,
            };
            match self.source {
                // Global scaling of the tensor's own traces: each scaled utility computed in
                // the update's own loop, not stored first (first-order global at 2^26 weights,
                // A/B: medians 86-97 -> 79-90 ms, the same bits), and the choice for
                // `eta == 0` made once per piece.
                Source::Own { .. } if self.variant.scaling() == Scaling::Global => {
                    let (bc, eta) = (sc.bc, self.scale.eta);
                    if eta == 0.0 {
                        let half = std::iter::repeat(scaled_global(0.0, bc, eta));
                        self.update_piece(w, g, z, half, moments);
                    } else {
                        let scaled = own.iter().map(|u| sigmoid((u.to_f32() / bc) / eta));
                        self.update_piece(w, g, z, scaled, moments);
                    }
                }
                _ => {
                    self.scaled_piece(at + k0, s, own);
                    self.update_piece(w, g, z, s.iter().copied(), moments);
                }
            }
        }
        (mx, bad)
    }

    /// The update of one piece of weights from their gradients `g`, Gaussians `z` and scaled
    /// utilities `s` (and, for adaptive, the piece's moments).
    #[inline(always)]
    fn update_piece<W: Float, G: Float>(
        &self,
        w: &mut [W],
        g: &[G],
        z: &[f32],
        s: impl Iterator<Item = f32>,
        moments: Option<(&mut [U], &mut [U])>,
    ) {
        let sc = self.sc;
        let step = |wk: &mut W, d: f32| *wk = W::from_f32(wk.to_f32() * sc.decay + sc.neg_lr * d);
        let rows = w.iter_mut().zip(g).zip(z.iter().zip(s));
        match self.variant {
            Variant::Upgd {
                rule: Rule::Protect,
                ..
            } => {
                for ((wk, gk), (zk, sk)) in rows {
                    step(wk, (gk.to_f32() + zk * sc.sigma) * (1.0 - sk));
                }
            }
            Variant::Upgd {
                rule: Rule::NoProtect,
                ..
            } => {
                for ((wk, gk), (zk, sk)) in rows {
                    step(wk, gk.to_f32() + (zk * sc.sigma) * (1.0 - sk));
                }
            }
            Variant::Adaptive {
                beta1, beta2, eps, ..
            } => {
                let Some((mc, vc)) = moments else {
                    unreachable!("adaptive state exists")
                };
                let moments = mc.iter_mut().zip(vc.iter_mut());
                for (((wk, gk), (zk, sk)), (mk, vk)) in rows.zip(moments) {
                    let gi = gk.to_f32();
                    *mk = U::from_f32(mk.to_f32() * beta1 + sc.one_minus_beta1 * gi);
                    *vk = U::from_f32(vk.to_f32() * beta2 + sc.one_minus_beta2 * (gi * gi));
                    let (mi, vi) = (mk.to_f32(), vk.to_f32());
                    let denom = vi.sqrt() / sc.sqrt_bc2 + eps;
                    step(wk, (mi / denom / sc.bc1 + zk * sc.sigma) * (1.0 - sk));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `exp_f32` against f64's `exp` over the whole range it computes, and its ends; the
    /// sigmoid's flush of subnormal results; the vectorized build gives the scalar bits.
    #[test]
    fn exp_is_within_two_ulp_and_flushes_subnormals() {
        let mut worst = 0.0f64;
        let mut x = -87.33f32;
        while x < 88.72 {
            let want = f64::from(x).exp();
            let got = f64::from(exp_f32(x));
            let ulp = f64::from(f32::EPSILON) * 2f64.powi(want.log2().floor() as i32);
            worst = worst.max((got - want).abs() / ulp);
            x += 0.000_731;
        }
        eprintln!("exp_f32: worst error {worst:.2} ulp");
        assert!(worst <= 2.0, "{worst} ulp");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(88.8), f32::INFINITY);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(-87.4), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert!(exp_f32(88.72).is_finite() && exp_f32(88.72) > 3.3e38);
        assert!(exp_f32(-87.3) >= f32::MIN_POSITIVE);
        // The sigmoid: saturated ends exact, no subnormal output.
        assert_eq!(sigmoid(200.0), 1.0);
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(-87.5), 0.0);
        assert!(sigmoid(-87.0) >= f32::MIN_POSITIVE);
        assert!((sigmoid(1.0) - (1.0 / (1.0 + (-1.0f64).exp())) as f32).abs() <= 6e-8);
        let xs: Vec<f32> = (0..4096).map(|i| (i as f32 - 2048.0) * 0.061).collect();
        let scalar: Vec<u32> = xs.iter().map(|&x| sigmoid(x).to_bits()).collect();
        let wide: Vec<u32> = cpu::vectorized(
            #[inline(always)]
            || xs.iter().map(|&x| sigmoid(x).to_bits()).collect(),
        );
        assert_eq!(scalar, wide);
    }
}
