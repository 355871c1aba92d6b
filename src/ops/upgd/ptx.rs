//! PTX glue of UPGD (`kernels/upgd.ptx`), shared by CUDA and the PTX emulator: two launches per
//! step over the chunk table, with the maximum and the row sums double-buffered on the device.

use super::{DeviceState, Scalars, Variant};
use crate::Result;
use crate::backend::ptx::{BLOCK_SIZE, KernelArg, PtxDevice, ptr_of};
use crate::buffer::{Buffer, Float};

const OP: &str = "upgd";

#[allow(clippy::too_many_arguments)]
pub(super) fn step<W: Float, G: Float>(
    dev: &PtxDevice,
    st: &DeviceState,
    variant: Variant,
    sc: &Scalars,
    seed: u64,
    t: u64,
    w: &mut Buffer<W>,
    g: &Buffer<G>,
    h: Option<&Buffer<G>>,
    u: &mut Buffer<f32>,
    m: Option<&mut Buffer<f32>>,
    v: Option<&mut Buffer<f32>>,
) -> Result<()> {
    let n = w.len();
    let cur = (t % 2) as usize;
    let next = 1 - cur;
    let rows = st.rows;
    let ptr = |b: &Buffer<f32>| ptr_of(OP, b, 0, n);
    let (wp, gp, up) = (ptr_of(OP, w, 0, n)?, ptr_of(OP, g, 0, n)?, ptr(u)?);
    let hp = match h {
        Some(h) => ptr_of(OP, h, 0, n)?,
        None => gp,
    };
    let chunks = ptr_of(OP, &st.chunks, 0, st.chunks.len())?;
    let eta = ptr_of(OP, &st.state, cur, 1)?;
    let eta_next = ptr_of(OP, &st.state, next, 1)?;
    let rowsq = ptr_of(OP, &st.rowsq, cur * rows, rows)?;
    let rowsq_next = ptr_of(OP, &st.rowsq, next * rows, rows)?;
    let nonfinite = ptr_of(OP, &st.state, 2, 1)?;
    let kv = variant.kernel();
    let (wtype, gtype) = (W::DTYPE.kernel_code(), G::DTYPE.kernel_code());
    let threads = st.nchunks as u64 * u64::from(BLOCK_SIZE);
    let trace = [
        wp,
        gp,
        hp,
        up,
        chunks,
        eta,
        rowsq,
        nonfinite,
        KernelArg::F32(sc.beta),
        KernelArg::F32(sc.one_minus_beta),
        KernelArg::F32(sc.bc),
        KernelArg::U32(wtype),
        KernelArg::U32(gtype),
        KernelArg::U32(kv.trace_flags),
    ];
    // SAFETY: the list matches `trace` in upgd.ptx; every chunk of the table lies inside the
    // flat buffers of `n` elements and its rows inside `rows` (built and checked by the host).
    unsafe { dev.launch_1d("upgd", "trace", OP, &trace, threads) }?;
    // Without moments the kernel never touches m and v; any valid pointer fills the slots.
    let mp = match m {
        Some(m) => ptr(m)?,
        None => up,
    };
    let vp = match v {
        Some(v) => ptr(v)?,
        None => up,
    };
    let update = [
        wp,
        gp,
        up,
        mp,
        vp,
        chunks,
        eta,
        eta_next,
        rowsq,
        rowsq_next,
        KernelArg::U64(seed),
        KernelArg::U64(sc.stream),
        KernelArg::F32(sc.bc),
        KernelArg::F32(sc.decay),
        KernelArg::F32(sc.neg_lr),
        KernelArg::F32(sc.sigma),
        KernelArg::F32(kv.beta1),
        KernelArg::F32(sc.one_minus_beta1),
        KernelArg::F32(kv.beta2),
        KernelArg::F32(sc.one_minus_beta2),
        KernelArg::F32(kv.eps),
        KernelArg::F32(sc.bc1),
        KernelArg::F32(sc.sqrt_bc2),
        KernelArg::U32(wtype),
        KernelArg::U32(gtype),
        KernelArg::U32(kv.update_flags),
    ];
    // SAFETY: as above, for `update`.
    unsafe { dev.launch_1d("upgd", "update", OP, &update, threads) }
}
