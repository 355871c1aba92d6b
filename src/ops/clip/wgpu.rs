//! wgpu glue of clipping (`shaders/clip.wgsl`). A storage binding holds at most one chunk, so
//! the gradients are cut into windows: whole rows while a row fits (as many rows as fit per
//! dispatch), otherwise single rows cut into column windows. The sum pass then accumulates in
//! `sum` across the dispatches of one submission (flags FIRST and LAST), which costs an extra
//! read and write of `sum` per row only when a row exceeds one binding.

use super::{AdaptiveClip, Clipper, FactorPass, GhostMethod, GhostShape, Run, Update, internal};
use crate::backend::wgpu::{
    Dispatch, Range, WgpuDevice, WgpuStorage, bind_whole, split_u64 as split,
};
use crate::buffer::{Buffer, Element, Float, Storage};
use crate::{Error, Result};

const FIRST: u32 = 1;
const LAST: u32 = 2;
const NOISE: u32 = 4;
const BIAS: u32 = 8;
const LINEAR: u32 = 8;

/// `Params` of clip.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    d: u32,
    batch: u32,
    r0: u32,
    rows: u32,
    a0: u32,
    cols: u32,
    t0: u32,
    ntw: u32,
    ntiles: u32,
    groups: u32,
    groups_at: u32,
    offsets_at: u32,
    gskip: u32,
    pskip: u32,
    fskip: u32,
    sskip: u32,
    bskip: u32,
    dtype: u32,
    rule: u32,
    flags: u32,
    method: u32,
    seed: [u32; 2],
    stream: [u32; 2],
    index: [u32; 2],
    scale: f32,
    mult: f32,
    gamma: f32,
    eta: f32,
    sigma_b: f32,
    lo: f32,
    hi: f32,
    positions: u32,
    inputs: u32,
    outputs: u32,
    pad: [u32; 3],
}

fn storage<T: Element>(b: &Buffer<T>) -> Result<&WgpuStorage> {
    match &b.storage {
        Storage::Wgpu(s) => Ok(s),
        _ => Err(internal("a buffer of a wgpu clip is not on wgpu")),
    }
}

/// Elements of `size` bytes a window may hold: one chunk, less the skip to its aligned start.
fn cap(chunk: u64, size: usize) -> usize {
    (chunk as usize / size).saturating_sub(512).max(256)
}

/// Columns per window of a row, for the layout's tiles (the sum is f32, the tightest case).
pub(super) fn column_window(dev: &WgpuDevice) -> usize {
    cap(dev.chunk_bytes(), 4)
}

/// Elements `first .. first + count` of `b` bound at `binding` from the 256-element boundary
/// below `first`; returns the range and the skip to `first`.
fn window<T: Element>(
    b: &Buffer<T>,
    first: usize,
    count: usize,
    binding: u32,
) -> Result<(Range<'_>, u32)> {
    let s = storage(b)?;
    let base = first / 256 * 256;
    let skip = first - base;
    let span = (skip + count).max(1);
    Ok((
        s.range(base, span, T::DTYPE.size()).at(binding),
        skip as u32,
    ))
}

/// A small buffer bound whole, refused past one binding.
fn whole<'a, T: Element>(b: &'a Buffer<T>, binding: u32, what: &str) -> Result<Range<'a>> {
    bind_whole(b, binding, "clip", what)
}

fn run_all(
    dev: &WgpuDevice,
    entry: &'static str,
    jobs: &[(Params, Vec<Range<'_>>, u64)],
) -> Result<()> {
    let work: Vec<Dispatch<'_>> = jobs
        .iter()
        .map(|(p, ranges, invocations)| Dispatch {
            params: bytemuck::bytes_of(p),
            buffers: ranges
                .iter()
                .map(|r| Range {
                    binding: r.binding,
                    buffer: r.buffer,
                    offset: r.offset,
                    size: r.size,
                })
                .collect(),
            invocations: *invocations,
        })
        .collect();
    dev.dispatch("clip", entry, &work)
}

pub(super) fn clip<T: Float>(
    c: &Clipper,
    grads: &Buffer<T>,
    bounds: &Buffer<f32>,
    run: &Run,
    sum: &mut Buffer<f32>,
    norms: &mut Buffer<f32>,
) -> Result<()> {
    let dev = storage(grads)?.dev.clone();
    let chunk = dev.chunk_bytes();
    let (b, d, l, nt) = (c.batch, c.dim(), c.groups(), c.layout.tiles.len());
    let (capg, cap4) = (cap(chunk, T::DTYPE.size()), cap(chunk, 4));
    let rows_per = match c.layout.windows.len() {
        1 => (capg / d).min(cap4 / nt).min(cap4 / l).max(1),
        _ => 1,
    };
    let noise = run.noise;
    let base = Params {
        d: d as u32,
        batch: b as u32,
        ntiles: nt as u32,
        groups: l as u32,
        groups_at: c.layout.groups_at() as u32,
        offsets_at: c.layout.offsets_at() as u32,
        dtype: T::DTYPE.kernel_code(),
        rule: run.rule.kernel_code(),
        scale: run.scale,
        mult: noise.map_or(0.0, |n| n.multiplier),
        seed: split(noise.map_or(0, |n| n.seed)),
        stream: split(noise.map_or(0, |n| n.stream)),
        index: split(noise.map_or(0, |n| n.offset)),
        ..Params::default()
    };

    let mut jobs = Vec::new();
    for r0 in (0..b).step_by(rows_per) {
        let rows = rows_per.min(b - r0);
        for &(a, e) in &c.layout.windows {
            let (t0, t1) = c.layout.tiles_in((a, e));
            let (gw, gskip) = window(grads, r0 * d + a, (rows - 1) * d + (e - a), 1)?;
            let (pw, pskip) = window(&c.partials, r0 * nt + t0, (rows - 1) * nt + (t1 - t0), 3)?;
            let p = Params {
                r0: r0 as u32,
                rows: rows as u32,
                a0: a as u32,
                cols: (e - a) as u32,
                t0: t0 as u32,
                ntw: (t1 - t0) as u32,
                gskip,
                pskip,
                ..base
            };
            let table = whole(&c.table, 2, "the tile table")?;
            jobs.push((p, vec![gw, table, pw], ((t1 - t0) * rows * 256) as u64));
        }
    }
    run_all(&dev, "clip_sumsq", &jobs)?;

    factors(&c.factor_pass(bounds, run, norms))?;

    let mut jobs = Vec::new();
    for r0 in (0..b).step_by(rows_per) {
        let rows = rows_per.min(b - r0);
        for &(a, e) in &c.layout.windows {
            let (gw, gskip) = window(grads, r0 * d + a, (rows - 1) * d + (e - a), 1)?;
            let (fw, fskip) = window(&c.factors, r0 * l, rows * l, 6)?;
            let (sw, sskip) = window(sum, a, e - a, 8)?;
            let mut flags = 0;
            if r0 == 0 {
                flags |= FIRST;
            }
            if r0 + rows == b {
                flags |= LAST;
                if noise.is_some() {
                    flags |= NOISE;
                }
            }
            let p = Params {
                r0: r0 as u32,
                rows: rows as u32,
                a0: a as u32,
                cols: (e - a) as u32,
                gskip,
                fskip,
                sskip,
                flags,
                ..base
            };
            let ranges = vec![
                gw,
                whole(&c.table, 2, "the tile table")?,
                fw,
                whole(&c.stats, 7, "the stats")?,
                sw,
            ];
            jobs.push((p, ranges, (e - a) as u64));
        }
    }
    run_all(&dev, "clip_sum", &jobs)
}

/// The factor pass over row windows.
pub(super) fn factors(f: &FactorPass<'_>) -> Result<()> {
    let dev = storage(f.partials)?.dev.clone();
    let cap4 = cap(dev.chunk_bytes(), 4);
    let (nt, l, b) = (f.ntiles as usize, f.groups as usize, f.batch as usize);
    let per = (cap4 / nt).min(cap4 / l);
    if per == 0 {
        return Err(Error::LimitExceeded {
            what: "clip on wgpu: tiles or groups of one row (one binding)".into(),
            requested: nt.max(l) as u64,
            max: cap4 as u64,
        });
    }
    let mut jobs = Vec::new();
    for r0 in (0..b).step_by(per) {
        let rows = per.min(b - r0);
        let (pw, pskip) = window(f.partials, r0 * nt, rows * nt, 3)?;
        let (nw, fskip) = window(f.norms, r0 * l, rows * l, 5)?;
        let (fw, _) = window(f.factors, r0 * l, rows * l, 6)?;
        let p = Params {
            batch: f.batch,
            r0: r0 as u32,
            rows: rows as u32,
            ntiles: f.ntiles,
            groups: f.groups,
            groups_at: f.groups_at,
            pskip,
            fskip,
            rule: f.rule.kernel_code(),
            mult: f.multiplier,
            ..Params::default()
        };
        let ranges = vec![
            whole(f.table, 2, "the tile table")?,
            pw,
            whole(f.bounds, 4, "the bounds")?,
            nw,
            fw,
            whole(f.stats, 7, "the stats")?,
        ];
        jobs.push((p, ranges, rows as u64));
    }
    run_all(&dev, "clip_factors", &jobs)
}

pub(super) fn ghost<T: Float>(
    a: &Buffer<T>,
    g: &Buffer<T>,
    shape: &GhostShape,
    method: GhostMethod,
    bias: bool,
    out: &mut Buffer<f32>,
) -> Result<()> {
    let dev = storage(a)?.dev.clone();
    let chunk = dev.chunk_bytes();
    let (capt, cap4) = (cap(chunk, T::DTYPE.size()), cap(chunk, 4));
    let (t, p, q) = (shape.positions, shape.inputs, shape.outputs);
    let per = (capt / (t * p)).min(capt / (t * q)).min(cap4);
    if per == 0 {
        return Err(Error::LimitExceeded {
            what: "ghost_norms on wgpu: elements of one example's activations or output \
                   gradients (one binding)"
                .into(),
            requested: (t * p.max(q)) as u64,
            max: capt as u64,
        });
    }
    let mut jobs = Vec::new();
    for e0 in (0..shape.batch).step_by(per) {
        let n = per.min(shape.batch - e0);
        let (aw, gskip) = window(a, e0 * t * p, n * t * p, 1)?;
        let (bw, bskip) = window(g, e0 * t * q, n * t * q, 9)?;
        let (ow, sskip) = window(out, e0, n, 8)?;
        let params = Params {
            r0: e0 as u32,
            rows: n as u32,
            gskip,
            bskip,
            sskip,
            dtype: T::DTYPE.kernel_code(),
            method: method.kernel_code(),
            flags: if bias { BIAS } else { 0 },
            positions: t as u32,
            inputs: p as u32,
            outputs: q as u32,
            ..Params::default()
        };
        jobs.push((params, vec![aw, ow, bw], (n * 256) as u64));
    }
    run_all(&dev, "clip_ghost", &jobs)
}

pub(super) fn adapt(
    stats: &Buffer<u32>,
    batch: u32,
    bound: &mut Buffer<f32>,
    a: &AdaptiveClip,
    step: u64,
) -> Result<()> {
    let dev = storage(stats)?.dev.clone();
    let p = Params {
        batch,
        gamma: a.target_quantile,
        eta: a.lr,
        sigma_b: a.count_noise,
        lo: a.min,
        hi: a.max,
        flags: if a.update == Update::Linear {
            LINEAR
        } else {
            0
        },
        seed: split(a.seed),
        stream: split(a.stream),
        index: split(step),
        ..Params::default()
    };
    let ranges = vec![whole(bound, 4, "the bound")?, whole(stats, 7, "the stats")?];
    run_all(&dev, "clip_adapt", &[(p, ranges, 1)])
}
