//! PTX glue of UPGD (`kernels/upgd.ptx`), shared by CUDA and the PTX emulator: two launches per
//! step over the chunk table (one, fused, in the one-pass mode), with the maximum and the row
//! sums in three rotating slots on the device.

use super::{DeviceState, Params, Scalars, Slots, TensorSpec, Traces, Variant};
use crate::Result;
use crate::backend::ptx::{BLOCK_SIZE, KernelArg, PtxDevice, ptr_of};
use crate::buffer::{Buffer, Float};

const OP: &str = "upgd";

#[allow(clippy::too_many_arguments)]
pub(super) fn step<W: Float, G: Float, U: Float>(
    dev: &PtxDevice,
    st: &DeviceState,
    variant: Variant,
    sc: &Scalars,
    seed: u64,
    slots: Slots,
    tensors: &[TensorSpec],
    params: Params<'_, W, G>,
    tr: &mut Traces<U>,
) -> Result<()> {
    let (u, m, v) = (&tr.u, tr.m.as_ref(), tr.v.as_ref());
    let n = u.len();
    let rows = st.rows;
    let ptr = |b: &Buffer<U>| ptr_of(OP, b, 0, n);
    let up = ptr(u)?;
    let groups = launch_groups(st, tensors, &params)?;
    // Without moments the kernels never touch m and v; any valid pointer fills the slots.
    let mp = match m {
        Some(m) => ptr(m)?,
        None => up,
    };
    let vp = match v {
        Some(v) => ptr(v)?,
        None => up,
    };
    let eta = |slot: usize| ptr_of(OP, &st.state, slot, 1);
    // Global scaling keeps no row sums (a 3-element placeholder the kernels never index).
    let local = variant.scaling() == super::Scaling::Local;
    let rowsq = |slot: usize| match local {
        true => ptr_of(OP, &st.rowsq, slot * rows, rows),
        false => ptr_of(OP, &st.rowsq, slot, 1),
    };
    let nonfinite = ptr_of(OP, &st.state, 3, 1)?;
    let kv = variant.kernel();
    let (wtype, gtype, utype) = (
        W::DTYPE.kernel_code(),
        G::DTYPE.kernel_code(),
        U::DTYPE.kernel_code(),
    );
    let f = KernelArg::F32;
    let scalars = [
        f(sc.decay),
        f(sc.neg_lr),
        f(sc.sigma),
        f(kv.beta1),
        f(sc.one_minus_beta1),
        f(kv.beta2),
        f(sc.one_minus_beta2),
        f(kv.eps),
        f(sc.bc1),
        f(sc.sqrt_bc2),
    ];
    let mut trace = vec![
        up,
        up,
        up,
        up,
        mp,
        vp,
        up,
        eta(slots.cur)?,
        eta(slots.scale)?,
        eta(slots.next)?,
        rowsq(slots.cur)?,
        rowsq(slots.scale)?,
        rowsq(slots.next)?,
        nonfinite,
        KernelArg::U64(seed),
        KernelArg::U64(sc.stream),
        f(sc.beta),
        f(sc.one_minus_beta),
        f(sc.bc),
    ];
    trace.extend(scalars);
    trace.extend([
        KernelArg::U32(wtype),
        KernelArg::U32(gtype),
        KernelArg::U32(utype),
        KernelArg::U32(kv.trace_flags | (u32::from(slots.fused) << 2)),
        KernelArg::U32(kv.update_flags),
    ]);
    for grp in &groups {
        trace[..3].copy_from_slice(&[grp.w, grp.g, grp.h]);
        trace[6] = grp.chunks;
        // SAFETY: the list matches `trace` in upgd.ptx; every chunk of the group lies inside
        // the traces of `n` elements and inside the group's w, g, h (the flat buffers, or one
        // tensor's buffers passed shifted by its offset), and its rows inside `rows` (built and
        // checked by the host).
        unsafe { dev.launch_1d("upgd", "trace", OP, &trace, grp.threads) }?;
    }
    if slots.fused {
        return Ok(());
    }
    let mut update = vec![
        up,
        up,
        up,
        mp,
        vp,
        up,
        eta(slots.scale)?,
        eta(slots.next)?,
        rowsq(slots.scale)?,
        rowsq(slots.next)?,
        KernelArg::U64(seed),
        KernelArg::U64(sc.stream),
        f(sc.bc),
    ];
    update.extend(scalars);
    update.extend([
        KernelArg::U32(wtype),
        KernelArg::U32(gtype),
        KernelArg::U32(utype),
        KernelArg::U32(kv.update_flags),
    ]);
    for grp in &groups {
        update[..2].copy_from_slice(&[grp.w, grp.g]);
        update[5] = grp.chunks;
        // SAFETY: as above, for `update`.
        unsafe { dev.launch_1d("upgd", "update", OP, &update, grp.threads) }?;
    }
    Ok(())
}

/// One launch's buffers: `w`, `g`, `h` (`g` where there is none), its chunks of the table and
/// its threads.
struct Group {
    w: KernelArg,
    g: KernelArg,
    h: KernelArg,
    chunks: KernelArg,
    threads: u64,
}

/// One group over the whole table for a flat model; one per tensor for a list, each buffer
/// passed shifted by its tensor's offset so that the kernels index it by global element.
fn launch_groups<W: Float, G: Float>(
    st: &DeviceState,
    tensors: &[TensorSpec],
    params: &Params<'_, W, G>,
) -> Result<Vec<Group>> {
    let block = u64::from(BLOCK_SIZE);
    match params {
        Params::Flat { w, g, h } => {
            let n = w.len();
            let gp = ptr_of(OP, *g, 0, n)?;
            Ok(vec![Group {
                w: ptr_of(OP, &**w, 0, n)?,
                g: gp,
                h: h.map(|h| ptr_of(OP, h, 0, n)).transpose()?.unwrap_or(gp),
                chunks: ptr_of(OP, &st.chunks, 0, st.chunks.len())?,
                threads: st.nchunks as u64 * block,
            }])
        }
        Params::List { w, g, h } => tensors
            .iter()
            .zip(&st.tensor_chunks)
            .enumerate()
            .map(|(k, (s, &(first, count)))| {
                let (ws, gs) = (
                    (s.offset * W::DTYPE.size()) as u64,
                    (s.offset * G::DTYPE.size()) as u64,
                );
                let gp = ptr_of(OP, &g[k], 0, s.len)?.shifted(gs);
                let hp = match h {
                    Some(h) => ptr_of(OP, &h[k], 0, s.len)?.shifted(gs),
                    None => gp,
                };
                Ok(Group {
                    w: ptr_of(OP, &w[k], 0, s.len)?.shifted(ws),
                    g: gp,
                    h: hp,
                    chunks: ptr_of(OP, &st.chunks, 8 * first, 8 * count)?,
                    threads: count as u64 * block,
                })
            })
            .collect(),
    }
}
