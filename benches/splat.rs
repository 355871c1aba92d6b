//! Criterion benches of splatting, forward and backward, plain and with the MLP splatter, into a
//! triplane of three 64 x 64 planes with C = 32 and batch 3, 1024 rays of 96 samples, on every
//! backend. `trainkern bench` prints the plain splat in rays per second.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use trainkern::render::{GridList, Rays};
use trainkern::splat::{SplatMlp, SplatOptions, Splatter};

use common::devices;

fn splat_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("splat");
    group.sample_size(10);
    let (b, res, ch) = (3, 64, 32);
    let out = GridList::new(&[
        [b, 1, res, res, ch],
        [b, res, 1, res, ch],
        [b, res, res, 1, ch],
    ])
    .expect("grids");
    let input = GridList::new(&[[b, 1, 32, 32, 8], [b, 32, 1, 32, 8], [b, 32, 32, 1, 8]])
        .expect("input grids");
    let mlp = SplatMlp {
        layers: 2,
        hidden: 32,
    };
    let opts = SplatOptions {
        samples: 96,
        ..Default::default()
    };
    let r = 1024;
    let input_values: Vec<f32> = (0..input.len())
        .map(|i| ((i % 89) as f32 / 44.5) - 1.0)
        .collect();
    let params = mlp.xavier_init(8, ch, 1).expect("params");
    for dev in devices() {
        let o: Vec<f32> = (0..r)
            .flat_map(|i| [(i % 32) as f32 / 16.0 - 1.0, 0.1, -2.0])
            .collect();
        let o = dev.upload(&o).expect("upload");
        let d = dev.upload(&[0.0f32, 0.05, 1.0].repeat(r)).expect("upload");
        let batch = dev
            .upload(&(0..r as u32).map(|i| i % 3).collect::<Vec<_>>())
            .expect("upload");
        let near = dev.upload(&vec![1.0f32; r]).expect("upload");
        let far = dev.upload(&vec![3.0f32; r]).expect("upload");
        let enc32: Vec<f32> = (0..r * ch).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect();
        let enc32 = dev.upload(&enc32).expect("upload");
        let enc8 = dev.upload(&vec![0.1f32; r * 8]).expect("upload");
        let rays = |enc| Rays {
            origins: &o,
            directions: &d,
            batch: &batch,
            near: &near,
            far: &far,
            encoding: Some(enc),
        };
        let mut grid = dev.zeros::<f32>(out.len()).expect("grid");
        let plain = Splatter::new(&dev, &out, opts).expect("splatter");
        let with_mlp = Splatter::with_mlp(&dev, &out, &input, mlp, opts).expect("mlp splatter");
        let iv = dev.upload(&input_values).expect("upload");
        let pv = dev.upload(&params).expect("upload");
        if let Err(e) = plain.forward(&rays(&enc32), &mut grid) {
            eprintln!("splat: not benched on {}: {e}", dev.backend());
            continue;
        }
        group.throughput(Throughput::Elements(r as u64));
        let name = |what: &str| BenchmarkId::new(format!("{}/{what}", dev.backend()), r);
        group.bench_with_input(name("forward"), &r, |bch, _| {
            bch.iter(|| {
                plain.forward(&rays(&enc32), &mut grid).expect("forward");
                dev.synchronize().expect("sync");
            })
        });
        let mut g_enc = dev.zeros::<f32>(r * ch).expect("grad");
        group.bench_with_input(name("backward"), &r, |bch, _| {
            bch.iter(|| {
                plain
                    .backward(&rays(&enc32), &grid, &mut g_enc)
                    .expect("backward");
                dev.synchronize().expect("sync");
            })
        });
        group.bench_with_input(name("mlp forward"), &r, |bch, _| {
            bch.iter(|| {
                with_mlp
                    .forward_mlp(&iv, &pv, &rays(&enc8), &mut grid)
                    .expect("forward");
                dev.synchronize().expect("sync");
            })
        });
        let mut grads = with_mlp.grads_zeros(r).expect("grads");
        group.bench_with_input(name("mlp backward"), &r, |bch, _| {
            bch.iter(|| {
                with_mlp
                    .backward_mlp(&iv, &pv, &rays(&enc8), &grid, &mut grads)
                    .expect("backward");
                dev.synchronize().expect("sync");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, splat_benches);
criterion_main!(benches);
