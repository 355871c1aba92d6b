//! PTX glue of UPGD (`kernels/upgd.ptx`), shared by CUDA and the PTX emulator: two launches per
//! step over the chunk table (one, fused, in the one-pass mode), with the maximum and the row
//! sums in three rotating slots on the device.

use super::{DeviceState, Scalars, Slots, Traces, Variant};
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
    w: &mut Buffer<W>,
    g: &Buffer<G>,
    h: Option<&Buffer<G>>,
    tr: &mut Traces<U>,
) -> Result<()> {
    let (u, m, v) = (&tr.u, tr.m.as_ref(), tr.v.as_ref());
    let n = w.len();
    let rows = st.rows;
    let ptr = |b: &Buffer<U>| ptr_of(OP, b, 0, n);
    let (wp, gp, up) = (ptr_of(OP, w, 0, n)?, ptr_of(OP, g, 0, n)?, ptr(u)?);
    let hp = match h {
        Some(h) => ptr_of(OP, h, 0, n)?,
        None => gp,
    };
    // Without moments the kernels never touch m and v; any valid pointer fills the slots.
    let mp = match m {
        Some(m) => ptr(m)?,
        None => up,
    };
    let vp = match v {
        Some(v) => ptr(v)?,
        None => up,
    };
    let chunks = ptr_of(OP, &st.chunks, 0, st.chunks.len())?;
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
    let threads = st.nchunks as u64 * u64::from(BLOCK_SIZE);
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
        wp,
        gp,
        hp,
        up,
        mp,
        vp,
        chunks,
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
    // SAFETY: the list matches `trace` in upgd.ptx; every chunk of the table lies inside the
    // flat buffers of `n` elements and its rows inside `rows` (built and checked by the host).
    unsafe { dev.launch_1d("upgd", "trace", OP, &trace, threads) }?;
    if slots.fused {
        return Ok(());
    }
    let mut update = vec![
        wp,
        gp,
        up,
        mp,
        vp,
        chunks,
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
    // SAFETY: as above, for `update`.
    unsafe { dev.launch_1d("upgd", "update", OP, &update, threads) }
}
