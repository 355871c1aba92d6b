//! Shared by the integration tests: the devices to run on, honouring `TRAINKERN_REQUIRE`.
#![allow(dead_code)]

use std::sync::OnceLock;

use trainkern::Device;

/// Backends named in `TRAINKERN_REQUIRE` (comma list of wgpu, cuda, ptxas, ptx-emu): for these,
/// "not available" is a test failure instead of a skip.
pub fn required(what: &str) -> bool {
    std::env::var("TRAINKERN_REQUIRE")
        .unwrap_or_default()
        .split(',')
        .any(|s| s.trim() == what)
}

/// Report a missing backend: a panic when it is required, a loud skip otherwise.
pub fn missing(what: &str, why: &str) {
    if required(what) {
        panic!("{what} is required by TRAINKERN_REQUIRE but unavailable: {why}");
    }
    eprintln!(
        "SKIPPED {what}: unavailable ({why}); set TRAINKERN_REQUIRE={what} to make this a failure"
    );
}

/// Every device available, each with a label: the CPU; wgpu with full-size chunks and with
/// 4 KiB chunks (so small tests cross chunk boundaries); CUDA; the PTX emulator. Printed once
/// per test binary.
pub fn devices() -> &'static [(String, Device)] {
    static DEVICES: OnceLock<Vec<(String, Device)>> = OnceLock::new();
    DEVICES.get_or_init(|| {
        let mut out = vec![("cpu".to_string(), Device::cpu())];
        #[cfg(feature = "wgpu")]
        {
            use trainkern::backend::wgpu::{WgpuDevice, WgpuOptions};
            match WgpuDevice::new(&WgpuOptions::default()) {
                Ok(d) => {
                    let small = WgpuDevice::new(&WgpuOptions {
                        hardware_only: false,
                        max_chunk_bytes: Some(4096),
                    })
                    .expect("a second wgpu device on the same adapter");
                    out.push(("wgpu".to_string(), Device::Wgpu(d)));
                    out.push(("wgpu/4KiB-chunks".to_string(), Device::Wgpu(small)));
                }
                Err(e) => missing("wgpu", &e.to_string()),
            }
        }
        #[cfg(not(feature = "wgpu"))]
        missing("wgpu", "built without the wgpu feature");
        match Device::cuda(0) {
            Ok(d) => out.push(("cuda".to_string(), d)),
            Err(e) => missing("cuda", &e.to_string()),
        }
        match Device::ptx_emu() {
            Ok(d) => out.push(("ptx-emu".to_string(), d)),
            Err(e) => missing("ptx-emu", &e.to_string()),
        }
        let names: Vec<String> = out.iter().map(|(n, d)| format!("{n} [{d}]")).collect();
        eprintln!("backends under test: {}", names.join(", "));
        out
    })
}

/// The first wgpu device, if any (for tests of wgpu-only behaviour).
pub fn wgpu_device() -> Option<Device> {
    devices()
        .iter()
        .find(|(n, _)| n == "wgpu")
        .map(|(_, d)| d.clone())
}

/// Uniform in `(lo, hi)` from the crate's RNG under stream `STREAM`, so test data needs no other
/// generator.
pub struct Gen<const STREAM: u64> {
    seed: u64,
    i: u64,
}

impl<const STREAM: u64> Gen<STREAM> {
    pub fn new(seed: u64) -> Self {
        Gen { seed, i: 0 }
    }

    pub fn uni(&mut self, lo: f64, hi: f64) -> f64 {
        self.i += 1;
        let u = trainkern::rng::uniform(trainkern::rng::word(self.seed, STREAM, self.i));
        lo + (hi - lo) * f64::from(u)
    }

    pub fn vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| self.uni(lo, hi)).collect()
    }
}
