//! Shared by the criterion benches: every backend present (the emulator measures an
//! interpreter, not a GPU, so it is left out).

use trainkern::{Backend, Device};

pub fn devices() -> Vec<Device> {
    let mut out = vec![Device::cpu()];
    for b in [Backend::Wgpu, Backend::Cuda] {
        match Device::from_backend(b) {
            Ok(d) => out.push(d),
            Err(e) => eprintln!("bench: {b} skipped: {e}"),
        }
    }
    out
}
