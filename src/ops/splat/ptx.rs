//! PTX glue of splatting (`kernels/splat.ptx`), shared by CUDA and the PTX emulator: one
//! grid-stride launch per kernel, the parameter block uploaded as words. The MLP splatter's
//! threads each own a slice of the scratch (and, backward, its blocks a slice of the parameter
//! gradients), so their number is bounded by memory.

use super::tables::{ENCODING, FIXED, MLP, Params, Tables, WEIGHTS_ONLY, check_status};
use super::{OP, SplatGrads, Splatter};
use crate::Result;
use crate::backend::ptx::{BLOCK_SIZE, KernelArg, PtxDevice, accumulator_shared, ptr_of};
use crate::buffer::{Buffer, DType, Element, Float};
use crate::ops::render::Rays;

/// Threads launched at most; the kernels stride over the rest.
const MAX_THREADS: u64 = 1 << 20;

/// Threads per block (`launch_1d`): the MLP splatter launches whole blocks.
const BLOCK: usize = BLOCK_SIZE as usize;

/// Bytes of MLP scratch and per-block parameter gradients one call may allocate (at least one
/// block's), as on wgpu.
const MEMORY_BUDGET: usize = 12 << 20;

fn ptr<T: Element>(b: &Buffer<T>) -> Result<KernelArg> {
    ptr_of(OP, b, 0, b.len().max(1))
}

/// What the launches bind besides the caller's buffers.
struct Bound {
    block: Buffer<u32>,
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
}

impl Bound {
    /// `p` is the block to upload; `slots` threads share the MLP scratch (0 without one).
    fn new(s: &Splatter, t: &Tables, p: Params, slots: usize) -> Result<Bound> {
        let fixed = p.flags & FIXED != 0;
        Ok(Bound {
            hi: s.dev.zeros(if fixed { s.out.len() } else { 1 })?,
            vmax: s.dev.zeros(1)?,
            whi: s.dev.zeros(t.cells)?,
            block: s.dev.upload(bytemuck::cast_slice::<Params, u32>(&[p]))?,
            tables: s.dev.upload(&t.words)?,
            status: s.dev.zeros(1)?,
            weights: s.dev.zeros(t.cells)?,
            scratch: s.dev.zeros((t.per_slot * slots).max(1))?,
            dummy: s.dev.zeros(1)?,
            dummy_u32: s.dev.zeros(1)?,
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

    /// Every (ray, sample) splats its weights, and into `out` the encoding or, with `mlp`, the
    /// MLP splatter's value (`threads` launched: the block's `slots` with an MLP).
    fn splat<T: Float>(
        &self,
        dev: &PtxDevice,
        rays: &Rays,
        out: Option<&Buffer<f32>>,
        mlp: Option<(&Buffer<T>, &Buffer<f32>)>,
        threads: u64,
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
        match mlp {
            Some((input, params)) => args.extend([ptr(input)?, ptr(params)?, ptr(&self.scratch)?]),
            None => args.extend([
                ptr(&self.dummy_u32)?,
                ptr(&self.dummy)?,
                ptr(&self.scratch)?,
            ]),
        }
        args.extend([ptr(&self.hi)?, ptr(&self.vmax)?, ptr(&self.whi)?]);
        // SAFETY: the list matches splat_fw in splat.ptx; item i < rays x samples touches ray
        // i / samples (rays checked against the buffers' lengths), its encoding row (read only
        // when the block's flags say one is bound), cells of out and the weights inside the
        // table's shapes (corners checked, batch checked on the device), and with an MLP the
        // input grids inside their shapes, the parameters at the layers' offsets (the length
        // was checked) and the scratch of thread s < slots (per_slot x slots elements); whi at
        // the weights' cells, and with the fixed point hi at the elements of out it adds to and
        // the one vmax word.
        unsafe { dev.launch_1d("splat", "splat_fw", OP, &args, threads)? };
        let args = [ptr(&self.block)?, ptr(&self.weights)?, ptr(&self.whi)?];
        // SAFETY: the list matches splat_wconv: cells weights and as many high words.
        unsafe {
            dev.launch_1d(
                "splat",
                "splat_wconv",
                OP,
                &args,
                (self.weights.len() as u64).min(MAX_THREADS),
            )
        }
    }

    fn check(&self, s: &Splatter) -> Result<()> {
        check_status(self.status.download()?[0], s.out.batch())
    }
}

fn items(s: &Splatter, rays: usize) -> usize {
    rays * (s.opts.samples + s.opts.samples_inf)
}

/// Threads of the MLP splatter: whole blocks, as many as `work` needs, within the budget.
fn mlp_slots(t: &Tables, extra: usize, work: usize) -> usize {
    let per_block = 4 * (t.per_slot + extra) * BLOCK;
    let blocks = (MEMORY_BUDGET / per_block)
        .max(1)
        .min(work.div_ceil(BLOCK).max(1));
    blocks * BLOCK
}

fn flags(rays: &Rays) -> u32 {
    MLP | if rays.encoding.is_some() { ENCODING } else { 0 }
}

pub(super) fn forward(
    dev: &PtxDevice,
    s: &Splatter,
    rays: &Rays,
    out: &mut Buffer<f32>,
) -> Result<()> {
    forward_any::<f32>(dev, s, None, rays, out)
}

pub(super) fn forward_mlp<T: Float>(
    dev: &PtxDevice,
    s: &Splatter,
    input: &Buffer<T>,
    params: &Buffer<f32>,
    rays: &Rays,
    out: &mut Buffer<f32>,
) -> Result<()> {
    forward_any(dev, s, Some((input, params)), rays, out)
}

fn forward_any<T: Float>(
    dev: &PtxDevice,
    s: &Splatter,
    mlp: Option<(&Buffer<T>, &Buffer<f32>)>,
    rays: &Rays,
    out: &mut Buffer<f32>,
) -> Result<()> {
    let t = Tables::new(s, rays.len(), T::DTYPE, "ptx")?;
    let n = items(s, rays.len());
    let (p, slots, threads) = match mlp {
        Some(_) => {
            let slots = mlp_slots(&t, 0, n);
            let p = Params {
                flags: t.params.flags | flags(rays),
                slots: slots as u32,
                ..t.params
            };
            (p, slots, slots as u64)
        }
        None => {
            let p = Params {
                flags: t.params.flags | FIXED,
                ..t.params
            };
            (p, 0, (n as u64).min(MAX_THREADS))
        }
    };
    let bound = Bound::new(s, &t, p, slots)?;
    out.clear()?;
    if n > 0 {
        if let (None, Some(e)) = (mlp, rays.encoding) {
            let args = [ptr(&bound.block)?, ptr(e)?, ptr(&bound.vmax)?];
            // SAFETY: the list matches splat_vmax: rays x C encodings read, one word written.
            unsafe {
                dev.launch_1d(
                    "splat",
                    "splat_vmax",
                    OP,
                    &args,
                    (e.len() as u64).min(MAX_THREADS),
                )?
            };
        }
        bound.splat(dev, rays, Some(out), mlp, threads)?;
    }
    let args = [
        ptr(&bound.block)?,
        ptr(out)?,
        ptr(&bound.weights)?,
        ptr(&bound.hi)?,
        ptr(&bound.vmax)?,
    ];
    // SAFETY: the list matches splat_norm; element i < len of out (and of hi, when the block's
    // flags say fixed point) and cell i / C of the weights.
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
    let p = Params {
        flags: t.params.flags | WEIGHTS_ONLY,
        ..t.params
    };
    let bound = Bound::new(s, &t, p, 0)?;
    let n = items(s, rays.len()) as u64;
    bound.splat::<f32>(dev, rays, None, None, n.min(MAX_THREADS))?;
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

pub(super) fn backward_mlp<T: Float>(
    dev: &PtxDevice,
    s: &Splatter,
    input: &Buffer<T>,
    params: &Buffer<f32>,
    rays: &Rays,
    grad_out: &Buffer<f32>,
    grads: &mut SplatGrads,
) -> Result<()> {
    let r = rays.len();
    // Input grid gradients are added to; splat_mlp_bw writes every encoding gradient row and
    // splat_mlp_sum every parameter gradient, when there are rays.
    grads.input_grids.clear()?;
    if r == 0 {
        return grads.params.clear();
    }
    let t = Tables::new(s, r, T::DTYPE, "ptx")?;
    let plen = s.params_len();
    // One slice of parameter gradients per block, summed in shared memory when they fit.
    let slots = mlp_slots(&t, plen.div_ceil(BLOCK), r);
    let blocks = slots / BLOCK;
    // The weights first (a plain splat of ones), then the march with the MLP.
    let weights_only = Params {
        flags: t.params.flags | WEIGHTS_ONLY,
        ..t.params
    };
    let bound = Bound::new(s, &t, weights_only, slots)?;
    let n = items(s, r) as u64;
    bound.splat::<T>(dev, rays, None, None, n.min(MAX_THREADS))?;
    let p = Params {
        flags: t.params.flags | flags(rays),
        slots: slots as u32,
        ..t.params
    };
    let block = s.dev.upload(bytemuck::cast_slice::<Params, u32>(&[p]))?;
    let partials: Buffer<f32> = s.dev.zeros(blocks * plen)?;
    let mut args = bound.rays(rays)?;
    args[0] = ptr(&block)?;
    args.extend([
        ptr(rays.encoding.unwrap_or(&bound.dummy))?,
        ptr(&bound.status)?,
        ptr(&bound.weights)?,
        ptr(grad_out)?,
        ptr(&grads.encoding)?,
        ptr(input)?,
        ptr(params)?,
        ptr(&bound.scratch)?,
        ptr(&partials)?,
        ptr(&grads.input_grids)?,
    ]);
    // SAFETY: the list matches splat_mlp_bw; thread s < slots marches rays s, s + slots, ...
    // (rays checked against the buffers' lengths), reads the encoding when the flags say one is
    // bound, the weights and grad_out at output cells inside the table's shapes, the input
    // grids and the parameters as splat_fw does, and writes its own scratch slot, its block's
    // slice of partials (plen elements) or `shared` bytes of shared memory holding plen f32,
    // the ray's encoding gradient row and input grid gradients at cells inside their shapes.
    unsafe {
        dev.launch_1d_shared(
            "splat",
            "splat_mlp_bw",
            OP,
            &args,
            slots as u64,
            accumulator_shared(plen),
        )?
    };
    let args = [
        ptr(&block)?,
        ptr(&partials)?,
        ptr(&grads.params)?,
        KernelArg::U32(blocks as u32),
    ];
    // SAFETY: the list matches splat_mlp_sum: partials is blocks x plen, g_params plen long.
    unsafe {
        dev.launch_1d(
            "splat",
            "splat_mlp_sum",
            OP,
            &args,
            (plen as u64).min(MAX_THREADS),
        )?
    };
    bound.check(s)
}
