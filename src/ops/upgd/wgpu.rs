//! wgpu glue of UPGD (`shaders/upgd.wgsl`): two dispatches per step over the chunk table.
//! Each flat buffer is bound whole, so it must fit one binding (128 MiB on lavapipe); larger
//! models are refused with a clear error until the kernels learn to walk binding windows.

use super::{DeviceState, Scalars, Slots, Traces, Variant};
use crate::backend::wgpu::{Dispatch, Range, WgpuStorage};
use crate::buffer::{Buffer, Element, Float, Storage};
use crate::{Error, Result};

const OP: &str = "upgd";

/// `Params` of upgd.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    seed: [u32; 2],
    stream: [u32; 2],
    bc: f32,
    decay: f32,
    neg_lr: f32,
    sigma: f32,
    b1: f32,
    omb1: f32,
    b2: f32,
    omb2: f32,
    eps: f32,
    bc1: f32,
    sqrt_bc2: f32,
    beta: f32,
    omb: f32,
    wtype: u32,
    gtype: u32,
    flags: u32,
    cur: u32,
    rows: u32,
    nchunks: u32,
    scale: u32,
    next: u32,
    uflags: u32,
    utype: u32,
    pad: u32,
}

fn storage<T: Element>(b: &Buffer<T>) -> Result<&WgpuStorage> {
    match &b.storage {
        Storage::Wgpu(s) => Ok(s),
        _ => Err(Error::InvalidArgument {
            op: OP,
            what: "internal: a buffer of the step is not on wgpu".into(),
        }),
    }
}

/// The whole buffer as one binding, refused past the binding limit.
fn whole<'a, T: Element>(b: &'a Buffer<T>, binding: u32) -> Result<Range<'a>> {
    let s = storage(b)?;
    let bytes = (b.len() * T::DTYPE.size()) as u64;
    if bytes > s.dev.chunk_bytes() {
        return Err(Error::LimitExceeded {
            what: "upgd on wgpu: bytes of one flat buffer (one binding)".into(),
            requested: bytes,
            max: s.dev.chunk_bytes(),
        });
    }
    Ok(s.range(0, b.len().max(1), T::DTYPE.size()).at(binding))
}

/// A moment buffer, or the one-element scratch where the variant has none.
fn moments<'a, U: Element>(
    b: Option<&'a Buffer<U>>,
    scratch: &'a Buffer<f32>,
    binding: u32,
) -> Result<Range<'a>> {
    match b {
        Some(b) => whole(b, binding),
        None => whole(scratch, binding),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn step<W: Float, G: Float, U: Float>(
    st: &DeviceState,
    variant: Variant,
    sc: &Scalars,
    seed: u64,
    slots: Slots,
    w: &mut Buffer<W>,
    g: &Buffer<G>,
    h: Option<&Buffer<G>>,
    tr: &mut Traces<U>,
) -> Result<()> {
    let (u, m, v) = (&tr.u, tr.m.as_ref(), tr.v.as_ref());
    let kv = variant.kernel();
    let base = Params {
        seed: [seed as u32, (seed >> 32) as u32],
        stream: [sc.stream as u32, (sc.stream >> 32) as u32],
        bc: sc.bc,
        decay: sc.decay,
        neg_lr: sc.neg_lr,
        sigma: sc.sigma,
        b1: kv.beta1,
        omb1: sc.one_minus_beta1,
        b2: kv.beta2,
        omb2: sc.one_minus_beta2,
        eps: kv.eps,
        bc1: sc.bc1,
        sqrt_bc2: sc.sqrt_bc2,
        beta: sc.beta,
        omb: sc.one_minus_beta,
        wtype: W::DTYPE.kernel_code(),
        gtype: G::DTYPE.kernel_code(),
        flags: kv.trace_flags | (u32::from(slots.fused) << 2),
        cur: slots.cur as u32,
        rows: st.rows.max(1) as u32,
        nchunks: st.nchunks as u32,
        scale: slots.scale as u32,
        next: slots.next as u32,
        uflags: kv.update_flags,
        utype: U::DTYPE.kernel_code(),
        pad: 0,
    };
    let update = Params {
        flags: kv.update_flags,
        ..base
    };
    let dev = &storage(w)?.dev;
    let invocations = st.nchunks as u64 * 256;
    let trace_buffers = vec![
        whole(w, 1)?,
        whole(g, 2)?,
        whole(h.unwrap_or(g), 3)?,
        whole(u, 4)?,
        whole(&st.chunks, 5)?,
        whole(&st.state, 6)?,
        whole(&st.rowsq, 7)?,
        moments(m, &st.scratch, 8)?,
        moments(v, &st.scratch, 9)?,
    ];
    dev.dispatch(
        "upgd",
        "trace",
        &[Dispatch {
            params: bytemuck::bytes_of(&base),
            buffers: trace_buffers,
            invocations,
        }],
    )?;
    if slots.fused {
        return Ok(());
    }
    let update_buffers = vec![
        whole(w, 1)?,
        whole(g, 2)?,
        whole(u, 4)?,
        whole(&st.chunks, 5)?,
        whole(&st.state, 6)?,
        whole(&st.rowsq, 7)?,
        moments(m, &st.scratch, 8)?,
        moments(v, &st.scratch, 9)?,
    ];
    dev.dispatch(
        "upgd",
        "update",
        &[Dispatch {
            params: bytemuck::bytes_of(&update),
            buffers: update_buffers,
            invocations,
        }],
    )
}
