//! Criterion benches of clipping on every available backend (the backend is in the id): flat
//! clipping with noise at `B = 64` (f32) and ghost norms of one linear layer. `trainkern bench`
//! prints the same cases beside a device copy; this is for `cargo bench`.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use trainkern::clip::{Bounds, ClipNoise, ClipOptions, Clipper, GhostShape, ghost_norms};

use common::devices;

fn clip_benches(c: &mut Criterion) {
    let opts = ClipOptions {
        noise: Some(ClipNoise {
            multiplier: 1.0,
            seed: 1,
            stream: 2,
            offset: 0,
        }),
        scale: 1.0 / 64.0,
        ..ClipOptions::default()
    };
    let mut group = c.benchmark_group("clip");
    group.sample_size(10);
    for dev in devices() {
        for d in [1usize << 14, 1 << 18] {
            let b = 64;
            let g = dev.upload(&vec![0.01f32; b * d]).expect("upload");
            let mut clipper = Clipper::flat(&dev, b, d).expect("plan");
            let (mut sum, mut norms) = (dev.zeros(d).expect("sum"), dev.zeros(b).expect("norms"));
            // The gradients are read twice, the sum written once.
            group.throughput(Throughput::Bytes((2 * b * d * 4 + 4 * d) as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("{}/f32/B=64", dev.backend()), d),
                &d,
                |bench, _| {
                    bench.iter(|| {
                        clipper
                            .run(&g, Bounds::Host(&[1.0]), &opts, &mut sum, &mut norms)
                            .expect("clip");
                        dev.synchronize().expect("sync");
                    })
                },
            );
        }
    }
    group.finish();

    let mut group = c.benchmark_group("ghost_norms");
    group.sample_size(10);
    for dev in devices() {
        let shape = GhostShape {
            batch: 8,
            positions: 64,
            inputs: 128,
            outputs: 128,
        };
        let a = dev.upload(&vec![0.5f32; 8 * 64 * 128]).expect("upload");
        let g = dev.upload(&vec![0.25f32; 8 * 64 * 128]).expect("upload");
        let mut out = dev.zeros(8).expect("out");
        group.throughput(Throughput::Bytes(2 * 4 * 8 * 64 * 128));
        group.bench_function(format!("{}/f32/T=64", dev.backend()), |bench| {
            bench.iter(|| {
                ghost_norms(&dev, &a, &g, &shape, true, &mut out).expect("ghost");
                dev.synchronize().expect("sync");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, clip_benches);
criterion_main!(benches);
