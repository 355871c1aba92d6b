//! wgpu glue of the FFT (`shaders/fft.wgsl`): every stage of a call in one submission, the
//! data and the scratch buffer taking turns as source.

use super::Stages;
use crate::Result;
use crate::backend::wgpu::{Dispatch, bind_whole};
use crate::buffer::{Buffer, Storage};

const OP: &str = "fft";

/// `Params` of fft.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    log_half: u32,
    log_s: u32,
    batch: u32,
    interleaved: u32,
    inverse: u32,
    pad: [u32; 3],
}

pub(super) fn process(
    st: &Stages,
    data: &Buffer<f32>,
    scratch: &Buffer<f32>,
    tw: &Buffer<f32>,
) -> Result<()> {
    let Storage::Wgpu(s) = &data.storage else {
        return Err(crate::Error::InvalidArgument {
            op: OP,
            what: "internal: a wgpu FFT with the data elsewhere".into(),
        });
    };
    let params: Vec<Params> = (0..=st.log_half)
        .map(|stage| Params {
            log_half: st.log_half,
            log_s: stage,
            batch: st.batch,
            interleaved: u32::from(st.interleaved),
            inverse: u32::from(st.inverse),
            pad: [0; 3],
        })
        .collect();
    let bufs = [data, scratch];
    let mut work = Vec::with_capacity(params.len());
    for (stage, p) in params.iter().enumerate() {
        work.push(Dispatch {
            params: bytemuck::bytes_of(p),
            buffers: vec![
                bind_whole(bufs[stage % 2], 1, OP, "the data")?,
                bind_whole(bufs[1 - stage % 2], 2, OP, "the data")?,
                bind_whole(tw, 3, OP, "the twiddles")?,
            ],
            invocations: st.threads(),
        });
    }
    s.dev.dispatch("fft", "fft_stage", &work)
}
