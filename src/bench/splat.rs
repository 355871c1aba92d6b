//! Bench cases of splatting on Lightplane's splatter setup scaled to the device: a triplane of
//! three 128 x 128 planes with C = 32 and batch 3, 96 samples per ray, forward and backward,
//! plain and with the MLP splatter (input triplane 32 x 32 x 8, two layers 32 wide), rays per
//! second. The bytes are the least any splatter moves: the output grids and their weights
//! written once (forward) or read once (backward), each ray's inputs, and for the MLP splatter
//! its input grids and parameters (and, backward, their gradients).

use super::{Row, row, time};
use crate::Result;
use crate::backend::Device;
use crate::buffer::DType;
use crate::check::render::{rays, values};
use crate::render::{GridList, Rays};
use crate::splat::{SplatMlp, SplatOptions, Splatter};

pub(super) fn run(
    dev: &Device,
    n_rays: usize,
    copy_gbps: f64,
    progress: &mut dyn FnMut(&str),
    rows: &mut Vec<Row>,
) -> Result<()> {
    // The emulator interprets every thread: a 128^2 triplane takes it minutes per call.
    let res = if dev.backend() == crate::Backend::PtxEmu {
        32
    } else {
        128
    };
    let (b, c) = (3, 32);
    let out = GridList::new(&[
        [b, 1, res, res, c],
        [b, res, 1, res, c],
        [b, res, res, 1, c],
    ])?;
    let opts = SplatOptions {
        samples: 96,
        ..Default::default()
    };
    let s = Splatter::new(dev, &out, opts)?;
    let [o, d, near, far] = rays(dev, n_rays)?;
    let batch = dev.upload(&(0..n_rays as u32).map(|i| i % 3).collect::<Vec<_>>())?;
    let enc = dev.upload(&values(n_rays * c, 2))?;
    let rays = Rays {
        origins: &o,
        directions: &d,
        batch: &batch,
        near: &near,
        far: &far,
        encoding: Some(&enc),
    };
    let mut grid = dev.zeros::<f32>(out.len())?;
    let grid_bytes = 4 * (out.len() + out.len() / c) as u64;
    let per_ray = 4 * (3 + 3 + 1 + 1 + 1 + c) as u64;
    progress(&format!("splat fw {n_rays} rays x 96"));
    let t = time(dev, || s.forward(&rays, &mut grid))?;
    let bytes = grid_bytes + per_ray * n_rays as u64;
    rows.push(row(
        dev,
        "splat fw (rays)",
        DType::F32,
        n_rays,
        t,
        bytes,
        copy_gbps,
    ));
    progress(&format!("splat bw {n_rays} rays x 96"));
    let mut g_enc = dev.zeros::<f32>(n_rays * c)?;
    let t = time(dev, || s.backward(&rays, &grid, &mut g_enc))?;
    rows.push(row(
        dev,
        "splat bw (rays)",
        DType::F32,
        n_rays,
        t,
        bytes,
        copy_gbps,
    ));

    let cin = 8;
    let input = GridList::new(&[
        [b, 1, 32, 32, cin],
        [b, 32, 1, 32, cin],
        [b, 32, 32, 1, cin],
    ])?;
    let mlp = SplatMlp {
        layers: 2,
        hidden: 32,
    };
    let m = Splatter::with_mlp(dev, &out, &input, mlp, opts)?;
    let iv = dev.upload(&values(input.len(), 3))?;
    let params = mlp.xavier_init(cin, c, 1)?;
    let pv = dev.upload(&params)?;
    let enc8 = dev.upload(&values(n_rays * cin, 4))?;
    let rays8 = Rays {
        encoding: Some(&enc8),
        ..rays
    };
    let fixed = 4 * (input.len() + params.len()) as u64;
    let per_ray = 4 * (3 + 3 + 1 + 1 + 1 + cin) as u64;
    let bytes = grid_bytes + fixed + per_ray * n_rays as u64;
    progress(&format!("splat mlp fw {n_rays} rays x 96"));
    let t = time(dev, || m.forward_mlp(&iv, &pv, &rays8, &mut grid))?;
    rows.push(row(
        dev,
        "splat mlp fw (rays)",
        DType::F32,
        n_rays,
        t,
        bytes,
        copy_gbps,
    ));
    progress(&format!("splat mlp bw {n_rays} rays x 96"));
    let mut grads = m.grads_zeros(n_rays)?;
    let t = time(dev, || m.backward_mlp(&iv, &pv, &rays8, &grid, &mut grads))?;
    rows.push(row(
        dev,
        "splat mlp bw (rays)",
        DType::F32,
        n_rays,
        t,
        bytes + fixed,
        copy_gbps,
    ));
    Ok(())
}
