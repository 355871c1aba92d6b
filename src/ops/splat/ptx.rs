//! PTX glue of splatting (`kernels/splat.ptx`), shared by CUDA and the PTX emulator: one
//! grid-stride launch per kernel, the parameter block uploaded as words.

use super::tables::{Params, Tables, WEIGHTS_ONLY, check_status};
use super::{OP, Splatter};
use crate::Result;
use crate::backend::ptx::{KernelArg, PtxDevice, ptr_of};
use crate::buffer::{Buffer, DType, Element};
use crate::ops::render::Rays;

/// Threads launched at most; the kernels stride over the rest.
const MAX_THREADS: u64 = 1 << 20;

fn ptr<T: Element>(b: &Buffer<T>) -> Result<KernelArg> {
    ptr_of(OP, b, 0, b.len().max(1))
}

/// What both passes bind: the block, the table, the rays, the status word and the weights.
struct Bound {
    block: Buffer<u32>,
    tables: Buffer<u32>,
    status: Buffer<u32>,
    weights: Buffer<f32>,
    dummy: Buffer<f32>,
}

impl Bound {
    fn new(s: &Splatter, t: &Tables, flags: u32) -> Result<Bound> {
        let p = Params {
            flags: t.params.flags | flags,
            ..t.params
        };
        Ok(Bound {
            block: s.dev.upload(bytemuck::cast_slice::<Params, u32>(&[p]))?,
            tables: s.dev.upload(&t.words)?,
            status: s.dev.zeros(1)?,
            weights: s.dev.zeros(t.cells)?,
            dummy: s.dev.zeros(1)?,
        })
    }

    fn rays(&self, rays: &Rays) -> Result<Vec<KernelArg>> {
        Ok(vec![
            ptr(&self.block)?,
            ptr(&self.tables)?,
            ptr(rays.origins)?,
            ptr(rays.directions)?,
            ptr(rays.near)?,
            ptr(rays.far)?,
            ptr(rays.batch)?,
        ])
    }

    /// Every (ray, sample) splats its weights, and `out` the encoding when given.
    fn splat(
        &self,
        dev: &PtxDevice,
        t: &Tables,
        rays: &Rays,
        out: Option<&Buffer<f32>>,
    ) -> Result<()> {
        let mut args = self.rays(rays)?;
        args.extend([
            match out {
                Some(_) => ptr(rays.encoding.unwrap_or(&self.dummy))?,
                None => ptr(&self.dummy)?,
            },
            ptr(&self.status)?,
            ptr(out.unwrap_or(&self.dummy))?,
            ptr(&self.weights)?,
        ]);
        let items = u64::from(t.params.rays) * u64::from(t.params.samples + t.params.samples_inf);
        // SAFETY: the list matches splat_fw in splat.ptx; item i < rays x samples touches ray
        // i / samples (rays checked against the buffers' lengths), its encoding row (C wide,
        // read only without WEIGHTS_ONLY, when the encoding is bound), and cells of out and the
        // weights inside the table's shapes (corners checked, batch checked on the device).
        unsafe { dev.launch_1d("splat", "splat_fw", OP, &args, items.min(MAX_THREADS)) }
    }

    fn check(&self, s: &Splatter) -> Result<()> {
        check_status(self.status.download()?[0], s.out.batch())
    }
}

pub(super) fn forward(
    dev: &PtxDevice,
    s: &Splatter,
    rays: &Rays,
    out: &mut Buffer<f32>,
) -> Result<()> {
    let t = Tables::new(s, rays.len(), DType::F32, "ptx")?;
    let bound = Bound::new(s, &t, 0)?;
    out.write(&vec![0.0; out.len()])?;
    if !rays.is_empty() {
        bound.splat(dev, &t, rays, Some(out))?;
    }
    let args = [ptr(&bound.block)?, ptr(out)?, ptr(&bound.weights)?];
    // SAFETY: the list matches splat_norm; element i < len of out and cell i / C of the weights.
    unsafe {
        dev.launch_1d(
            "splat",
            "splat_norm",
            OP,
            &args,
            (out.len() as u64).min(MAX_THREADS),
        )?
    };
    bound.check(s)
}

pub(super) fn backward(
    dev: &PtxDevice,
    s: &Splatter,
    rays: &Rays,
    grad_out: &Buffer<f32>,
    grad_encoding: &mut Buffer<f32>,
) -> Result<()> {
    if rays.is_empty() {
        return Ok(());
    }
    let t = Tables::new(s, rays.len(), DType::F32, "ptx")?;
    let bound = Bound::new(s, &t, WEIGHTS_ONLY)?;
    bound.splat(dev, &t, rays, None)?;
    let mut args = bound.rays(rays)?;
    args.extend([
        ptr(&bound.status)?,
        ptr(&bound.weights)?,
        ptr(grad_out)?,
        ptr(grad_encoding)?,
    ]);
    let items = rays.len() as u64 * u64::from(t.params.c);
    // SAFETY: the list matches splat_bw; item i < rays x C reads ray i / C, the weights and
    // grad_out at corner cells inside the table's shapes, and writes grad_encoding[i].
    unsafe { dev.launch_1d("splat", "splat_bw", OP, &args, items.min(MAX_THREADS))? };
    bound.check(s)
}
