//! wgpu glue of splatting (`shaders/splat.wgsl`).

use super::{OP, Splatter};
use crate::buffer::Buffer;
use crate::ops::render::Rays;
use crate::{Error, Result};

pub(super) fn forward(_s: &Splatter, _rays: &Rays, _out: &mut Buffer<f32>) -> Result<()> {
    Err(Error::InvalidArgument {
        op: OP,
        what: "todo".into(),
    })
}

pub(super) fn backward(
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
