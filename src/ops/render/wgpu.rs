//! wgpu glue of rendering (`shaders/render.wgsl`): one dispatch forward.

use super::decoder::Layout;
use super::tables::{Params, Tables};
use super::{OP, Rays, RenderGrads, RenderOutput, Renderer};
use crate::backend::wgpu::{Dispatch, Range, Split, WgpuDevice, bind_whole};
use crate::buffer::{Buffer, Element, Float, Storage};
use crate::{Error, Result};

/// Bytes of scratch and shared partial sums one call may allocate (at least one
/// invocation's): with the per-ray state this keeps forward and backward of 256^2 rays of the
/// Lightplane benchmark scene near 13 MB beyond inputs and outputs (issue 8 asks for at most 16).
const MEMORY_BUDGET: usize = 12 << 20;

/// Workgroups launched at most: the scratch grows with them. Lavapipe runs them on a few cores
/// anyway; a real GPU wants more (untuned: no GPU has run this yet).
const MAX_GROUPS: usize = 64;
const WG: usize = crate::backend::wgpu::WORKGROUP_SIZE as usize;

/// Invocations that add their decoder gradients into one shared slice (`SHARE` in the shader).
const SHARE: usize = 32;

fn device<T: Element>(b: &Buffer<T>) -> Result<&WgpuDevice> {
    match &b.storage {
        Storage::Wgpu(s) => Ok(&s.dev),
        #[allow(unreachable_patterns)]
        _ => Err(Error::InvalidArgument {
            op: OP,
            what: "internal: a buffer is not on wgpu".into(),
        }),
    }
}

/// Loop iterations render.wgsl runs at one sample, step by step (its header, "Steps"), each
/// loop counted one more than its trip count: the decoder's layers and the forward's last step
/// (`forward`), then for the reverse march each layer backward and the grids' gradients
/// (`backward`, where each parameter's gradient adds one more: its compare-and-swap add, as
/// llvmpipe counts an atomic operation as an iteration). Every dispatch of a sample adds
/// [`SAMPLE_LOOPS`].
struct StepLoops {
    forward: Vec<usize>,
    backward: Vec<usize>,
}

/// Placing a sample, checking the ray, and the RNG's rounds and the transcendental functions'
/// loops, with room to spare.
const SAMPLE_LOOPS: usize = 3 + 64;

fn step_loops(re: &Renderer, lay: &Layout) -> StepLoops {
    let list = |g: &super::GridList| {
        let n = g.shapes().len();
        g.channels() + 1 + n + 1 + 8 * n * (g.channels() + 2)
    };
    let lists = list(&re.grids) + re.color.as_ref().map_or(0, list);
    let c = re.grids.channels() + re.color.as_ref().map_or(0, |g| g.channels());
    let e = lay.encoding_len() + 1;
    let layer = |m: &super::decoder::Mlp, l: usize| m.dims[l + 1] * (m.dims[l] + 1) + 1;
    let mlps = [&lay.trunk, &lay.opacity, &lay.color];
    let layers: Vec<(usize, usize)> = mlps
        .iter()
        .enumerate()
        .flat_map(|(i, m)| (0..m.layers()).map(move |l| (i, l)))
        .collect();
    let lt = lay.trunk.layers();
    let mut forward: Vec<usize> = layers
        .iter()
        .enumerate()
        .map(|(d, &(i, l))| {
            let prep = if d == 0 { lists + 2 * (c + 2) } else { 0 };
            let glue = if d == lt { 3 * e } else { 0 };
            layer(mlps[i], l) + prep + glue
        })
        .collect();
    let colors = 2 * (lay.color.output() + 1);
    forward.push(colors);
    let mut backward = forward.clone();
    // The reverse march's step L also seeds the heads' gradients.
    backward[layers.len()] += 2 * colors;
    backward.extend(layers.iter().rev().map(|&(i, l)| {
        let (n_in, n_out) = (mlps[i].dims[l], mlps[i].dims[l + 1]);
        3 + 3 * n_out + n_in * (2 * n_out + 3) + 2 * e
    }));
    backward.push(3 * lists + c + 2);
    StepLoops { forward, backward }
}

/// Everything one call binds besides the caller's buffers.
struct Plan {
    params: Params,
    tables: Buffer<u32>,
    scratch: Buffer<f32>,
    status: Buffer<u32>,
    dummy: Buffer<f32>,
}

impl Plan {
    /// `per_group`: f32 the kernel keeps per [`SHARE`] invocations besides their scratch (the
    /// backward pass's parameter gradients), which also must fit one binding.
    fn new<T: Float>(
        re: &Renderer,
        lay: &Layout,
        dev: &WgpuDevice,
        rays: &Rays,
        per_group: usize,
    ) -> Result<Plan> {
        let (encoding, rays) = (rays.encoding.is_some(), rays.len());
        let t = Tables::new(&re.grids, re.color.as_ref(), lay);
        // As many invocations as rays, up to MAX_GROUPS workgroups, a scratch of one binding,
        // partial sums (`per_group` words per SHARE invocations) of one binding, and MEMORY_BUDGET
        // bytes for both.
        let fit = dev.invocations_within(
            OP,
            "scratch bytes per invocation or parameter gradients",
            t.per_slot,
            per_group,
            SHARE,
            MEMORY_BUDGET,
        )?;
        let slots = rays.clamp(1, MAX_GROUPS * WG).min(fit);
        let params = Params::new::<T>(re, lay, &t, rays, encoding, slots, "wgpu")?;
        Ok(Plan {
            params,
            tables: re.dev.upload(&t.words)?,
            scratch: re.dev.zeros(t.per_slot * slots)?,
            status: re.dev.zeros(1)?,
            dummy: re.dev.zeros(1)?,
        })
    }

    /// The error a raised status bit stands for.
    fn check_status(&self, batch: usize) -> Result<()> {
        super::tables::check_status(OP, self.status.download()?[0], batch)
    }
}

/// The bindings 1 to 12 every entry point reads.
fn common<'a, T: Float>(
    plan: &'a Plan,
    grids: &'a Buffer<T>,
    color: Option<&'a Buffer<T>>,
    params: &'a Buffer<f32>,
    rays: &'a Rays,
) -> Result<Vec<crate::backend::wgpu::Range<'a>>> {
    let b = |buf, binding, what| bind_whole(buf, binding, OP, what);
    Ok(vec![
        bind_whole(&plan.tables, 1, OP, "the grid and layer table")?,
        bind_whole(grids, 2, OP, "grids")?,
        match color {
            Some(c) => bind_whole(c, 3, OP, "color_grids")?,
            None => b(&plan.dummy, 3, "a placeholder")?,
        },
        b(params, 4, "mlp_params")?,
        b(rays.origins, 5, "rays.origins")?,
        b(rays.directions, 6, "rays.directions")?,
        b(rays.near, 7, "rays.near")?,
        b(rays.far, 8, "rays.far")?,
        bind_whole(rays.batch, 9, OP, "rays.batch")?,
        b(rays.encoding.unwrap_or(&plan.dummy), 10, "rays.encoding")?,
        b(&plan.scratch, 11, "the scratch")?,
        bind_whole(&plan.status, 12, OP, "the status word")?,
    ])
}

pub(super) fn forward<T: Float>(
    re: &Renderer,
    lay: &Layout,
    grids: &Buffer<T>,
    color: Option<&Buffer<T>>,
    params: &Buffer<f32>,
    rays: &Rays,
    out: &mut RenderOutput,
) -> Result<()> {
    let dev = device(grids)?;
    let r = rays.len();
    let plan = Plan::new::<T>(re, lay, dev, rays, 0)?;
    let mut buffers = common(&plan, grids, color, params, rays)?;
    buffers.push(bind_whole(&out.features, 13, OP, "out.features")?);
    buffers.push(bind_whole(&out.ray_length, 14, OP, "out.ray_length")?);
    buffers.push(bind_whole(
        &out.neg_log_transmittance,
        15,
        OP,
        "out.neg_log_transmittance",
    )?);
    let slots = plan.params.slots as usize;
    let steps = step_loops(re, lay);
    let split = dev.split_samples(OP, &steps.forward, SAMPLE_LOOPS)?;
    let total = re.opts.samples + re.opts.samples_inf;
    let mut params = Vec::new();
    for i in 0..r.div_ceil(slots) {
        let p = Params {
            ray0: (i * slots) as u32,
            ..plan.params
        };
        params.extend(windows(&p, total, &split, false));
    }
    dispatch_all(dev, "render_fw", &params, &buffers, slots)?;
    plan.check_status(re.grids.batch())
}

/// Pass 0 of the backward kernel over every sample chunk in order, then pass 1 in reverse chunk
/// order, for each block of `slots` rays; one submission.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Float>(
    re: &Renderer,
    lay: &Layout,
    grids: &Buffer<T>,
    color: Option<&Buffer<T>>,
    params: &Buffer<f32>,
    rays: &Rays,
    grad_out: &RenderOutput,
    grads: &mut RenderGrads,
) -> Result<()> {
    let dev = device(grids)?;
    let r = rays.len();
    let plan = Plan::new::<T>(re, lay, dev, rays, lay.len)?;
    let slots = plan.params.slots as usize;
    let partials: Buffer<f32> = re.dev.zeros(slots.div_ceil(SHARE) * lay.len)?;
    let state: Buffer<u32> = re.dev.zeros(4 * r.max(1))?;
    // Grid gradients are added to.
    grads.grids.clear()?;
    if let Some(cg) = grads.color_grids.as_mut() {
        cg.clear()?;
    }
    // A placeholder of its own: one buffer cannot be bound read-only and writable at once.
    let no_color: Buffer<f32> = re.dev.zeros(1)?;
    let mut buffers = common(&plan, grids, color, params, rays)?;
    buffers.extend([
        bind_whole(&grad_out.features, 16, OP, "grad_out.features")?,
        bind_whole(&grad_out.ray_length, 17, OP, "grad_out.ray_length")?,
        bind_whole(
            &grad_out.neg_log_transmittance,
            18,
            OP,
            "grad_out.neg_log_transmittance",
        )?,
        bind_whole(&grads.grids, 19, OP, "grads.grids")?,
        bind_whole(
            grads.color_grids.as_ref().unwrap_or(&no_color),
            20,
            OP,
            "grads.color_grids",
        )?,
        bind_whole(&partials, 21, OP, "the shared parameter gradients")?,
        bind_whole(&grads.encoding, 22, OP, "grads.encoding")?,
        bind_whole(&state, 24, OP, "the per-ray state")?,
    ]);
    let total = re.opts.samples + re.opts.samples_inf;
    let steps = step_loops(re, lay);
    let fwd = dev.split_samples(OP, &steps.forward, SAMPLE_LOOPS)?;
    let back = dev.split_samples(OP, &steps.backward, SAMPLE_LOOPS)?;
    let mut work_params = Vec::new();
    for i in 0..r.div_ceil(slots) {
        let p = Params {
            ray0: (i * slots) as u32,
            ..plan.params
        };
        work_params.extend(windows(&Params { pass: 0, ..p }, total, &fwd, false));
        work_params.extend(windows(&Params { pass: 1, ..p }, total, &back, true));
    }
    dispatch_all(dev, "render_bw", &work_params, &buffers, slots)?;
    dev.dispatch(
        "render",
        "render_sum",
        &[Dispatch {
            params: bytemuck::bytes_of(&plan.params),
            buffers: vec![
                bind_whole(&partials, 21, OP, "the shared parameter gradients")?,
                bind_whole(&grads.params, 23, OP, "grads.params")?,
            ],
            invocations: lay.len as u64,
        }],
    )?;
    plan.check_status(re.grids.batch())
}

/// The dispatches of one block of rays over `total` samples split as `split` (groups of steps,
/// samples per window; [`WgpuDevice::split_samples`]): windows in order, or in reverse order
/// for the reverse march, each window's groups in order.
fn windows(p: &Params, total: usize, split: &Split, reverse: bool) -> Vec<Params> {
    let (groups, nj) = (&split.groups, split.samples);
    let mut starts: Vec<usize> = (0..total).step_by(nj).collect();
    if reverse {
        starts.reverse();
    }
    let mut out = Vec::new();
    for j0 in starts {
        for g in groups {
            out.push(Params {
                j0: j0 as u32,
                j1: (j0 + nj).min(total) as u32,
                d0: g.start as u32,
                d1: g.end as u32,
                ..*p
            });
        }
    }
    out
}

/// One dispatch of `entry` per parameter block, `slots` invocations each, the same bindings, in
/// one submission (in order: later blocks continue what earlier ones left in the buffers).
fn dispatch_all(
    dev: &WgpuDevice,
    entry: &'static str,
    blocks: &[Params],
    buffers: &[Range],
    slots: usize,
) -> Result<()> {
    let work: Vec<Dispatch> = blocks
        .iter()
        .map(|p| Dispatch {
            params: bytemuck::bytes_of(p),
            buffers: buffers.to_vec(),
            invocations: slots as u64,
        })
        .collect();
    dev.dispatch("render", entry, &work)
}
