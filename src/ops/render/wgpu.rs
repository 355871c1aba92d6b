//! wgpu glue of rendering (`shaders/render.wgsl`): one dispatch forward.

use super::decoder::Layout;
use super::tables::Tables;
use super::{NOISE_TAG, OP, Rays, RenderGrads, RenderOutput, Renderer};
use crate::backend::wgpu::{Dispatch, WgpuDevice, bind_whole, split_u64};
use crate::buffer::{Buffer, Element, Float, Storage};
use crate::{Error, Result};

/// Bytes of scratch and per-invocation partial sums one call may allocate (at least one
/// invocation's): with the per-ray state this keeps forward and backward of 256^2 rays of the
/// Lightplane benchmark scene near 13 MB beyond inputs and outputs (issue 8 asks for at most 16).
const MEMORY_BUDGET: usize = 12 << 20;

/// Workgroups launched at most: the scratch grows with them. Lavapipe runs them on a few cores
/// anyway; a real GPU wants more (untuned: no GPU has run this yet).
const MAX_GROUPS: usize = 64;
const WG: usize = crate::backend::wgpu::WORKGROUP_SIZE as usize;

/// `Params` of render.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rays: u32,
    samples: u32,
    samples_inf: u32,
    flags: u32,
    gain: f32,
    dai: f32,
    sigma: f32,
    dtype: u32,
    seed: [u32; 2],
    stream: [u32; 2],
    ngrids: u32,
    ncolor: u32,
    c: u32,
    cc: u32,
    batch: u32,
    k: u32,
    e: u32,
    slots: u32,
    params_at: [u32; 3],
    plen: u32,
    lt: u32,
    lo: u32,
    lc: u32,
    sc_f: u32,
    sc_fc: u32,
    sc_ga: u32,
    sc_gb: u32,
    sc_gh: u32,
    sc_c: u32,
    sc_enc: u32,
    groups: u32,
    sc_st: u32,
    acts_at: [u32; 3],
    hidden: u32,
    cout: u32,
    ray0: u32,
    j0: u32,
    j1: u32,
    pass: u32,
    pad: [u32; 3],
}

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

/// Loop iterations one invocation may run in a dispatch. llvmpipe (lavapipe) ends every loop of
/// an invocation once their iterations add up to 65 535 (gallivm's `LP_MAX_TGSI_LOOP_ITERATIONS`,
/// shared between all loops), silently; GPUs have no such limit, and the dispatches this costs
/// them are few.
const LOOP_BUDGET: usize = 50_000;

/// A bound on the loop iterations render.wgsl runs per sample (each loop counted one more than
/// its trip count), and the samples per dispatch that keep an invocation within `LOOP_BUDGET`.
/// `factor` scales the count for kernels that run more loops per sample (the backward march).
fn samples_per_dispatch(
    re: &Renderer,
    lay: &Layout,
    dev: &WgpuDevice,
    factor: usize,
) -> Result<usize> {
    let list = |g: &super::GridList| {
        let n = g.shapes().len();
        g.channels() + 1 + n + 1 + 8 * n * (g.channels() + 2)
    };
    let mlps: usize = [&lay.trunk, &lay.opacity, &lay.color]
        .iter()
        .map(|m| {
            (0..m.layers())
                .map(|l| m.dims[l + 1] * (m.dims[l] + 1) + 1)
                .sum::<usize>()
                + 1
        })
        .sum();
    let c = re.grids.channels();
    let per_sample = 3
        + list(&re.grids)
        + re.color.as_ref().map_or(0, list)
        + 2 * (c + 1)
        + 3 * (lay.encoding_len() + 1)
        + 2 * (lay.color.output() + 1)
        + mlps
        + 64; // the RNG's rounds and the transcendental functions' loops, with room to spare
    let per_sample = factor * per_sample;
    let chunk = LOOP_BUDGET / per_sample;
    if chunk == 0 && dev.adapter_info().name.contains("llvmpipe") {
        return Err(Error::Unsupported {
            op: OP,
            backend: "wgpu (lavapipe)",
            what: format!(
                "one sample of this decoder runs about {per_sample} loop iterations, past \
                 llvmpipe's limit of 65535 per invocation"
            ),
        });
    }
    Ok(chunk.max(1))
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
    /// `extra_per_slot`: f32 the kernel keeps per invocation besides its scratch (the backward
    /// pass's parameter gradients), which also must fit one binding.
    fn new<T: Float>(
        re: &Renderer,
        lay: &Layout,
        dev: &WgpuDevice,
        rays: usize,
        extra_per_slot: usize,
    ) -> Result<Plan> {
        let t = Tables::new(&re.grids, re.color.as_ref(), lay);
        // As many invocations as rays, up to MAX_GROUPS workgroups, a scratch (and partial sums)
        // of one binding, and MEMORY_BUDGET bytes for both.
        let per_slot_bytes = (t.per_slot + extra_per_slot) * 4;
        let fit = (dev.chunk_bytes() as usize / (t.per_slot.max(extra_per_slot) * 4))
            .min(MEMORY_BUDGET / per_slot_bytes)
            .max(usize::from(per_slot_bytes <= dev.chunk_bytes() as usize));
        if fit == 0 {
            return Err(Error::LimitExceeded {
                what: format!("{OP} on wgpu: scratch bytes per invocation (one binding)"),
                requested: (t.per_slot * 4) as u64,
                max: dev.chunk_bytes(),
            });
        }
        let slots = rays.clamp(1, MAX_GROUPS * WG).min(fit);
        let groups = slots.div_ceil(WG);
        let o = &re.opts;
        let mut flags = 0;
        for (on, bit) in [
            (o.contract, 1),
            (o.mask_out_of_bounds, 2),
            (o.noise.is_some(), 4),
            (re.color.is_some(), 8),
        ] {
            if on {
                flags |= bit;
            }
        }
        let noise = o.noise.unwrap_or(super::OpacityNoise {
            sigma: 0.0,
            seed: 0,
            stream: 0,
        });
        let limit = |what: &str, n: usize| {
            u32::try_from(n).map_err(|_| Error::LimitExceeded {
                what: format!("{OP} on wgpu: {what}"),
                requested: n as u64,
                max: u64::from(u32::MAX),
            })
        };
        let total = re.grids.len() + re.color.as_ref().map_or(0, |g| g.len());
        limit("grid elements", total)?;
        limit(
            "rays x samples",
            rays.saturating_mul(o.samples + o.samples_inf),
        )?;
        limit("scratch elements", t.per_slot * slots)?;
        // The shader indexes features and encodings per ray in u32.
        let per_ray = lay.color_channels.max(lay.encoding_len()).max(4);
        limit(
            "rays x (color channels or encoding width)",
            rays.saturating_mul(per_ray),
        )?;
        let params = Params {
            rays: limit("rays", rays)?,
            samples: o.samples as u32,
            samples_inf: o.samples_inf as u32,
            flags,
            gain: o.gain,
            dai: o.disparity_at_inf,
            sigma: noise.sigma,
            dtype: T::DTYPE.kernel_code(),
            seed: split_u64(noise.seed),
            stream: split_u64(NOISE_TAG ^ noise.stream),
            ngrids: re.grids.shapes().len() as u32,
            ncolor: re.color.as_ref().map_or(0, |g| g.shapes().len()) as u32,
            c: re.grids.channels() as u32,
            cc: re.color.as_ref().map_or(0, |g| g.channels()) as u32,
            batch: re.grids.batch() as u32,
            k: lay.color_channels as u32,
            e: lay.encoding_len() as u32,
            slots: slots as u32,
            params_at: t.params_at,
            plen: lay.len as u32,
            lt: lay.trunk.layers() as u32,
            lo: lay.opacity.layers() as u32,
            lc: lay.color.layers() as u32,
            sc_f: t.f,
            sc_fc: t.fc,
            sc_ga: t.ga,
            sc_gb: t.gb,
            sc_gh: t.gh,
            sc_c: t.c,
            sc_enc: t.enc,
            groups: groups as u32,
            sc_st: t.state,
            acts_at: t.acts_at,
            hidden: re.decoder.hidden as u32,
            cout: lay.color.output() as u32,
            ray0: 0,
            j0: 0,
            j1: 0,
            pass: 0,
            pad: [0; 3],
        };
        Ok(Plan {
            params,
            tables: re.dev.upload(&t.words)?,
            scratch: re.dev.zeros(t.per_slot * slots)?,
            status: re.dev.zeros(1)?,
            dummy: re.dev.zeros(1)?,
        })
    }

    fn with_flag(mut self, on: bool, bit: u32) -> Self {
        if on {
            self.params.flags |= bit;
        }
        self
    }

    /// The error a raised status bit stands for.
    fn check_status(&self, batch: usize) -> Result<()> {
        let s = self.status.download()?[0];
        if s & 1 != 0 {
            return Err(Error::InvalidArgument {
                op: OP,
                what: format!(
                    "rays.batch holds an index out of range for grids of batch {batch} (found on the device)"
                ),
            });
        }
        if s & 2 != 0 {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "a ray's near and far must be finite with near <= far, and its origin and direction finite (found on the device)".into(),
            });
        }
        Ok(())
    }
}

const F_ENC: u32 = 16;

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
    let plan = Plan::new::<T>(re, lay, dev, r, 0)?.with_flag(rays.encoding.is_some(), F_ENC);
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
    let chunk = samples_per_dispatch(re, lay, dev, 1)?;
    let total = re.opts.samples + re.opts.samples_inf;
    let mut params = Vec::new();
    for i in 0..r.div_ceil(slots) {
        for j0 in (0..total).step_by(chunk) {
            params.push(Params {
                ray0: (i * slots) as u32,
                j0: j0 as u32,
                j1: (j0 + chunk).min(total) as u32,
                ..plan.params
            });
        }
    }
    let work: Vec<Dispatch> = params
        .iter()
        .map(|p| Dispatch {
            params: bytemuck::bytes_of(p),
            buffers: buffers.clone(),
            invocations: slots as u64,
        })
        .collect();
    dev.dispatch("render", "render_fw", &work)?;
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
    let plan = Plan::new::<T>(re, lay, dev, r, lay.len)?.with_flag(rays.encoding.is_some(), F_ENC);
    let slots = plan.params.slots as usize;
    let partials: Buffer<f32> = re.dev.zeros(slots * lay.len)?;
    let state: Buffer<u32> = re.dev.zeros(4 * r.max(1))?;
    for b in std::iter::once(&grads.grids).chain(grads.color_grids.as_ref()) {
        let Storage::Wgpu(s) = &b.storage else {
            return Err(Error::InvalidArgument {
                op: OP,
                what: "internal: a gradient is not on wgpu".into(),
            });
        };
        dev.clear(s, (b.len() * 4) as u64)?;
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
        bind_whole(&partials, 21, OP, "the per-invocation parameter gradients")?,
        bind_whole(&grads.encoding, 22, OP, "grads.encoding")?,
        bind_whole(&state, 24, OP, "the per-ray state")?,
    ]);
    let total = re.opts.samples + re.opts.samples_inf;
    let back = samples_per_dispatch(re, lay, dev, 3)?;
    let fwd = samples_per_dispatch(re, lay, dev, 1)?;
    let mut work_params = Vec::new();
    for i in 0..r.div_ceil(slots) {
        let ray0 = (i * slots) as u32;
        for j0 in (0..total).step_by(fwd) {
            let j1 = (j0 + fwd).min(total);
            work_params.push(Params {
                ray0,
                j0: j0 as u32,
                j1: j1 as u32,
                pass: 0,
                ..plan.params
            });
        }
        let chunks: Vec<usize> = (0..total).step_by(back).collect();
        for &j0 in chunks.iter().rev() {
            let j1 = (j0 + back).min(total);
            work_params.push(Params {
                ray0,
                j0: j0 as u32,
                j1: j1 as u32,
                pass: 1,
                ..plan.params
            });
        }
    }
    let work: Vec<Dispatch> = work_params
        .iter()
        .map(|p| Dispatch {
            params: bytemuck::bytes_of(p),
            buffers: buffers.clone(),
            invocations: slots as u64,
        })
        .collect();
    dev.dispatch("render", "render_bw", &work)?;
    dev.dispatch(
        "render",
        "render_sum",
        &[Dispatch {
            params: bytemuck::bytes_of(&plan.params),
            buffers: vec![
                bind_whole(&partials, 21, OP, "the per-invocation parameter gradients")?,
                bind_whole(&grads.params, 23, OP, "grads.params")?,
            ],
            invocations: lay.len as u64,
        }],
    )?;
    plan.check_status(re.grids.batch())
}
