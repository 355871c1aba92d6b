//! PTX glue of the FFT (`kernels/fft.ptx`), shared by CUDA and the PTX emulator: one launch
//! per stage, the data and the scratch buffer taking turns as source.

use super::Stages;
use crate::Result;
use crate::backend::ptx::{KernelArg, PtxDevice, ptr_of};
use crate::buffer::Buffer;

const OP: &str = "fft";

pub(super) fn process(
    dev: &PtxDevice,
    st: &Stages,
    data: &Buffer<f32>,
    scratch: &Buffer<f32>,
    tw: &Buffer<f32>,
) -> Result<()> {
    let bufs = [
        ptr_of(OP, data, 0, data.len())?,
        ptr_of(OP, scratch, 0, scratch.len())?,
    ];
    let tw = ptr_of(OP, tw, 0, tw.len())?;
    for stage in 0..=st.log_half {
        let args = [
            bufs[stage as usize % 2],
            bufs[1 - stage as usize % 2],
            tw,
            KernelArg::U32(st.log_half),
            KernelArg::U32(stage),
            KernelArg::U32(st.batch),
            KernelArg::U32(u32::from(st.interleaved)),
            KernelArg::U32(u32::from(st.inverse)),
        ];
        // SAFETY: the list matches `fft_stage`; data and scratch hold batch * 2 half complex
        // values each and thread g < batch * half touches points i, i + half, 2 base + q and
        // 2 base + q + s < 2 half of its own signal, and twiddle base < half.
        unsafe { dev.launch_1d("fft", "fft_stage", OP, &args, st.threads())? };
    }
    Ok(())
}
