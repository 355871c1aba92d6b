//! wgpu glue of splatting (`shaders/splat.wgsl`): the forward splat in dispatches of (ray,
//! sample) items then one normalizing dispatch; the backward pass splats the weights again and
//! gathers in windows of samples, per (ray, channel) for the plain splatter and per ray for the
//! MLP splatter (whose parameter gradients are summed per [`SHARE`] invocations, then across
//! those slices).

use super::tables::{ENCODING, FIXED, MLP, Params, Tables, WEIGHTS_ONLY, check_status};
use super::{OP, SplatGrads, Splatter};
use crate::backend::wgpu::{Dispatch, LOOP_BUDGET, Range, WgpuDevice, bind_whole};
use crate::buffer::{Buffer, DType, Float};
use crate::ops::render::Rays;
use crate::{Error, Result};

/// Invocations per dispatch at most (a 2D grid of 256-wide workgroups holds them easily).
const MAX_INVOCATIONS: usize = 1 << 22;

/// Bytes of MLP scratch and shared parameter gradients one call may allocate (at least one
/// invocation's), as in rendering.
const MEMORY_BUDGET: usize = 12 << 20;

/// Invocations that add their MLP parameter gradients into one slice, by compare-and-swap
/// (`SHARE` in the shader). A slice per invocation cost 4 bytes per parameter per invocation and
/// bounded how many ran; per 256 (a workgroup), one f32 word sums so many samples that it loses
/// digits (render's 1001-ray check: 5e-5 relative against 1e-4 allowed; 9e-7 with 32).
const SHARE: usize = 32;

fn device(s: &Splatter) -> Result<&WgpuDevice> {
    match &s.dev {
        crate::Device::Wgpu(d) => Ok(d),
        _ => Err(Error::InvalidArgument {
            op: OP,
            what: "internal: the splatter is not on wgpu".into(),
        }),
    }
}

/// Loop iterations of the MLP's forward steps at one point (splat.wgsl's header, "Steps"):
/// one per layer, the first also sampling the input grids.
fn mlp_steps(s: &Splatter) -> Vec<usize> {
    s.mlp.as_ref().map_or(Vec::new(), |m| {
        let cin = m.input.channels();
        let sampling = cin + 1 + m.input.shapes().len() * (1 + 8 * (cin + 2));
        (0..m.mlp.layers())
            .map(|l| {
                let layer = 2 + m.mlp.dims[l + 1] * (m.mlp.dims[l] + 2);
                if l == 0 { sampling + layer } else { layer }
            })
            .collect()
    })
}

/// Loop iterations of the steps of one forward item: the MLP's (if any), then the splat into
/// the output grids (a compare-and-swap add counted as two).
fn forward_steps(s: &Splatter) -> Vec<usize> {
    let grids = s.out.shapes().len();
    let mut steps = mlp_steps(s);
    steps.push(grids * (1 + 8 * (3 + 2 * (s.out.channels() + 1))));
    steps
}

/// Loop iterations of the steps of one sample of the MLP splatter's backward march: the MLP's
/// forward, the gathered output gradient, each layer backward (the last first), the input's
/// gradients.
fn backward_steps(s: &Splatter) -> Vec<usize> {
    let Some(m) = &s.mlp else { return Vec::new() };
    let c = s.out.channels();
    let cin = m.input.channels();
    let mut steps = mlp_steps(s);
    steps.push(c + 1 + s.out.shapes().len() * (1 + 8 * (c + 2)));
    // Each parameter's gradient adds one more: its compare-and-swap add (llvmpipe counts an
    // atomic operation as an iteration, a loop around it or not).
    steps.extend(
        (0..m.mlp.layers())
            .rev()
            .map(|l| 3 + m.mlp.dims[l + 1] * 3 + m.mlp.dims[l] * (2 * m.mlp.dims[l + 1] + 3)),
    );
    steps.push(cin + 1 + m.input.shapes().len() * (1 + 8 * (2 * cin + 2)));
    steps
}

/// Loop iterations every dispatch of an item or sample pays besides its steps (placing the
/// sample).
const SAMPLE_LOOPS: usize = 16;

/// Buffers a call binds besides the caller's: the table, the status word, the weights, and
/// placeholders (one per writable binding: a buffer cannot be bound writable twice).
struct Bound {
    t: Tables,
    tables: Buffer<u32>,
    status: Buffer<u32>,
    weights: Buffer<f32>,
    scratch: Buffer<f32>,
    /// The plain splat's fixed-point high words (one per output element, or a placeholder)
    /// and the largest |encoding|.
    hi: Buffer<u32>,
    vmax: Buffer<u32>,
    /// The weights' fixed-point high words.
    whi: Buffer<u32>,
    dummy: Buffer<f32>,
    dummy_u32: Buffer<u32>,
    dummy_out: Buffer<f32>,
    dummy_scratch: Buffer<f32>,
}

impl Bound {
    /// `slots`: invocations sharing the MLP scratch (0 without it); `fixed`: the plain splat's
    /// exact sums.
    fn new(s: &Splatter, t: Tables, slots: usize, fixed: bool) -> Result<Bound> {
        let scratch = s.dev.zeros((t.per_slot * slots).max(1))?;
        Ok(Bound {
            hi: s.dev.zeros(if fixed { s.out.len() } else { 1 })?,
            vmax: s.dev.zeros(1)?,
            whi: s.dev.zeros(t.cells)?,
            tables: s.dev.upload(&t.words)?,
            status: s.dev.zeros(1)?,
            weights: s.dev.zeros(t.cells)?,
            scratch,
            dummy: s.dev.zeros(1)?,
            dummy_u32: s.dev.zeros(1)?,
            dummy_out: s.dev.zeros(1)?,
            dummy_scratch: s.dev.zeros(1)?,
            t,
        })
    }

    /// Bindings 1 to 6 and 8: the table, the rays and the status word.
    fn rays<'a>(&'a self, rays: &'a Rays) -> Result<Vec<Range<'a>>> {
        Ok(vec![
            bind_whole(&self.tables, 1, OP, "the tables")?,
            bind_whole(rays.origins, 2, OP, "rays.origins")?,
            bind_whole(rays.directions, 3, OP, "rays.directions")?,
            bind_whole(rays.near, 4, OP, "rays.near")?,
            bind_whole(rays.far, 5, OP, "rays.far")?,
            bind_whole(rays.batch, 6, OP, "rays.batch")?,
            bind_whole(&self.status, 8, OP, "the status word")?,
        ])
    }

    /// Binding 7: the rays' encoding when `read` and present, else a placeholder.
    fn encoding<'a>(&'a self, rays: &'a Rays, read: bool) -> Result<Range<'a>> {
        match rays.encoding.filter(|_| read) {
            Some(e) => bind_whole(e, 7, OP, "rays.encoding"),
            None => bind_whole(&self.dummy, 7, OP, "a placeholder"),
        }
    }

    /// The forward splat of every (ray, sample) item: the weights alone (`out` none), the
    /// rays' encodings, or with `mlp` (input grids, parameters) the MLP splatter's values.
    fn splat<T: Float>(
        &self,
        dev: &WgpuDevice,
        rays: &Rays,
        out: Option<&Buffer<f32>>,
        mlp: Option<(&Buffer<T>, &Buffer<f32>)>,
        slots: usize,
        steps: &[std::ops::Range<usize>],
    ) -> Result<()> {
        let p = self.t.params;
        let items = p.rays as usize * (p.samples + p.samples_inf) as usize;
        let mut buffers = self.rays(rays)?;
        buffers.extend([
            self.encoding(rays, out.is_some())?,
            bind_whole(out.unwrap_or(&self.dummy_out), 9, OP, "out")?,
            bind_whole(&self.weights, 10, OP, "the weights")?,
        ]);
        buffers.extend([
            bind_whole(&self.hi, 19, OP, "the fixed-point high words")?,
            bind_whole(&self.vmax, 20, OP, "the largest encoding")?,
            bind_whole(&self.whi, 21, OP, "the weights' high words")?,
        ]);
        let flags = match (out, mlp) {
            (None, _) => WEIGHTS_ONLY,
            (Some(_), None) => FIXED,
            (Some(_), Some(_)) => MLP | if rays.encoding.is_some() { ENCODING } else { 0 },
        };
        match mlp {
            Some((input, params)) => buffers.extend([
                bind_whole(input, 13, OP, "input_grids")?,
                bind_whole(params, 14, OP, "mlp_params")?,
                bind_whole(&self.scratch, 15, OP, "the scratch")?,
            ]),
            None => buffers.extend([
                bind_whole(&self.dummy_u32, 13, OP, "a placeholder")?,
                bind_whole(&self.dummy, 14, OP, "a placeholder")?,
                bind_whole(&self.dummy_scratch, 15, OP, "a placeholder")?,
            ]),
        }
        let per = if flags & MLP != 0 {
            slots
        } else {
            MAX_INVOCATIONS
        };
        let blocks: Vec<Params> = (0..items)
            .step_by(per.max(1))
            .flat_map(|item0| {
                steps.iter().map(move |d| Params {
                    flags: p.flags | flags,
                    item0: item0 as u32,
                    count: per.min(items - item0) as u32,
                    slots: slots as u32,
                    d0: d.start as u32,
                    d1: d.end as u32,
                    ..p
                })
            })
            .collect();
        dispatch(dev, "splat_fw", &blocks, &buffers, |b| u64::from(b.count))?;
        let conv = [
            bind_whole(&self.weights, 10, OP, "the weights")?,
            bind_whole(&self.whi, 21, OP, "the weights' high words")?,
        ];
        dispatch(dev, "splat_wconv", &[p], &conv, |b| u64::from(b.len / b.c))
    }

    /// The largest |encoding|, for the plain splat's fixed point.
    fn vmax(&self, dev: &WgpuDevice, rays: &Rays) -> Result<()> {
        let Some(e) = rays.encoding else {
            return Ok(());
        };
        let buffers = [
            bind_whole(e, 7, OP, "rays.encoding")?,
            bind_whole(&self.vmax, 20, OP, "the largest encoding")?,
        ];
        let blocks: Vec<Params> = (0..e.len())
            .step_by(MAX_INVOCATIONS)
            .map(|item0| Params {
                item0: item0 as u32,
                count: MAX_INVOCATIONS.min(e.len() - item0) as u32,
                ..self.t.params
            })
            .collect();
        dispatch(dev, "splat_vmax", &blocks, &buffers, |b| u64::from(b.count))
    }

    fn normalize(&self, dev: &WgpuDevice, out: &Buffer<f32>, fixed: bool) -> Result<()> {
        let norm = [
            bind_whole(out, 9, OP, "out")?,
            bind_whole(&self.weights, 10, OP, "the weights")?,
            bind_whole(&self.hi, 19, OP, "the fixed-point high words")?,
            bind_whole(&self.vmax, 20, OP, "the largest encoding")?,
        ];
        let p = Params {
            flags: self.t.params.flags | if fixed { FIXED } else { 0 },
            ..self.t.params
        };
        dispatch(dev, "splat_norm", &[p], &norm, |p| u64::from(p.len))
    }

    fn check(&self, s: &Splatter) -> Result<()> {
        check_status(self.status.download()?[0], s.out.batch())
    }
}

fn dispatch(
    dev: &WgpuDevice,
    entry: &'static str,
    blocks: &[Params],
    buffers: &[Range],
    invocations: impl Fn(&Params) -> u64,
) -> Result<()> {
    let work: Vec<Dispatch> = blocks
        .iter()
        .map(|p| Dispatch {
            params: bytemuck::bytes_of(p),
            buffers: buffers.to_vec(),
            invocations: invocations(p),
        })
        .collect();
    dev.dispatch("splat", entry, &work)
}

/// Invocations that share the MLP scratch (and, backward, `per_slice` parameter gradients per
/// `share` invocations): as many as `work` items, within MEMORY_BUDGET and one binding each.
fn mlp_slots(
    dev: &WgpuDevice,
    t: &Tables,
    per_slice: usize,
    share: usize,
    work: usize,
) -> Result<usize> {
    let what = "MLP scratch or parameter gradients";
    let fit = dev.invocations_within(OP, what, t.per_slot, per_slice, share, MEMORY_BUDGET)?;
    Ok(fit.min(work.max(1)))
}

pub(super) fn forward(s: &Splatter, rays: &Rays, out: &mut Buffer<f32>) -> Result<()> {
    forward_any::<f32>(s, None, rays, out)
}

pub(super) fn forward_mlp<T: Float>(
    s: &Splatter,
    input: &Buffer<T>,
    params: &Buffer<f32>,
    rays: &Rays,
    out: &mut Buffer<f32>,
) -> Result<()> {
    forward_any(s, Some((input, params)), rays, out)
}

fn forward_any<T: Float>(
    s: &Splatter,
    mlp: Option<(&Buffer<T>, &Buffer<f32>)>,
    rays: &Rays,
    out: &mut Buffer<f32>,
) -> Result<()> {
    let dev = device(s)?;
    // One item per invocation: only the groups of steps matter.
    let steps = dev
        .split_samples(OP, &forward_steps(s), SAMPLE_LOOPS)?
        .groups;
    let t = Tables::new(s, rays.len(), T::DTYPE, "wgpu")?;
    let items = rays.len() * (s.opts.samples + s.opts.samples_inf);
    let slots = match mlp {
        Some(_) => mlp_slots(dev, &t, 0, 1, items)?,
        None => 0,
    };
    let fixed = mlp.is_none();
    let bound = Bound::new(s, t, slots, fixed)?;
    out.clear()?;
    if !rays.is_empty() {
        if fixed {
            bound.vmax(dev, rays)?;
        }
        bound.splat(dev, rays, Some(out), mlp, slots, &steps)?;
    }
    bound.normalize(dev, out, fixed)?;
    bound.check(s)
}

pub(super) fn backward(
    s: &Splatter,
    rays: &Rays,
    grad_out: &Buffer<f32>,
    grad_encoding: &mut Buffer<f32>,
) -> Result<()> {
    let dev = device(s)?;
    let r = rays.len();
    if r == 0 {
        return Ok(());
    }
    let t = Tables::new(s, r, DType::F32, "wgpu")?;
    let bound = Bound::new(s, t, 0, false)?;
    bound.splat::<f32>(dev, rays, None, None, 0, &WHOLE)?;
    let mut buffers = bound.rays(rays)?;
    buffers.extend([
        bind_whole(&bound.weights, 10, OP, "the weights")?,
        bind_whole(grad_out, 11, OP, "grad_out")?,
        bind_whole(grad_encoding, 12, OP, "grad_encoding")?,
    ]);
    let c = s.out.channels();
    let nr = (MAX_INVOCATIONS / c).max(1);
    let per_sample = 8 + s.out.shapes().len() * 10;
    let blocks = windows(
        s,
        r,
        nr,
        (LOOP_BUDGET / per_sample).max(1),
        &bound.t.params,
        &WHOLE,
    );
    dispatch(dev, "splat_bw", &blocks, &buffers, |p| {
        u64::from(p.nr) * u64::from(p.c)
    })?;
    bound.check(s)
}

/// Every step of an item or sample in one dispatch (`d1` past the last).
#[allow(clippy::single_range_in_vec_init)] // one group: every step
const WHOLE: [std::ops::Range<usize>; 1] = [0..u32::MAX as usize];

/// Parameter blocks over rays in blocks of `nr` and samples in windows of `nj`, each window
/// in the dispatches of `steps`, in order (a ray's first dispatch flagged).
fn windows(
    s: &Splatter,
    r: usize,
    nr: usize,
    nj: usize,
    p: &Params,
    steps: &[std::ops::Range<usize>],
) -> Vec<Params> {
    let total = s.opts.samples + s.opts.samples_inf;
    let mut blocks = Vec::new();
    for ray0 in (0..r).step_by(nr) {
        for j0 in (0..total).step_by(nj) {
            for (k, d) in steps.iter().enumerate() {
                blocks.push(Params {
                    ray0: ray0 as u32,
                    nr: nr.min(r - ray0) as u32,
                    j0: j0 as u32,
                    nj: nj.min(total - j0) as u32,
                    first: u32::from(j0 == 0 && k == 0),
                    d0: d.start as u32,
                    d1: d.end as u32,
                    ..*p
                });
            }
        }
    }
    blocks
}

pub(super) fn backward_mlp<T: Float>(
    s: &Splatter,
    input: &Buffer<T>,
    params: &Buffer<f32>,
    rays: &Rays,
    grad_out: &Buffer<f32>,
    grads: &mut SplatGrads,
) -> Result<()> {
    let dev = device(s)?;
    let r = rays.len();
    // Input grid gradients are added to; splat_mlp_bw writes every encoding gradient row and
    // splat_mlp_sum every parameter gradient, when there are rays.
    grads.input_grids.clear()?;
    if r == 0 {
        return grads.params.clear();
    }
    let split = dev.split_samples(OP, &backward_steps(s), SAMPLE_LOOPS)?;
    let t = Tables::new(s, r, T::DTYPE, "wgpu")?;
    let plen = s.params_len();
    let slots = mlp_slots(dev, &t, plen, SHARE, r)?;
    let bound = Bound::new(s, t, slots, false)?;
    bound.splat::<T>(dev, rays, None, None, 0, &WHOLE)?;
    let partials: Buffer<f32> = s.dev.zeros(slots.div_ceil(SHARE) * plen)?;
    let mut buffers = bound.rays(rays)?;
    buffers.extend([
        bound.encoding(rays, true)?,
        bind_whole(&bound.weights, 10, OP, "the weights")?,
        bind_whole(grad_out, 11, OP, "grad_out")?,
        bind_whole(&grads.encoding, 12, OP, "grads.encoding")?,
        bind_whole(input, 13, OP, "input_grids")?,
        bind_whole(params, 14, OP, "mlp_params")?,
        bind_whole(&bound.scratch, 15, OP, "the scratch")?,
        bind_whole(&partials, 16, OP, "the parameter gradients' slices")?,
        bind_whole(&grads.input_grids, 17, OP, "grads.input_grids")?,
    ]);
    let p = Params {
        flags: bound.t.params.flags | MLP | if rays.encoding.is_some() { ENCODING } else { 0 },
        slots: slots as u32,
        ..bound.t.params
    };
    let blocks = windows(s, r, slots, split.samples, &p, &split.groups);
    dispatch(dev, "splat_mlp_bw", &blocks, &buffers, |b| u64::from(b.nr))?;
    let sum = [
        bind_whole(&partials, 16, OP, "the parameter gradients' slices")?,
        bind_whole(&grads.params, 18, OP, "grads.params")?,
    ];
    dispatch(dev, "splat_mlp_sum", &[p], &sum, |b| u64::from(b.plen))?;
    bound.check(s)
}
