//! Criterion benches of one UPGD step (first order, global, protecting) over a 100-tensor model
//! on every available backend. `trainkern bench` prints the same beside a device copy.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use trainkern::upgd::{Hyper, TensorSpec, Upgd, Variant};

use common::devices;

fn upgd_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("upgd_step");
    group.sample_size(10);
    for dev in devices() {
        for n in [1usize << 20, 1 << 22] {
            let each = n / 100 / 64 * 64;
            let specs: Vec<TensorSpec> = (0..100)
                .map(|k| TensorSpec {
                    offset: k * each,
                    len: each,
                    last_dim: 64,
                })
                .collect();
            let total = 100 * each;
            let variant = Variant::parse("first-global-protect").expect("variant");
            let mut opt =
                Upgd::new(&dev, variant, Hyper::default(), &specs, total, 1).expect("optimizer");
            let mut w = dev.upload(&vec![0.5f32; total]).expect("upload");
            let g = dev.upload(&vec![0.25f32; total]).expect("upload");
            // 8 element transfers per weight for first order, global.
            group.throughput(Throughput::Bytes(32 * total as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("{}/first-global-protect", dev.backend()), total),
                &total,
                |b, _| {
                    b.iter(|| {
                        opt.step(&mut w, &g, None).expect("step");
                        dev.synchronize().expect("sync");
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, upgd_benches);
criterion_main!(benches);
