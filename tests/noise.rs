//! Conformance of fill_gaussian, add_gaussian and fill_bits on every available backend against
//! the f64 definition, plus sharding, views, empty buffers and bad input.

mod common;

use half::{bf16, f16};
use trainkern::check::{rel_l2, scaled_max_error, ulp16};
use trainkern::noise::{self, Gaussian};
use trainkern::{DType, Error, Float, rng};

const SIZES: [usize; 5] = [1, 3, 1000, 4099, 70_001];
const OFFSETS: [u64; 6] = [
    0,
    3,
    (1 << 32) - 3, // element index crosses 2^32
    (1 << 34) - 5, // block index crosses 2^32
    1 << 40,
    u64::MAX - 100_000, // near the top of the index space
];

fn inputs<T: Float>(n: usize, salt: u64) -> Vec<T> {
    let mut w = vec![0u32; n];
    rng::words_into(salt, 77, 0, &mut w);
    w.iter()
        .map(|&x| T::from_f32(6.0 * rng::uniform(x) - 3.0))
        .collect()
}

fn reference(base: Option<&[f64]>, n: usize, g: &Gaussian) -> Vec<f64> {
    let mut z = vec![0.0; n];
    rng::gaussians_f64_into(g.seed, g.stream, g.offset, &mut z);
    let s = f64::from(g.std);
    (0..n)
        .map(|j| base.map_or(0.0, |b| b[j]) + s * z[j])
        .collect()
}

/// The same math in f32 (the portable algorithm), before the final rounding to storage, with
/// the magnitude of its terms (`|x| + |std z|`) that bounds how far another backend's f32 may be.
fn reference_f32(base: Option<&[f64]>, n: usize, g: &Gaussian) -> Vec<(f32, f32)> {
    let mut z = vec![0.0f32; n];
    rng::gaussians_into(g.seed, g.stream, g.offset, &mut z);
    (0..n)
        .map(|j| {
            let x = base.map_or(0.0, |b| b[j] as f32);
            (x + g.std * z[j], x.abs() + (g.std * z[j]).abs())
        })
        .collect()
}

/// A 16-bit result must be the single rounding of an f32 result of the same math: some value
/// within a few f32 ulps of the terms (1e-6 of `|x| + |std z|`, which covers fma versus separate
/// rounding and the polynomials' last bits) of the CPU's f32 value, rounded to nearest even.
/// Rounding is monotonic, so that is: between the roundings of the bracket's ends.
fn assert_rounded_once<T: Float>(what: &str, got: &[T], want32: &[(f32, f32)]) {
    for (j, (g, (w, scale))) in got.iter().zip(want32).enumerate() {
        let d = 1e-6 * scale;
        let (lo, hi) = (T::from_f32(w - d).to_f32(), T::from_f32(w + d).to_f32());
        let v = g.to_f32();
        assert!(
            lo <= v && v <= hi,
            "{what}: element {j} is {v}, not a rounding of {w} +- {d} (between {lo} and {hi})"
        );
    }
}

/// testing.md's rule for the type: f32 per element; 16-bit relative L2 and one ulp per element.
fn assert_close<T: Float>(what: &str, got: &[T], want: &[f64]) {
    let got: Vec<f64> = got.iter().map(|x| f64::from(x.to_f32())).collect();
    match T::DTYPE {
        DType::F32 => {
            let e = scaled_max_error(&got, want);
            assert!(e <= 1e-5, "{what}: max |d|/(1+|ref|) = {e:e}");
        }
        d => {
            let e = rel_l2(&got, want);
            assert!(e <= 1e-2, "{what}: relative L2 {e:e}");
            let (m, lo) = if d == DType::F16 {
                (10, -14)
            } else {
                (7, -126)
            };
            for (j, (g, w)) in got.iter().zip(want).enumerate() {
                let tol = ulp16(*w, m, lo) + 1e-5 * (1.0 + w.abs());
                assert!((g - w).abs() <= tol, "{what}: element {j}: {g} vs {w}");
            }
        }
    }
}

fn conformance<T: Float>() {
    for (name, dev) in common::devices() {
        for &n in &SIZES {
            for &offset in &OFFSETS {
                let g = Gaussian {
                    std: 1.25,
                    seed: 0x1234_5678_9abc_def0 ^ n as u64,
                    stream: offset.rotate_left(7),
                    offset,
                };
                let what = format!("{name} {} n={n} offset={offset}", T::DTYPE);
                // fill: poisoned with NaN, so an element left unwritten fails the comparison.
                let mut buf = dev.upload(&vec![T::from_f32(f32::NAN); n]).unwrap();
                noise::fill_gaussian(dev, &mut buf, &g).unwrap();
                let got = buf.download().unwrap();
                assert_close::<T>(&format!("fill {what}"), &got, &reference(None, n, &g));
                assert_rounded_once::<T>(
                    &format!("fill {what}"),
                    &got,
                    &reference_f32(None, n, &g),
                );
                // add: in place on random data.
                let x = inputs::<T>(n, offset ^ 5);
                let base: Vec<f64> = x.iter().map(|v| f64::from(v.to_f32())).collect();
                let mut buf = dev.upload(&x).unwrap();
                noise::add_gaussian(dev, &mut buf, &g).unwrap();
                let got = buf.download().unwrap();
                assert_close::<T>(&format!("add {what}"), &got, &reference(Some(&base), n, &g));
                assert_rounded_once::<T>(
                    &format!("add {what}"),
                    &got,
                    &reference_f32(Some(&base), n, &g),
                );
            }
        }
    }
}

#[test]
fn f32_matches_the_definition_on_every_backend() {
    conformance::<f32>();
}

#[test]
fn f16_matches_the_definition_on_every_backend() {
    conformance::<f16>();
}

#[test]
fn bf16_matches_the_definition_on_every_backend() {
    conformance::<bf16>();
}

#[test]
fn raw_words_are_bit_identical_across_backends() {
    // With 4 KiB chunks a chunk holds 1024 words: these ranges straddle several chunk
    // boundaries at every phase of the block.
    for offset in [0u64, 1, 2, 3, 1021, (1 << 32) - 1, u64::MAX - 9000] {
        let n = 5000;
        let mut want = vec![0u32; n];
        rng::words_into(99, 5, offset, &mut want);
        for (name, dev) in common::devices() {
            let mut buf = dev.upload(&vec![0u32; n]).unwrap();
            noise::fill_bits(dev, &mut buf, 99, 5, offset).unwrap();
            let got = buf.download().unwrap();
            let bad = got.iter().zip(&want).position(|(a, b)| a != b);
            assert_eq!(bad, None, "{name} offset {offset}: first mismatch");
        }
    }
}

fn shards_agree<T: Float>() {
    let n = 10_001;
    let cuts = [0, 1, 2047, 2048, 5003, n];
    for (name, dev) in common::devices() {
        for offset in [0u64, 7, (1 << 32) - 2] {
            let g = Gaussian {
                std: 0.5,
                seed: 3,
                stream: 4,
                offset,
            };
            let mut whole = dev.zeros::<T>(n).unwrap();
            noise::fill_gaussian(dev, &mut whole, &g).unwrap();
            let whole = whole.download().unwrap();
            for w in cuts.windows(2) {
                let (a, b) = (w[0], w[1]);
                let mut part = dev.zeros::<T>(b - a).unwrap();
                let gp = Gaussian {
                    offset: offset + a as u64,
                    ..g
                };
                noise::fill_gaussian(dev, &mut part, &gp).unwrap();
                let part = part.download().unwrap();
                for (j, v) in part.iter().enumerate() {
                    assert_eq!(
                        v.to_f32().to_bits(),
                        whole[a + j].to_f32().to_bits(),
                        "{name} {}: shard [{a}, {b}) element {j}",
                        T::DTYPE
                    );
                }
            }
        }
    }
}

#[test]
fn shards_agree_with_the_whole() {
    shards_agree::<f32>();
    shards_agree::<f16>();
    shards_agree::<bf16>();
}

#[test]
fn empty_buffers_are_a_no_op() {
    let g = Gaussian {
        std: 1.0,
        seed: 1,
        stream: 1,
        offset: u64::MAX,
    };
    for (name, dev) in common::devices() {
        let mut b = dev.zeros::<f32>(0).unwrap();
        noise::fill_gaussian(dev, &mut b, &g).unwrap_or_else(|e| panic!("{name}: {e}"));
        noise::add_gaussian(dev, &mut b, &g).unwrap();
        assert!(b.download().unwrap().is_empty());
        let mut w = dev.zeros::<u32>(0).unwrap();
        noise::fill_bits(dev, &mut w, 1, 1, u64::MAX).unwrap();
    }
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    for (name, dev) in common::devices() {
        let data = vec![2.0f32; 10];
        let mut b = dev.upload(&data).unwrap();
        for std in [-1.0f32, f32::NAN, f32::INFINITY, -0.0 - f32::MIN_POSITIVE] {
            let g = Gaussian {
                std,
                seed: 1,
                stream: 2,
                offset: 0,
            };
            let e = noise::add_gaussian(dev, &mut b, &g).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::InvalidArgument {
                        op: "add_gaussian",
                        ..
                    }
                ),
                "{name}: {e}"
            );
            assert!(e.to_string().contains("std"), "{name}: {e}");
            let e = noise::fill_gaussian(dev, &mut b, &g).unwrap_err();
            assert!(
                e.to_string().starts_with("fill_gaussian: std"),
                "{name}: {e}"
            );
        }
        let g = Gaussian {
            std: 1.0,
            seed: 1,
            stream: 2,
            offset: u64::MAX - 5,
        };
        let e = noise::fill_gaussian(dev, &mut b, &g).unwrap_err();
        assert!(matches!(e, Error::LimitExceeded { .. }), "{name}: {e}");
        assert!(e.to_string().contains("fill_gaussian"), "{name}: {e}");
        let mut w = dev.zeros::<u32>(10).unwrap();
        let e = noise::fill_bits(dev, &mut w, 1, 2, u64::MAX - 3).unwrap_err();
        assert!(e.to_string().contains("fill_bits"), "{name}: {e}");
        assert_eq!(b.download().unwrap(), data, "{name}: a failed op wrote");
    }
}

#[test]
fn a_buffer_from_another_device_is_refused() {
    let devs = common::devices();
    let g = Gaussian {
        std: 1.0,
        seed: 1,
        stream: 2,
        offset: 0,
    };
    for (na, a) in devs {
        for (nb, b) in devs {
            let mut buf = b.upload(&[1.0f32; 4]).unwrap();
            let r = noise::fill_gaussian(a, &mut buf, &g);
            if a.same(b) {
                r.unwrap();
            } else {
                let e = r.unwrap_err();
                assert!(
                    matches!(
                        e,
                        Error::WrongDevice {
                            op: "fill_gaussian",
                            arg: "buffer",
                            ..
                        }
                    ),
                    "{na} with a buffer of {nb}: {e}"
                );
                assert_eq!(buf.download().unwrap(), [1.0f32; 4]);
            }
        }
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_views_touch_only_their_elements() {
    let Some(dev) = common::wgpu_device() else {
        common::missing("wgpu", "no adapter");
        return;
    };
    let trainkern::Device::Wgpu(w) = &dev else {
        unreachable!()
    };
    let (d, q) = w.raw();
    let raw = d.create_buffer(&wgpu::BufferDescriptor {
        label: Some("caller's"),
        size: 1024,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let sentinel = vec![0xA5u8; 1024];
    q.write_buffer(&raw, 0, &sentinel);
    // 7 f16 at byte 256: the last element shares its word with the caller's next two bytes.
    let mut view = trainkern::Buffer::<f16>::from_wgpu(w, raw.clone(), 256, 7).unwrap();
    let g = Gaussian {
        std: 2.0,
        seed: 8,
        stream: 9,
        offset: 1,
    };
    noise::fill_gaussian(&dev, &mut view, &g).unwrap();
    assert_close::<f16>(
        "view fill",
        &view.download().unwrap(),
        &reference(None, 7, &g),
    );
    noise::add_gaussian(&dev, &mut view, &g).unwrap();
    let whole = trainkern::Buffer::<u32>::from_wgpu(w, raw, 0, 256).unwrap();
    let bytes: Vec<u8> = bytemuck::cast_slice(&whole.download().unwrap()).to_vec();
    for (i, b) in bytes.iter().enumerate() {
        if !(256..256 + 14).contains(&i) {
            assert_eq!(*b, 0xA5, "byte {i} outside the view changed");
        }
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_views_are_validated() {
    let Some(dev) = common::wgpu_device() else {
        common::missing("wgpu", "no adapter");
        return;
    };
    let trainkern::Device::Wgpu(w) = &dev else {
        unreachable!()
    };
    let (d, _) = w.raw();
    let make = |usage| {
        d.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 1024,
            usage,
            mapped_at_creation: false,
        })
    };
    let all =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let e = trainkern::Buffer::<f32>::from_wgpu(w, make(all), 100, 4).unwrap_err();
    assert!(e.to_string().contains("byte_offset"), "{e}");
    let e = trainkern::Buffer::<f32>::from_wgpu(w, make(all), 256, 193).unwrap_err();
    assert!(matches!(e, Error::Shape { arg: "len", .. }), "{e}");
    let e = trainkern::Buffer::<f32>::from_wgpu(w, make(wgpu::BufferUsages::STORAGE), 0, 4)
        .unwrap_err();
    assert!(e.to_string().contains("usage"), "{e}");
    trainkern::Buffer::<f32>::from_wgpu(w, make(all), 256, 192).unwrap();

    // A wgpu buffer made on another device passes the host-side checks, but wgpu's validation
    // catches it at dispatch, and that comes back as an error, not a panic.
    let other = trainkern::backend::wgpu::WgpuDevice::new(&Default::default()).unwrap();
    let foreign = other.raw().0.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 1024,
        usage: all,
        mapped_at_creation: false,
    });
    let mut view = trainkern::Buffer::<f32>::from_wgpu(w, foreign, 0, 16).unwrap();
    let g = Gaussian {
        std: 1.0,
        seed: 1,
        stream: 1,
        offset: 0,
    };
    let e = noise::fill_gaussian(&dev, &mut view, &g).unwrap_err();
    assert!(matches!(e, Error::Wgpu(_)), "{e}");
    eprintln!("foreign buffer: {e}");
    // The device still works afterwards.
    let mut ok = dev.zeros::<f32>(8).unwrap();
    noise::fill_gaussian(&dev, &mut ok, &g).unwrap();
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_from_raw_shares_a_trainers_device() {
    if common::wgpu_device().is_none() {
        common::missing("wgpu", "no adapter");
        return;
    }
    // The trainer's own instance, adapter, device and buffer.
    let inst = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(inst.request_adapter(&wgpu::RequestAdapterOptions::default()))
        .or_else(|_| {
            pollster::block_on(inst.request_adapter(&wgpu::RequestAdapterOptions {
                force_fallback_adapter: true,
                ..Default::default()
            }))
        })
        .unwrap();
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let grads = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("trainer grads"),
        size: 4 * 1000,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&grads, 0, bytemuck::cast_slice(&[0.5f32; 1000]));
    let w = trainkern::backend::wgpu::WgpuDevice::from_raw(
        adapter.get_info(),
        device,
        queue,
        &Default::default(),
    )
    .unwrap();
    let dev = trainkern::Device::Wgpu(w.clone());
    let mut view = trainkern::Buffer::<f32>::from_wgpu(&w, grads, 0, 1000).unwrap();
    let g = Gaussian {
        std: 0.1,
        seed: 5,
        stream: 6,
        offset: 0,
    };
    noise::add_gaussian(&dev, &mut view, &g).unwrap();
    let base = vec![0.5f64; 1000];
    assert_close::<f32>(
        "from_raw",
        &view.download().unwrap(),
        &reference(Some(&base), 1000, &g),
    );
}
