//! PTX glue of rendering (`kernels/render.ptx`), shared by CUDA and the PTX emulator: the
//! forward pass, one launch of `slots` threads marching the rays grid-stride. The parameter block
//! is the one render.wgsl reads, uploaded as words.

use super::decoder::Layout;
use super::tables::{Params, Tables};
use super::{OP, Rays, RenderOutput, Renderer};
use crate::Result;
use crate::backend::ptx::{KernelArg, PtxDevice, ptr_of};
use crate::buffer::{Buffer, Element, Float};

/// Threads launched at most; the scratch grows with them.
const MAX_THREADS: usize = 1 << 16;

/// Bytes of scratch one call may allocate (at least one thread's).
const MEMORY_BUDGET: usize = 12 << 20;

fn ptr<T: Element>(b: &Buffer<T>) -> Result<KernelArg> {
    ptr_of(OP, b, 0, b.len().max(1))
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
    let r = rays.len();
    let t = Tables::new(&re.grids, re.color.as_ref(), lay);
    let slots = r
        .clamp(1, MAX_THREADS)
        .min((MEMORY_BUDGET / (t.per_slot * 4)).max(1));
    let block = Params::new::<T>(re, lay, &t, r, rays.encoding.is_some(), slots, "ptx")?;
    let words: &[u32] = bytemuck::cast_slice(std::slice::from_ref(&block));
    let pblock = re.dev.upload(words)?;
    let tables = re.dev.upload(&t.words)?;
    let scratch: Buffer<f32> = re.dev.zeros(t.per_slot * slots)?;
    let status: Buffer<u32> = re.dev.zeros(1)?;
    let dummy: Buffer<f32> = re.dev.zeros(1)?;
    let args = [
        ptr(&pblock)?,
        ptr(&tables)?,
        ptr(grids)?,
        match color {
            Some(c) => ptr(c)?,
            None => ptr(&dummy)?,
        },
        ptr(params)?,
        ptr(rays.origins)?,
        ptr(rays.directions)?,
        ptr(rays.near)?,
        ptr(rays.far)?,
        ptr(rays.batch)?,
        ptr(rays.encoding.unwrap_or(&dummy))?,
        ptr(&scratch)?,
        ptr(&status)?,
        ptr(&out.features)?,
        ptr(&out.ray_length)?,
        ptr(&out.neg_log_transmittance)?,
    ];
    // SAFETY: the list matches render_fw in render.ptx; thread s < slots touches scratch
    // elements k * slots + s (k < per_slot), rays r < rays and their outputs, grid cells inside
    // the tables' shapes (checked corners, batch checked against the grids' batch first), the
    // decoder's parameters at the layout's offsets (the vector's length was checked) and the
    // encoding row r when present.
    unsafe { dev.launch_1d("render", "render_fw", OP, &args, slots as u64)? };
    super::tables::check_status(OP, status.download()?[0], re.grids.batch())
}
