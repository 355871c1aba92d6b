//! Argument checks shared by every op, so that each error names the op and the argument.

use crate::backend::Device;
use crate::buffer::{Buffer, Element};
use crate::{Error, Result};

/// `got` elements where `expected` were required.
pub fn len(op: &'static str, arg: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::Shape {
            op,
            arg,
            expected: format!("{expected} elements"),
            got: format!("{got} elements"),
        })
    }
}

/// A finite scalar that is not negative.
pub fn finite_non_negative(op: &'static str, arg: &'static str, x: f32) -> Result<()> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            op,
            what: format!("{arg} must be finite and >= 0, got {x}"),
        })
    }
}

/// The buffer lives on the device the op runs on.
pub fn on_device<T: Element>(
    op: &'static str,
    arg: &'static str,
    dev: &Device,
    buf: &Buffer<T>,
) -> Result<()> {
    let home = buf.device();
    if home.same(dev) {
        Ok(())
    } else {
        Err(Error::WrongDevice {
            op,
            arg,
            expected: dev.to_string(),
            got: home.to_string(),
        })
    }
}

/// The global index range `offset .. offset + len` of an RNG-indexed op fits in a u64.
pub fn index_range(op: &'static str, offset: u64, len: usize) -> Result<()> {
    match offset.checked_add(len as u64) {
        Some(_) => Ok(()),
        None => Err(Error::LimitExceeded {
            what: format!("{op}: offset + len of the global RNG index"),
            requested: offset,
            max: u64::MAX - len as u64,
        }),
    }
}
