//! wgpu glue of the MF noise generators (`shaders/mf_noise.wgsl`), not built yet.

use super::{Mechanism, StepArgs};
use crate::buffer::{Buffer, Float};
use crate::{Error, Result};

pub(super) fn step<T: Float>(
    _mech: &Mechanism,
    _a: &StepArgs,
    _grad: &mut Buffer<T>,
    _state: &Buffer<f32>,
    _params: &Buffer<f32>,
) -> Result<()> {
    Err(Error::Unsupported {
        op: "mf_noise",
        backend: "wgpu",
        what: "the WGSL shaders of the MF noise generators are not built yet".into(),
    })
}
