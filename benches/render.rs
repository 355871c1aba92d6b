//! Criterion benches of rendering, forward and backward, on a scene like Lightplane's benchmark
//! (three 32 x 32 planes, C = 32, batch 3, decoder 32 wide with 2 + 2 + 2 layers), on every
//! backend that renders. `trainkern bench` prints the same in rays per second.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use trainkern::render::{Decoder, GridList, Rays, RenderOptions, RenderOutput, Renderer};

use common::devices;

fn render_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    group.sample_size(10);
    let grids = GridList::new(&[[3, 1, 32, 32, 32], [3, 32, 1, 32, 32], [3, 32, 32, 1, 32]])
        .expect("grids");
    let decoder = Decoder {
        trunk_layers: 2,
        opacity_layers: 2,
        color_layers: 2,
        hidden: 32,
        color_channels: 3,
    };
    let values: Vec<f32> = (0..grids.len())
        .map(|i| ((i % 97) as f32 / 48.5) - 1.0)
        .collect();
    let params = decoder.xavier_init(32, None, -1.0, 1).expect("params");
    let opts = RenderOptions {
        samples: 64,
        ..Default::default()
    };
    let r = 1024;
    for dev in devices() {
        let renderer = Renderer::new(&dev, &grids, None, decoder, opts).expect("renderer");
        let g = dev.upload(&values).expect("upload");
        let p = dev.upload(&params).expect("upload");
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
        let rays = Rays {
            origins: &o,
            directions: &d,
            batch: &batch,
            near: &near,
            far: &far,
            encoding: None,
        };
        let mut out = RenderOutput::zeros(&dev, r, 3).expect("outputs");
        if let Err(e) = renderer.forward(&g, None, &p, &rays, &mut out) {
            eprintln!("render: not benched on {}: {e}", dev.backend());
            continue;
        }
        group.throughput(Throughput::Elements(r as u64));
        group.bench_with_input(
            BenchmarkId::new(format!("{}/forward", dev.backend()), r),
            &r,
            |b, _| {
                b.iter(|| {
                    renderer
                        .forward(&g, None, &p, &rays, &mut out)
                        .expect("forward");
                    dev.synchronize().expect("sync");
                })
            },
        );
        let mut grads = renderer.grads_zeros(r, params.len()).expect("grads");
        group.bench_with_input(
            BenchmarkId::new(format!("{}/backward", dev.backend()), r),
            &r,
            |b, _| {
                b.iter(|| {
                    renderer
                        .backward(&g, None, &p, &rays, &out, &mut grads)
                        .expect("backward");
                    dev.synchronize().expect("sync");
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, render_benches);
criterion_main!(benches);
