//! `trainkern demo`: the 2D-to-3D-to-2D loop on a small scene, with no input files.
//!
//! A ground-truth scene of three colored shapes lives in a 48^3 voxel grid and a color grid,
//! decoded by a fixed one-layer decoder (density `softplus(relu(f) - 10)`, color
//! `sigmoid(f_color - 4)`). Sixteen views of it are rendered with the renderer; their pixels'
//! colors are splatted into a 32^2 triplane (the splatter lifting image features into 3D); a
//! decoder with Xavier weights then renders a held-out view ("before"). The triplane and the
//! decoder are fitted to the sixteen views with the renderer's backward pass and plain Adam, and
//! the held-out view is rendered again ("after"). Everything runs on the chosen device (the CPU
//! by default: on this crate's CI machine lavapipe is slower than the CPU reference).

use std::path::{Path, PathBuf};
use std::time::Instant;

use trainkern::render::{Decoder, GridList, RayBuffers, RenderOptions, RenderOutput, Renderer};
use trainkern::splat::{SplatOptions, Splatter};
use trainkern::{Buffer, Device, Error, Result, rng};

const GT_RES: usize = 48;
const PLANE_RES: usize = 32;
const CHANNELS: usize = 8;
const TRAIN_RES: usize = 32;
const VIEW_RES: usize = 64;
const TRAIN_VIEWS: usize = 16;
const BATCH_RAYS: usize = 1024;
const SAMPLES: usize = 48;
const NEAR: f32 = 1.2;
const FAR: f32 = 4.8;

/// The demo's settings.
pub struct Demo {
    pub out: PathBuf,
    pub steps: usize,
    pub seed: u64,
}

/// Rays on the host, `R` of them, with one color per ray where known.
#[derive(Default, Clone)]
struct HostRays {
    origins: Vec<f32>,
    directions: Vec<f32>,
    colors: Vec<f32>,
}

impl HostRays {
    fn len(&self) -> usize {
        self.origins.len() / 3
    }

    fn extend(&mut self, o: &HostRays) {
        self.origins.extend(&o.origins);
        self.directions.extend(&o.directions);
        self.colors.extend(&o.colors);
    }
}

/// `r` on the device, for one call: every ray in batch 0, between `NEAR` and `FAR`.
fn upload_rays(dev: &Device, r: &HostRays, encoding: Option<&[f32]>) -> Result<RayBuffers> {
    let n = r.len();
    let (batch, near, far) = (vec![0u32; n], vec![NEAR; n], vec![FAR; n]);
    RayBuffers::upload(
        dev,
        &r.origins,
        &r.directions,
        &batch,
        &near,
        &far,
        encoding,
    )
}

/// A pinhole camera on a sphere of radius 3 around the origin, looking at it (`y` up), with a
/// 45-degree field of view: one ray per pixel, row-major from the top left.
fn camera(azimuth: f32, elevation: f32, res: usize) -> HostRays {
    let eye = [
        3.0 * azimuth.sin() * elevation.cos(),
        3.0 * elevation.sin(),
        3.0 * azimuth.cos() * elevation.cos(),
    ];
    let norm = |v: [f32; 3]| {
        let l = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        v.map(|x| x / l)
    };
    let cross = |a: [f32; 3], b: [f32; 3]| {
        [
            a[1] * b[2] - a[2] * b[1],
            a[2] * b[0] - a[0] * b[2],
            a[0] * b[1] - a[1] * b[0],
        ]
    };
    let fwd = norm(eye.map(|x| -x));
    let right = norm(cross(fwd, [0.0, 1.0, 0.0]));
    let up = cross(right, fwd);
    let half = (22.5f32).to_radians().tan();
    let mut r = HostRays::default();
    for i in 0..res {
        for j in 0..res {
            let u = ((j as f32 + 0.5) / res as f32 * 2.0 - 1.0) * half;
            let v = -((i as f32 + 0.5) / res as f32 * 2.0 - 1.0) * half;
            r.origins.extend(eye);
            r.directions
                .extend((0..3).map(|k| fwd[k] + u * right[k] + v * up[k]));
        }
    }
    r
}

/// The ground truth: which shape covers point `p` (signed distance < 0), and its color.
fn shapes(p: [f32; 3]) -> ([f32; 3], f32) {
    let sphere = |c: [f32; 3], r: f32| {
        ((p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2) + (p[2] - c[2]).powi(2)).sqrt() - r
    };
    let cube = |c: [f32; 3], h: f32| (0..3).fold(f32::MIN, |m, k| m.max((p[k] - c[k]).abs() - h));
    let all = [
        ([0.9, 0.15, 0.1], sphere([-0.35, 0.0, 0.0], 0.4)),
        ([0.1, 0.75, 0.2], cube([0.4, 0.15, -0.1], 0.28)),
        ([0.15, 0.3, 0.9], sphere([0.05, -0.35, 0.45], 0.3)),
    ];
    // The nearest shape's color everywhere, so interpolation at an edge mixes no dark fringe.
    all.into_iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or(([0.0; 3], 1.0))
}

/// The ground-truth renderer and its grids: density logits 30 inside a shape, 0 outside; color
/// logits `4 + logit(color)`.
struct Truth {
    renderer: Renderer,
    grids: Buffer<f32>,
    colors: Buffer<f32>,
    params: Buffer<f32>,
}

impl Truth {
    fn new(dev: &Device) -> Result<Truth> {
        let n = GT_RES;
        let grid = GridList::new(&[[1, n, n, n, 1]])?;
        let color = GridList::new(&[[1, n, n, n, 3]])?;
        let decoder = Decoder {
            trunk_layers: 0,
            opacity_layers: 1,
            color_layers: 1,
            hidden: 1,
            color_channels: 3,
        };
        let (mut density, mut logits) = (Vec::new(), Vec::new());
        for z in 0..n {
            for y in 0..n {
                for x in 0..n {
                    let at = |i: usize| (i as f32 + 0.5) / n as f32 * 2.0 - 1.0;
                    let (c, d) = shapes([at(x), at(y), at(z)]);
                    density.push(if d < 0.0 { 30.0 } else { 0.0 });
                    logits.extend(c.map(|v| 4.0 + (v / (1.0 - v)).ln()));
                }
            }
        }
        // Opacity: 1 x relu(f) - 10; color: the identity on relu(f_color), bias -4.
        let params = [
            1.0, -10.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, -4.0, -4.0, -4.0,
        ];
        let opts = RenderOptions {
            samples: 96,
            ..Default::default()
        };
        Ok(Truth {
            renderer: Renderer::new(dev, &grid, Some(&color), decoder, opts)?,
            grids: dev.upload(&density)?,
            colors: dev.upload(&logits)?,
            params: dev.upload(&params)?,
        })
    }

    fn render(&self, dev: &Device, rays: &HostRays) -> Result<Vec<f32>> {
        let d = upload_rays(dev, rays, None)?;
        let mut out = RenderOutput::zeros(dev, rays.len(), 3)?;
        self.renderer.forward(
            &self.grids,
            Some(&self.colors),
            &self.params,
            &d.rays(),
            &mut out,
        )?;
        out.features.download()
    }
}

/// Adam with the usual constants, on a host vector.
struct Adam {
    lr: f32,
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Adam {
    fn new(lr: f32, len: usize) -> Adam {
        Adam {
            lr,
            m: vec![0.0; len],
            v: vec![0.0; len],
            t: 0,
        }
    }

    fn step(&mut self, x: &mut [f32], g: &[f32]) {
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        self.t += 1;
        let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        for (((x, &g), m), v) in x.iter_mut().zip(g).zip(&mut self.m).zip(&mut self.v) {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *x -= self.lr * (*m / c1) / ((*v / c2).sqrt() + eps);
        }
    }
}

/// The model being fitted: a triplane and a decoder.
struct Model {
    renderer: Renderer,
    planes: Vec<f32>,
    params: Vec<f32>,
}

impl Model {
    fn render(&self, dev: &Device, rays: &HostRays) -> Result<Vec<f32>> {
        let d = upload_rays(dev, rays, None)?;
        let mut out = RenderOutput::zeros(dev, rays.len(), 3)?;
        self.renderer.forward(
            &dev.upload(&self.planes)?,
            None,
            &dev.upload(&self.params)?,
            &d.rays(),
            &mut out,
        )?;
        out.features.download()
    }
}

fn psnr(got: &[f32], want: &[f32]) -> f64 {
    let mse = got
        .iter()
        .zip(want)
        .map(|(a, b)| f64::from(a - b).powi(2))
        .sum::<f64>()
        / got.len() as f64;
    -10.0 * mse.log10()
}

fn write_png(path: &Path, width: usize, height: usize, rgb: &[f32]) -> Result<()> {
    let io = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width as u32, height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let bytes: Vec<u8> = rgb
        .iter()
        .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let png_err = |e: png::EncodingError| io(std::io::Error::other(e.to_string()));
    let mut w = enc.write_header().map_err(png_err)?;
    w.write_image_data(&bytes).map_err(png_err)?;
    w.finish().map_err(png_err)
}

/// Images side by side with a 2-pixel white gap.
fn side_by_side(images: &[&[f32]], res: usize) -> (usize, Vec<f32>) {
    let gap = 2;
    let width = images.len() * res + (images.len() - 1) * gap;
    let mut out = vec![1.0; width * res * 3];
    for (k, img) in images.iter().enumerate() {
        for i in 0..res {
            for j in 0..res {
                let at = (i * width + k * (res + gap) + j) * 3;
                out[at..at + 3].copy_from_slice(&img[(i * res + j) * 3..(i * res + j) * 3 + 3]);
            }
        }
    }
    (width, out)
}

pub fn run(dev: &Device, demo: &Demo) -> Result<()> {
    let start = Instant::now();
    std::fs::create_dir_all(&demo.out).map_err(|e| Error::Io {
        path: demo.out.display().to_string(),
        source: e,
    })?;
    println!("demo on {dev}");

    // Ground truth: views around the scene at two elevations, one held out between them.
    let truth = Truth::new(dev)?;
    let mut train = HostRays::default();
    for v in 0..TRAIN_VIEWS {
        let elevation = if v % 2 == 0 { 0.35 } else { -0.1 };
        let azimuth = v as f32 * std::f32::consts::TAU / TRAIN_VIEWS as f32;
        let mut view = camera(azimuth, elevation, TRAIN_RES);
        view.colors = truth.render(dev, &view)?;
        train.extend(&view);
    }
    let mut held = camera(std::f32::consts::TAU / 32.0 + 1.2, 0.15, VIEW_RES);
    held.colors = truth.render(dev, &held)?;
    println!(
        "ground truth: {TRAIN_VIEWS} views of {TRAIN_RES}^2 and a held-out view of {VIEW_RES}^2 \
         rendered in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    // Lift the views into a triplane: each ray splats its pixel's color (as 2c - 1) and a 1.
    let r = PLANE_RES;
    let planes = GridList::new(&[
        [1, 1, r, r, CHANNELS],
        [1, r, 1, r, CHANNELS],
        [1, r, r, 1, CHANNELS],
    ])?;
    let splatter = Splatter::new(
        dev,
        &planes,
        SplatOptions {
            samples: SAMPLES,
            ..Default::default()
        },
    )?;
    let features: Vec<f32> = train
        .colors
        .chunks(3)
        .flat_map(|c| {
            (0..CHANNELS).map(move |k| {
                if k % 4 == 3 {
                    1.0
                } else {
                    2.0 * c[k % 4] - 1.0
                }
            })
        })
        .collect();
    let lifted = upload_rays(dev, &train, Some(&features))?;
    let mut splatted = dev.zeros::<f32>(planes.len())?;
    splatter.forward(&lifted.rays(), &mut splatted)?;

    let decoder = Decoder {
        trunk_layers: 2,
        opacity_layers: 1,
        color_layers: 2,
        hidden: 32,
        color_channels: 3,
    };
    let opts = RenderOptions {
        samples: SAMPLES,
        ..Default::default()
    };
    let mut model = Model {
        renderer: Renderer::new(dev, &planes, None, decoder, opts)?,
        planes: splatted.download()?,
        params: decoder.xavier_init(CHANNELS, None, -3.0, demo.seed)?,
    };
    let before = model.render(dev, &held)?;

    // Fit: random batches of training rays, mean squared color error, Adam.
    let mut adam_planes = Adam::new(0.05, model.planes.len());
    let mut adam_params = Adam::new(0.005, model.params.len());
    let fit = Instant::now();
    let n = train.len();
    let mut batch = HostRays::default();
    for step in 0..demo.steps {
        batch.origins.clear();
        batch.directions.clear();
        batch.colors.clear();
        for k in 0..BATCH_RAYS {
            let i = rng::word(demo.seed, 0xDE30, (step * BATCH_RAYS + k) as u64) as usize % n;
            batch.origins.extend(&train.origins[3 * i..3 * i + 3]);
            batch.directions.extend(&train.directions[3 * i..3 * i + 3]);
            batch.colors.extend(&train.colors[3 * i..3 * i + 3]);
        }
        let d = upload_rays(dev, &batch, None)?;
        let planes_buf = dev.upload(&model.planes)?;
        let params_buf = dev.upload(&model.params)?;
        let mut out = RenderOutput::zeros(dev, BATCH_RAYS, 3)?;
        model
            .renderer
            .forward(&planes_buf, None, &params_buf, &d.rays(), &mut out)?;
        let pred = out.features.download()?;
        let scale = 2.0 / pred.len() as f32;
        let grad: Vec<f32> = pred
            .iter()
            .zip(&batch.colors)
            .map(|(p, t)| scale * (p - t))
            .collect();
        let grad_out = RenderOutput {
            features: dev.upload(&grad)?,
            ray_length: dev.zeros(BATCH_RAYS)?,
            neg_log_transmittance: dev.zeros(BATCH_RAYS)?,
        };
        let mut grads = model.renderer.grads_zeros(BATCH_RAYS, model.params.len())?;
        model.renderer.backward(
            &planes_buf,
            None,
            &params_buf,
            &d.rays(),
            &grad_out,
            &mut grads,
        )?;
        adam_planes.step(&mut model.planes, &grads.grids.download()?);
        adam_params.step(&mut model.params, &grads.params.download()?);
        if (step + 1) % 50 == 0 || step + 1 == demo.steps {
            println!(
                "step {:>4}: training PSNR {:.2} dB ({:.1} s)",
                step + 1,
                psnr(&pred, &batch.colors),
                fit.elapsed().as_secs_f64()
            );
        }
    }
    let after = model.render(dev, &held)?;

    let (p0, p1) = (psnr(&before, &held.colors), psnr(&after, &held.colors));
    for (name, img) in [
        ("truth.png", &held.colors),
        ("before.png", &before),
        ("after.png", &after),
    ] {
        write_png(&demo.out.join(name), VIEW_RES, VIEW_RES, img)?;
    }
    let (width, strip) = side_by_side(&[&held.colors, &before, &after], VIEW_RES);
    write_png(&demo.out.join("demo.png"), width, VIEW_RES, &strip)?;
    println!(
        "held-out view PSNR: before fitting {p0:.2} dB, after {} steps {p1:.2} dB",
        demo.steps
    );
    println!(
        "wrote truth.png, before.png, after.png and demo.png (the three side by side) to {} \
         in {:.1} s",
        demo.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
