//! Criterion benches of the noise ops on every available backend (the backend is in the id).
//! `trainkern bench` prints the same numbers beside a device copy; this is for `cargo bench`.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use trainkern::noise::{self, Gaussian};

use common::devices;

fn noise_benches(c: &mut Criterion) {
    let g = Gaussian {
        std: 1.0,
        seed: 1,
        stream: 2,
        offset: 0,
    };
    let mut group = c.benchmark_group("fill_gaussian");
    group.sample_size(10);
    for dev in devices() {
        for len in [1usize << 20, 1 << 24] {
            let mut buf = dev.zeros::<f32>(len).expect("allocate");
            group.throughput(Throughput::Bytes(4 * len as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("{}/f32", dev.backend()), len),
                &len,
                |b, _| {
                    b.iter(|| {
                        noise::fill_gaussian(&dev, &mut buf, &g).expect("fill");
                        dev.synchronize().expect("sync");
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, noise_benches);
criterion_main!(benches);
