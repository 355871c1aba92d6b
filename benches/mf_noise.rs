//! Criterion benches of the MF noise generators on every available backend (the backend is in
//! the id): one step of BandMF (p = 8) and BLT (m = 4) over 2^20 coordinates. `trainkern bench`
//! prints more cases beside a device copy; this is for `cargo bench`.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use trainkern::mf::Strategy;
use trainkern::mf_noise::NoiseGenerator;

use common::devices;

fn mf_noise_benches(c: &mut Criterion) {
    let d = 1usize << 20;
    let mut group = c.benchmark_group("mf_noise");
    group.sample_size(10);
    for dev in devices() {
        let cases = [
            ("band p=8", Strategy::banded_sqrt(8), 10),
            (
                "blt m=4",
                Strategy::Blt {
                    theta: vec![0.5, 0.75, 0.875, 0.9375],
                    omega: vec![0.125; 4],
                },
                10,
            ),
        ];
        for (name, strategy, words) in cases {
            // Enough planned steps for criterion's samples.
            let mut g = NoiseGenerator::new(&dev, &strategy, 1 << 20, d, 0, 1, 1.0).expect("plan");
            let mut grad = dev.zeros::<f32>(d).expect("grad");
            group.throughput(Throughput::Bytes((words * 4 * d) as u64));
            group.bench_function(format!("{}/{name}", dev.backend()), |b| {
                b.iter(|| {
                    let t = g.next_step();
                    g.step(t, &mut grad).expect("step");
                    dev.synchronize().expect("sync");
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, mf_noise_benches);
criterion_main!(benches);
