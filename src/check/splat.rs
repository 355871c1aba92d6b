//! Check cases of splatting: rays of the render check (`check::render::rays`) into a triplane of
//! three 32 x 32 planes with C = 32 and batch 3, 32 + 8 samples, plain and with contraction and
//! the mask, forward and backward against the CPU backend; the MLP splatter (7 input channels,
//! 2 layers of 32, and 3 layers of 128) likewise, where the backend has it.

use super::Row;
use super::render::{judge, rays, values};
use crate::backend::Device;
use crate::buffer::DType;
use crate::render::{GridList, Rays};
use crate::splat::{SplatMlp, SplatOptions, Splatter};
use crate::{Backend, Result};

fn planes(c: usize) -> Result<GridList> {
    let (b, res) = (3, 32);
    GridList::new(&[
        [b, 1, res, res, c],
        [b, res, 1, res, c],
        [b, res, res, 1, c],
    ])
}

/// The splat, and with `backward` the encoding gradient (and the MLP's) of `<g, splat>` for a
/// fixed `g` instead.
fn run(
    dev: &Device,
    r: usize,
    opts: SplatOptions,
    mlp: Option<SplatMlp>,
    backward: bool,
) -> Result<Vec<f32>> {
    let out = planes(32)?;
    let input = planes(7)?;
    let s = match mlp {
        Some(net) => Splatter::with_mlp(dev, &out, &input, net, opts)?,
        None => Splatter::new(dev, &out, opts)?,
    };
    let [o, d, near, far] = rays(dev, r)?;
    let batch = dev.upload(&(0..r as u32).map(|i| i % 3).collect::<Vec<_>>())?;
    let enc = dev.upload(&values(r * s.encoding_len(), 6))?;
    let rays = Rays {
        origins: &o,
        directions: &d,
        batch: &batch,
        near: &near,
        far: &far,
        encoding: Some(&enc),
    };
    let mut grid = dev.upload(&vec![f32::NAN; out.len()])?;
    let input_values = dev.upload(&values(input.len(), 7))?;
    let params = match mlp {
        Some(net) => dev.upload(&net.xavier_init(7, 32, 8)?)?,
        None => dev.zeros(1)?,
    };
    if !backward {
        if mlp.is_some() {
            s.forward_mlp(&input_values, &params, &rays, &mut grid)?;
        } else {
            s.forward(&rays, &mut grid)?;
        }
        return grid.download();
    }
    let g = dev.upload(&values(out.len(), 9))?;
    if mlp.is_some() {
        let mut grads = s.grads_zeros(r)?;
        s.backward_mlp(&input_values, &params, &rays, &g, &mut grads)?;
        let mut all = grads.encoding.download()?;
        all.extend(grads.params.download()?);
        all.extend(grads.input_grids.download()?);
        return Ok(all);
    }
    let mut g_enc = dev.upload(&vec![f32::NAN; r * 32])?;
    s.backward(&rays, &g, &mut g_enc)?;
    g_enc.download()
}

pub(super) fn cases(dev: &Device, progress: &mut dyn FnMut(&str), rows: &mut Vec<Row>) {
    let sizes: &[(&'static str, usize)] = match dev.backend() {
        Backend::PtxEmu => &[("one", 1), ("ragged", 67)],
        _ => &[("one", 1), ("ragged", 1001), ("20k", 20_000)],
    };
    let mlp = |layers, hidden| Some(SplatMlp { layers, hidden });
    let with_background = SplatOptions {
        samples: 32,
        samples_inf: 8,
        ..Default::default()
    };
    let variants: [(&'static str, SplatOptions, Option<SplatMlp>); 4] = [
        ("32+8 samples", with_background, None),
        (
            "32 samples, contract, mask",
            SplatOptions {
                samples: 32,
                contract: true,
                mask_out_of_bounds: true,
                ..Default::default()
            },
            None,
        ),
        ("MLP 7 -> 32, 32+8 samples", with_background, mlp(2, 32)),
        // About 21 700 parameters: more than CUDA sums in a block's shared memory.
        ("MLP 7 -> 128 -> 128 -> 32", with_background, mlp(3, 128)),
    ];
    let cpu = Device::cpu();
    for &(size, r) in sizes {
        for (note, opts, mlp) in &variants {
            // The normalized splat is ill-conditioned where a cell's total weight is tiny (only
            // far corners reach it): the ratio of its two sums inherits the corner weights'
            // absolute f32 error (the grid coordinate's ulp, 2e-6 at 32 cells) divided by that
            // weight. With contraction at 20 000 rays x 32 samples such cells appear (the worst
            // weighs 2.1e-4 and is off by 1e-3 relative; 95% of the squared error sits in cells
            // of weight < 0.01): rel L2 1.0e-5 to 2.2e-5 against 1.7e-6 without contraction,
            // while the sums themselves are exact. A property of f32 coordinates, not of the
            // kernels: contraction is checked at 1 and 1001 rays.
            if opts.contract && r > 1001 {
                continue;
            }
            // The wide MLP runs on one ray: enough for its global accumulator on CUDA. Among
            // more rays some gradients are discontinuous within f32 rounding (a ReLU whose input
            // is near 0): at 125 rays, ray 122's encoding gradient moves 3.0e-2 in the f64
            // reference itself when the parameters move by 8 ulp, and wgpu and the emulator,
            // which agree with each other, land 3.0e-2 from it (rel L2 of everything 1.8e-3).
            if mlp.is_some_and(|m| m.hidden > 32) && r > 1 {
                continue;
            }
            for backward in [false, true] {
                let op = if backward { "splat bw" } else { "splat fw" };
                progress(&format!("{op} {size} {note}"));
                let mut row = Row {
                    op,
                    dtype: DType::F32,
                    backend: dev.backend().to_string(),
                    size,
                    len: r,
                    metric: if backward {
                        "rel L2 of all gradients"
                    } else {
                        "rel L2 of the grids"
                    },
                    error: f64::INFINITY,
                    tolerance: if backward { 1e-4 } else { 1e-5 },
                    pass: false,
                    note: note.to_string(),
                };
                let got = run(dev, r, *opts, *mlp, backward);
                let want = run(&cpu, r, *opts, *mlp, backward);
                judge(&mut row, got, want);
                rows.push(row);
            }
        }
    }
}
