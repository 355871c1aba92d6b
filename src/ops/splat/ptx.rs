//! PTX glue of splatting (`kernels/splat.ptx`).

use super::{OP, Splatter};
use crate::backend::ptx::PtxDevice;
use crate::buffer::Buffer;
use crate::ops::render::Rays;
use crate::{Error, Result};

pub(super) fn forward(
    _dev: &PtxDevice,
    _s: &Splatter,
    _rays: &Rays,
    _out: &mut Buffer<f32>,
) -> Result<()> {
    Err(Error::InvalidArgument {
        op: OP,
        what: "todo".into(),
    })
}

pub(super) fn backward(
    _dev: &PtxDevice,
    _s: &Splatter,
    _rays: &Rays,
    _grad_out: &Buffer<f32>,
    _grad_encoding: &mut Buffer<f32>,
) -> Result<()> {
    Err(Error::InvalidArgument {
        op: OP,
        what: "todo".into(),
    })
}
