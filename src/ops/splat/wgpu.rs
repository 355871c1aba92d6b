//! wgpu glue of splatting (`shaders/splat.wgsl`): the forward splat in windows of (ray, sample)
//! invocations then one normalizing dispatch; the backward pass splats the weights again and
//! gathers in windows of samples per (ray, channel) invocation.

use super::tables::{Params, Tables, WEIGHTS_ONLY, check_status};
use super::{OP, Splatter};
use crate::backend::wgpu::{Dispatch, Range, WgpuDevice, bind_whole};
use crate::buffer::{Buffer, Storage};
use crate::ops::render::Rays;
use crate::{Error, Result};

/// Invocations per dispatch at most (a 2D grid of 256-wide workgroups holds them easily).
const MAX_INVOCATIONS: usize = 1 << 22;

/// Loop iterations one invocation may run in a dispatch: llvmpipe (lavapipe) silently ends every
/// loop of an invocation past 65 535 in all (see render's wgpu.rs); GPUs have no such limit.
const LOOP_BUDGET: usize = 50_000;

fn device(s: &Splatter) -> Result<&WgpuDevice> {
    match &s.dev {
        crate::Device::Wgpu(d) => Ok(d),
        _ => Err(Error::InvalidArgument {
            op: OP,
            what: "internal: the splatter is not on wgpu".into(),
        }),
    }
}

fn llvmpipe(dev: &WgpuDevice) -> bool {
    dev.adapter_info().name.contains("llvmpipe")
}

/// Loop iterations of one forward invocation (a compare-and-swap add counted as two), refused
/// on llvmpipe past the budget.
fn check_forward_loops(s: &Splatter, dev: &WgpuDevice) -> Result<()> {
    let grids = s.out.shapes().len();
    let per = 16 + grids * (1 + 8 * (3 + 2 * (s.out.channels() + 1)));
    if per > LOOP_BUDGET && llvmpipe(dev) {
        return Err(Error::Unsupported {
            op: OP,
            backend: "wgpu (lavapipe)",
            what: format!(
                "one sample of this grid list runs about {per} loop iterations, past llvmpipe's \
                 limit of 65535 per invocation"
            ),
        });
    }
    Ok(())
}

/// Samples per backward window: each sample loops over every corner of every grid.
fn samples_per_window(s: &Splatter) -> usize {
    let per_sample = 8 + s.out.shapes().len() * 10;
    (LOOP_BUDGET / per_sample).max(1)
}

/// The buffers every splat dispatch reads: the table, the rays and the status word.
struct Bound {
    tables: Buffer<u32>,
    status: Buffer<u32>,
    weights: Buffer<f32>,
    dummy: Buffer<f32>,
    /// A placeholder of its own: one buffer cannot be bound read-only and writable at once.
    dummy_out: Buffer<f32>,
}

impl Bound {
    fn new(s: &Splatter, t: &Tables) -> Result<Bound> {
        Ok(Bound {
            tables: s.dev.upload(&t.words)?,
            status: s.dev.zeros(1)?,
            weights: s.dev.zeros(t.cells)?,
            dummy: s.dev.zeros(1)?,
            dummy_out: s.dev.zeros(1)?,
        })
    }

    fn rays<'a>(&'a self, rays: &'a Rays) -> Result<Vec<Range<'a>>> {
        Ok(vec![
            bind_whole(&self.tables, 1, OP, "the grid table")?,
            bind_whole(rays.origins, 2, OP, "rays.origins")?,
            bind_whole(rays.directions, 3, OP, "rays.directions")?,
            bind_whole(rays.near, 4, OP, "rays.near")?,
            bind_whole(rays.far, 5, OP, "rays.far")?,
            bind_whole(rays.batch, 6, OP, "rays.batch")?,
            bind_whole(&self.status, 8, OP, "the status word")?,
        ])
    }

    /// The forward splat over every (ray, sample), in windows; `out` none splats the weights
    /// only.
    fn splat(
        &self,
        dev: &WgpuDevice,
        t: &Tables,
        rays: &Rays,
        out: Option<&Buffer<f32>>,
    ) -> Result<()> {
        let r = t.params.rays as usize;
        let total = (t.params.samples + t.params.samples_inf) as usize;
        let nj = total.min(MAX_INVOCATIONS);
        let nr = (MAX_INVOCATIONS / nj).max(1);
        let mut buffers = self.rays(rays)?;
        buffers.extend([
            match (out, rays.encoding) {
                (Some(_), Some(e)) => bind_whole(e, 7, OP, "rays.encoding")?,
                _ => bind_whole(&self.dummy, 7, OP, "a placeholder")?,
            },
            bind_whole(out.unwrap_or(&self.dummy_out), 9, OP, "out")?,
            bind_whole(&self.weights, 10, OP, "the weights")?,
        ]);
        let flags = t.params.flags | if out.is_none() { WEIGHTS_ONLY } else { 0 };
        let mut blocks = Vec::new();
        for ray0 in (0..r).step_by(nr) {
            for j0 in (0..total).step_by(nj) {
                blocks.push(Params {
                    flags,
                    ray0: ray0 as u32,
                    nr: nr.min(r - ray0) as u32,
                    j0: j0 as u32,
                    nj: nj.min(total - j0) as u32,
                    ..t.params
                });
            }
        }
        dispatch(dev, "splat_fw", &blocks, &buffers, |p| {
            u64::from(p.nr) * u64::from(p.nj)
        })
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

fn clear(dev: &WgpuDevice, b: &Buffer<f32>) -> Result<()> {
    let Storage::Wgpu(st) = &b.storage else {
        return Err(Error::InvalidArgument {
            op: OP,
            what: "internal: a buffer is not on wgpu".into(),
        });
    };
    dev.clear(st, (b.len() * 4) as u64)
}

pub(super) fn forward(s: &Splatter, rays: &Rays, out: &mut Buffer<f32>) -> Result<()> {
    let dev = device(s)?;
    check_forward_loops(s, dev)?;
    let t = Tables::new(s, rays.len(), "wgpu")?;
    let bound = Bound::new(s, &t)?;
    clear(dev, out)?;
    if !rays.is_empty() {
        bound.splat(dev, &t, rays, Some(out))?;
    }
    let norm = [
        bind_whole(out, 9, OP, "out")?,
        bind_whole(&bound.weights, 10, OP, "the weights")?,
    ];
    dispatch(dev, "splat_norm", &[t.params], &norm, |p| u64::from(p.len))?;
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
    let t = Tables::new(s, r, "wgpu")?;
    let bound = Bound::new(s, &t)?;
    bound.splat(dev, &t, rays, None)?;
    let mut buffers = bound.rays(rays)?;
    buffers.extend([
        bind_whole(&bound.weights, 10, OP, "the weights")?,
        bind_whole(grad_out, 11, OP, "grad_out")?,
        bind_whole(grad_encoding, 12, OP, "grad_encoding")?,
    ]);
    let c = s.out.channels();
    let nr = (MAX_INVOCATIONS / c).max(1);
    let total = s.opts.samples + s.opts.samples_inf;
    let nj = samples_per_window(s);
    let mut blocks = Vec::new();
    for ray0 in (0..r).step_by(nr) {
        for j0 in (0..total).step_by(nj) {
            blocks.push(Params {
                ray0: ray0 as u32,
                nr: nr.min(r - ray0) as u32,
                j0: j0 as u32,
                nj: nj.min(total - j0) as u32,
                first: u32::from(j0 == 0),
                ..t.params
            });
        }
    }
    dispatch(dev, "splat_bw", &blocks, &buffers, |p| {
        u64::from(p.nr) * u64::from(p.c)
    })?;
    bound.check(s)
}
