//! Check cases of rendering: Lightplane's benchmark scene (a triplane of three 32 x 32 planes,
//! C = 32, batch 3, decoder 32 wide with 2 + 2 + 2 layers) with background samples, the mask,
//! opacity noise and a nearly empty field, for 1, 1001 and 20 000 rays (more than one dispatch
//! on wgpu), f32 and bf16 grids, forward against the CPU backend; backward (f32 grids) for 1 and
//! 1001 rays, also with a decoder 64 wide.

use super::{Row, compare};
use crate::backend::Device;
use crate::buffer::{DType, Float};
use crate::render::{Decoder, GridList, OpacityNoise, Rays, RenderOptions, RenderOutput, Renderer};
use crate::{Backend, Error, Result};

const OP: &str = "render fw";

/// Deterministic scene values in (-1, 1).
pub(crate) fn values(n: usize, salt: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| 2.0 * crate::rng::uniform(crate::rng::word(salt, 77, i)) - 1.0)
        .collect()
}

/// Lightplane's benchmark scene (a 32^2 triplane, C = 32, batch 3) with a decoder `hidden` wide
/// (Lightplane's is 32).
pub(crate) fn scene(hidden: usize) -> Result<(GridList, Decoder)> {
    let (b, res, c) = (3, 32, 32);
    let grids = GridList::new(&[
        [b, 1, res, res, c],
        [b, res, 1, res, c],
        [b, res, res, 1, c],
    ])?;
    let decoder = Decoder {
        trunk_layers: 2,
        opacity_layers: 2,
        color_layers: 2,
        hidden,
        color_channels: 3,
    };
    Ok((grids, decoder))
}

/// Rays from a ring of cameras at distance 2 towards points in the cube, batch by ray index.
pub(crate) fn rays(dev: &Device, r: usize) -> Result<[crate::Buffer<f32>; 4]> {
    let u = values(6 * r, 5);
    let mut o = Vec::with_capacity(3 * r);
    let mut d = Vec::with_capacity(3 * r);
    for i in 0..r {
        let a = std::f32::consts::PI * u[6 * i];
        let from = [2.0 * a.cos(), 0.3 * u[6 * i + 1], 2.0 * a.sin()];
        let to = [0.8 * u[6 * i + 2], 0.8 * u[6 * i + 3], 0.8 * u[6 * i + 4]];
        o.extend(from);
        d.extend((0..3).map(|k| to[k] - from[k]));
    }
    Ok([
        dev.upload(&o)?,
        dev.upload(&d)?,
        dev.upload(&vec![0.5f32; r])?,
        dev.upload(&vec![1.5f32; r])?,
    ])
}

/// One scene of the checks: the options, the decoder's width and the opacity head's initial
/// bias (Lightplane's renderer starts fields at -5, nearly empty).
#[derive(Clone, Copy)]
struct Case {
    note: &'static str,
    opts: RenderOptions,
    hidden: usize,
    opacity_bias: f32,
}

/// Forward, and with `backward` the gradients of `<1, features + ray_length + lambda>` instead:
/// grids, parameters and encodings one after another.
fn run<T: Float>(
    dev: &Device,
    r: usize,
    case: &Case,
    salt: u64,
    backward: bool,
) -> Result<Vec<f32>> {
    let Case {
        opts,
        hidden,
        opacity_bias,
        ..
    } = *case;
    let (grids, decoder) = scene(hidden)?;
    let renderer = Renderer::new(dev, &grids, None, decoder, opts)?;
    let g: Vec<T> = values(grids.len(), salt)
        .into_iter()
        .map(T::from_f32)
        .collect();
    let params = decoder.xavier_init(32, None, opacity_bias, salt)?;
    let [o, d, near, far] = rays(dev, r)?;
    let batch = dev.upload(&(0..r as u32).map(|i| i % 3).collect::<Vec<_>>())?;
    let enc = dev.upload(
        &values(r * hidden, salt + 1)
            .iter()
            .map(|x| 0.1 * x)
            .collect::<Vec<_>>(),
    )?;
    let rays = Rays {
        origins: &o,
        directions: &d,
        batch: &batch,
        near: &near,
        far: &far,
        encoding: Some(&enc),
    };
    let mut out = RenderOutput::zeros(dev, r, 3)?;
    out.features.write(&vec![f32::NAN; 3 * r])?;
    let (g, p) = (dev.upload(&g)?, dev.upload(&params)?);
    renderer.forward(&g, None, &p, &rays, &mut out)?;
    if backward {
        let grad_out = RenderOutput {
            features: dev.upload(&vec![1.0f32; 3 * r])?,
            ray_length: dev.upload(&vec![0.5f32; r])?,
            neg_log_transmittance: dev.upload(&vec![0.25f32; r])?,
        };
        let mut grads = renderer.grads_zeros(r, params.len())?;
        renderer.backward(&g, None, &p, &rays, &grad_out, &mut grads)?;
        let mut all = grads.grids.download()?;
        all.extend(grads.params.download()?);
        all.extend(grads.encoding.download()?);
        return Ok(all);
    }
    let mut all = out.features.download()?;
    all.extend(out.ray_length.download()?);
    all.extend(out.neg_log_transmittance.download()?);
    Ok(all)
}

pub(super) fn cases(dev: &Device, progress: &mut dyn FnMut(&str), rows: &mut Vec<Row>) {
    let sizes: &[(&'static str, usize)] = match dev.backend() {
        // The emulator interprets every instruction: a few rays of this scene take seconds.
        Backend::PtxEmu => &[("one", 1), ("ragged", 67)],
        _ => &[("one", 1), ("ragged", 1001), ("20k", 20_000)],
    };
    let noise = Some(OpacityNoise {
        sigma: 0.3,
        seed: 9,
        stream: 1,
    });
    let lightplane = |note, opts, opacity_bias| Case {
        note,
        opts,
        hidden: 32,
        opacity_bias,
    };
    let variants = [
        lightplane(
            "64+16 samples",
            RenderOptions {
                samples: 64,
                samples_inf: 16,
                ..Default::default()
            },
            -1.0,
        ),
        lightplane(
            "32 samples, mask, noise, gain 2",
            RenderOptions {
                samples: 32,
                mask_out_of_bounds: true,
                noise,
                gain: 2.0,
                ..Default::default()
            },
            -1.0,
        ),
        // Weights of about 1e-6 per sample: T_{j-1} - T_j in f32 would keep none of their digits.
        lightplane(
            "64 samples, nearly empty (opacity bias -12)",
            RenderOptions {
                samples: 64,
                ..Default::default()
            },
            -12.0,
        ),
    ];
    let cpu = Device::cpu();
    for &(size, r) in sizes {
        for case in &variants {
            for dtype in [DType::F32, DType::BF16] {
                progress(&format!("{OP} {size} {} {dtype}", case.note));
                let mut row = Row {
                    op: OP,
                    dtype,
                    backend: dev.backend().to_string(),
                    size,
                    len: r,
                    metric: "rel L2 of all outputs",
                    error: f64::INFINITY,
                    tolerance: 1e-5,
                    pass: false,
                    note: case.note.to_string(),
                };
                let run = |d: &Device| match dtype {
                    DType::BF16 => run::<half::bf16>(d, r, case, 3, false),
                    _ => run::<f32>(d, r, case, 3, false),
                };
                judge(&mut row, run(dev), run(&cpu));
                rows.push(row);
            }
        }
    }
    // Backward (f32 grids) where the CPU reference stays quick; also with a decoder too wide
    // for its gradients to be summed in shared memory on CUDA (about 15 000 parameters).
    let wide = Case {
        hidden: 64,
        ..lightplane(
            "width 64, 32 samples",
            RenderOptions {
                samples: 32,
                ..Default::default()
            },
            -1.0,
        )
    };
    for case in variants.iter().chain([&wide]) {
        for &(size, r) in sizes.iter().filter(|s| s.1 <= 1001) {
            // One ray of the wide decoder is enough for the emulator.
            if case.hidden > 32 && dev.backend() == Backend::PtxEmu && r > 1 {
                continue;
            }
            progress(&format!("render bw {size} {}", case.note));
            let mut row = Row {
                op: "render bw",
                dtype: DType::F32,
                backend: dev.backend().to_string(),
                size,
                len: r,
                metric: "rel L2 of all gradients",
                error: f64::INFINITY,
                tolerance: 1e-4,
                pass: false,
                note: case.note.to_string(),
            };
            let (got, want) = (
                run::<f32>(dev, r, case, 4, true),
                run::<f32>(&cpu, r, case, 4, true),
            );
            judge(&mut row, got, want);
            rows.push(row);
        }
    }
}

/// Fills a row from the device's and the CPU's results: the relative L2 error (NaN fails), a
/// `skipped` row where the backend lacks the op, or the error's text.
pub(super) fn judge(row: &mut Row, got: Result<Vec<f32>>, want: Result<Vec<f32>>) {
    match (got, want) {
        (Ok(got), Ok(want)) => {
            let f = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
            let (got, want) = (f(got), f(want));
            row.error = compare::rel_l2(&got, &want);
            row.pass = row.error <= row.tolerance && got.iter().all(|x| x.is_finite());
        }
        (Err(Error::Unsupported { what, .. }), _) => {
            row.metric = "skipped";
            row.error = 0.0;
            row.tolerance = 0.0;
            row.pass = true;
            row.note = format!("not run: {what}");
        }
        (Err(e), _) | (_, Err(e)) => row.note = e.to_string(),
    }
}
