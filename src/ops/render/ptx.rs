//! PTX glue of rendering (`kernels/render.ptx`), shared by CUDA and the PTX emulator: forward,
//! one launch of `slots` threads marching the rays grid-stride; backward, one launch that
//! marches each ray twice (Lambda, then the reverse march), each block summing its threads'
//! decoder gradients (in shared memory when they fit), and one that sums the blocks'. The
//! parameter block is the one render.wgsl reads, uploaded as words.

use super::decoder::Layout;
use super::tables::{Params, Tables};
use super::{OP, Rays, RenderGrads, RenderOutput, Renderer};
use crate::Result;
use crate::backend::ptx::{BLOCK_SIZE, KernelArg, PtxDevice, accumulator_shared, ptr_of};
use crate::buffer::{Buffer, Element, Float};

/// Threads launched at most; the scratch grows with them.
const MAX_THREADS: usize = 1 << 16;

/// Bytes of scratch one call may allocate (at least one thread's).
const MEMORY_BUDGET: usize = 12 << 20;

fn ptr<T: Element>(b: &Buffer<T>) -> Result<KernelArg> {
    ptr_of(OP, b, 0, b.len().max(1))
}

/// What both launches bind before their own buffers: the block, the tables, the inputs, the
/// scratch of `slots` threads and the status word.
struct Launch {
    slots: usize,
    pblock: Buffer<u32>,
    tables: Buffer<u32>,
    scratch: Buffer<f32>,
    status: Buffer<u32>,
    dummy: Buffer<f32>,
}

impl Launch {
    /// `extra`: f32 per thread besides its scratch (the backward's share of its block's slice
    /// of decoder gradients).
    fn new<T: Float>(re: &Renderer, lay: &Layout, rays: &Rays, extra: usize) -> Result<Launch> {
        let r = rays.len();
        let t = Tables::new(&re.grids, re.color.as_ref(), lay);
        let slots = r
            .clamp(1, MAX_THREADS)
            .min((MEMORY_BUDGET / ((t.per_slot + extra) * 4)).max(1));
        let block = Params::new::<T>(re, lay, &t, r, rays.encoding.is_some(), slots, "ptx")?;
        let words: &[u32] = bytemuck::cast_slice(std::slice::from_ref(&block));
        Ok(Launch {
            slots,
            pblock: re.dev.upload(words)?,
            tables: re.dev.upload(&t.words)?,
            scratch: re.dev.zeros(t.per_slot * slots)?,
            status: re.dev.zeros(1)?,
            dummy: re.dev.zeros(1)?,
        })
    }

    /// The first 13 arguments of render_fw and render_bw.
    fn args<T: Float>(
        &self,
        grids: &Buffer<T>,
        color: Option<&Buffer<T>>,
        params: &Buffer<f32>,
        rays: &Rays,
    ) -> Result<Vec<KernelArg>> {
        Ok(vec![
            ptr(&self.pblock)?,
            ptr(&self.tables)?,
            ptr(grids)?,
            match color {
                Some(c) => ptr(c)?,
                None => ptr(&self.dummy)?,
            },
            ptr(params)?,
            ptr(rays.origins)?,
            ptr(rays.directions)?,
            ptr(rays.near)?,
            ptr(rays.far)?,
            ptr(rays.batch)?,
            ptr(rays.encoding.unwrap_or(&self.dummy))?,
            ptr(&self.scratch)?,
            ptr(&self.status)?,
        ])
    }

    fn check(&self, re: &Renderer) -> Result<()> {
        super::tables::check_status(OP, self.status.download()?[0], re.grids.batch())
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn forward<T: Float>(
    dev: &PtxDevice,
    re: &Renderer,
    lay: &Layout,
    grids: &Buffer<T>,
    color: Option<&Buffer<T>>,
    params: &Buffer<f32>,
    rays: &Rays,
    out: &mut RenderOutput,
) -> Result<()> {
    let launch = Launch::new::<T>(re, lay, rays, 0)?;
    let mut args = launch.args(grids, color, params, rays)?;
    args.extend([
        ptr(&out.features)?,
        ptr(&out.ray_length)?,
        ptr(&out.neg_log_transmittance)?,
    ]);
    // SAFETY: the list matches render_fw in render.ptx; thread s < slots touches scratch
    // elements k * slots + s (k < per_slot), rays r < rays and their outputs, grid cells inside
    // the tables' shapes (checked corners, batch checked against the grids' batch first), the
    // decoder's parameters at the layout's offsets (the vector's length was checked) and the
    // encoding row r when present.
    unsafe { dev.launch_1d("render", "render_fw", OP, &args, launch.slots as u64)? };
    launch.check(re)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Float>(
    dev: &PtxDevice,
    re: &Renderer,
    lay: &Layout,
    grids: &Buffer<T>,
    color: Option<&Buffer<T>>,
    params: &Buffer<f32>,
    rays: &Rays,
    grad_out: &RenderOutput,
    grads: &mut RenderGrads,
) -> Result<()> {
    // Grid gradients are added to; the rest is written.
    grads.grids.clear()?;
    if let Some(cg) = grads.color_grids.as_mut() {
        cg.clear()?;
    }
    // One slice of decoder gradients per block, summed in shared memory when they fit.
    let launch = Launch::new::<T>(re, lay, rays, lay.len.div_ceil(BLOCK_SIZE as usize))?;
    let blocks = launch.slots.div_ceil(BLOCK_SIZE as usize);
    let partials: Buffer<f32> = re.dev.zeros(lay.len * blocks)?;
    let shared = accumulator_shared(lay.len);
    let no_color: Buffer<f32> = re.dev.zeros(1)?;
    let mut args = launch.args(grids, color, params, rays)?;
    args.extend([
        ptr(&grad_out.features)?,
        ptr(&grad_out.ray_length)?,
        ptr(&grad_out.neg_log_transmittance)?,
        ptr(&grads.grids)?,
        ptr(grads.color_grids.as_ref().unwrap_or(&no_color))?,
        ptr(&partials)?,
        ptr(&grads.encoding)?,
    ]);
    if !rays.is_empty() {
        // SAFETY: the list matches render_bw in render.ptx; thread s < slots touches its scratch
        // elements k * slots + s (k < per_slot), rays r < rays with their incoming gradients
        // and encoding gradient rows, grid (gradient) cells inside the tables' shapes (checked
        // corners, batch checked on the device), and its block's slice of partials (params
        // long) or, when `shared` holds params f32, that many bytes of shared memory.
        unsafe {
            dev.launch_1d_shared(
                "render",
                "render_bw",
                OP,
                &args,
                launch.slots as u64,
                shared,
            )?
        };
    }
    let sum = [
        ptr(&launch.pblock)?,
        ptr(&partials)?,
        ptr(&grads.params)?,
        KernelArg::U32(blocks as u32),
    ];
    // SAFETY: the list matches render_sum: partials is blocks x params, the gradient params long.
    unsafe { dev.launch_1d("render", "render_sum", OP, &sum, lay.len as u64)? };
    launch.check(re)
}
