//! PTX glue of the MF noise generators (`kernels/mf_noise.ptx`), not built yet.

use super::{Mechanism, StepArgs};
use crate::backend::ptx::PtxDevice;
use crate::buffer::{Buffer, Float};
use crate::{Error, Result};

pub(super) fn step<T: Float>(
    _dev: &PtxDevice,
    _mech: &Mechanism,
    _a: &StepArgs,
    _grad: &mut Buffer<T>,
    _state: &Buffer<f32>,
    _params: &Buffer<f32>,
) -> Result<()> {
    Err(Error::Unsupported {
        op: "mf_noise",
        backend: "ptx",
        what: "the PTX kernels of the MF noise generators are not built yet".into(),
    })
}
