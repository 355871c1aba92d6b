//! The device memory ledger (`trainkern::backend::memory`): every buffer the crate allocates on a
//! GPU backend counted while it lives, exactly; the peak and its reset; the benchmark's working
//! memory column; and no op keeping memory after its buffers are dropped. Each test opens fresh
//! devices (a device's ledger is its own), so tests running alongside cannot disturb the counts.

mod common;

use trainkern::{Device, MemoryUse};

/// A fresh device of every GPU backend present (wgpu on any adapter, CUDA, the PTX emulator).
fn fresh_devices() -> Vec<(&'static str, Device)> {
    let mut out = Vec::new();
    for (name, dev) in [
        ("wgpu", Device::wgpu()),
        ("cuda", Device::cuda(0)),
        ("ptx-emu", Device::ptx_emu()),
    ] {
        match dev {
            Ok(d) => out.push((name, d)),
            Err(e) => common::missing(name, &e.to_string()),
        }
    }
    let names: Vec<&str> = out.iter().map(|(n, _)| *n).collect();
    eprintln!("backends under test: {}", names.join(", "));
    out
}

#[test]
fn buffers_are_counted_while_they_live() {
    assert_eq!(Device::cpu().memory(), None, "the CPU keeps no ledger");
    for (name, dev) in fresh_devices() {
        let at = |live, peak| Some(MemoryUse { live, peak });
        assert_eq!(dev.memory(), at(0, 0), "{name}: a new device holds nothing");
        let a = dev.zeros::<f32>(1000).unwrap();
        assert_eq!(dev.memory(), at(4000, 4000), "{name}");
        let b = dev.upload(&[half::bf16::ONE; 500]).unwrap();
        assert_eq!(dev.memory(), at(5000, 5000), "{name}");
        drop(a);
        assert_eq!(
            dev.memory(),
            at(1000, 5000),
            "{name}: a dropped buffer is given back"
        );
        dev.reset_peak_memory();
        assert_eq!(
            dev.memory(),
            at(1000, 1000),
            "{name}: the peak restarts from now"
        );
        let c = dev.zeros::<u32>(16).unwrap();
        drop(c);
        assert_eq!(dev.memory(), at(1000, 1064), "{name}");
        // A download stages through memory of its own and gives it back.
        assert_eq!(b.download().unwrap().len(), 500);
        assert_eq!(dev.memory().map(|m| m.live), Some(1000), "{name}");
        drop(b);
        assert_eq!(dev.memory().map(|m| m.live), Some(0), "{name}");
    }
}

/// The bench's working memory column: reported on every GPU backend, not on the CPU.
#[test]
fn the_bench_reports_working_memory_on_gpu_backends() {
    let only = ["noise".to_string()];
    let rows = trainkern::bench::run(&Device::cpu(), &[1 << 10], &only, &mut |_| {}).unwrap();
    assert!(rows.iter().all(|r| r.work_bytes.is_none()));
    for (name, dev) in fresh_devices() {
        let rows = trainkern::bench::run(&dev, &[1 << 10], &only, &mut |_| {}).unwrap();
        assert!(rows.len() >= 6, "{name}: {} rows", rows.len());
        for r in &rows {
            let work = r
                .work_bytes
                .unwrap_or_else(|| panic!("{name} {}: no work_bytes", r.op));
            // Filling or adding into a caller's buffer needs no memory beyond launch parameters.
            assert!(work < 4096, "{name} {}: {work} bytes", r.op);
        }
    }
}

/// Ops that allocate on the device as they run (FFT stages, the UPGD step's launches, a Fourier
/// noise table) give it all back: nothing is held once the caller's buffers are dropped.
#[test]
fn ops_keep_no_memory_after_their_buffers_are_gone() {
    use trainkern::fft::{Direction, Fft, Layout};
    use trainkern::upgd::{Hyper, TensorSpec, Upgd, Variant};
    for (name, dev) in fresh_devices() {
        {
            let (n, batch) = (1 << 10, 3);
            let mut fft = Fft::new(&dev, n, batch, Layout::Contiguous).unwrap();
            let mut data = dev.upload(&vec![0.5f32; 2 * n * batch]).unwrap();
            fft.process(&mut data, Direction::Forward).unwrap();
            let specs = [TensorSpec {
                offset: 0,
                len: 300,
                last_dim: 30,
            }];
            let hp = Hyper {
                lr: 0.01,
                weight_decay: 0.0,
                beta_utility: 0.9,
                sigma: 0.1,
            };
            let variant = Variant::parse("first-local-protect").unwrap();
            let mut opt = Upgd::new(&dev, variant, hp, &specs, 300, 1).unwrap();
            let mut w = dev.upload(&[0.5f32; 300]).unwrap();
            let g = dev.upload(&[0.25f32; 300]).unwrap();
            for _ in 0..3 {
                opt.step(&mut w, &g, None).unwrap();
            }
            let held = dev.memory().unwrap();
            assert!(held.live > 0 && held.peak >= held.live, "{name}: {held:?}");
        }
        let m = dev.memory().unwrap();
        assert_eq!(m.live, 0, "{name}: bytes still held: {m:?}");
    }
}
