//! Bench cases of rendering on Lightplane's benchmark scene (`check::render::scene`): forward
//! and backward, rays per second. Rendering is compute-bound, so the "% copy" column says
//! little; the bytes are the least any renderer moves: the grids and parameters once, each ray's
//! inputs and outputs (and, backward, the gradients of all of them).

use super::{Row, row, time};
use crate::Result;
use crate::backend::Device;
use crate::buffer::DType;
use crate::check::render::{rays, scene, values};
use crate::render::{Rays, RenderOptions, RenderOutput, Renderer};

pub(super) fn run(
    dev: &Device,
    n_rays: usize,
    samples: usize,
    copy_gbps: f64,
    progress: &mut dyn FnMut(&str),
    rows: &mut Vec<Row>,
) -> Result<()> {
    let (grids, decoder) = scene(32)?;
    let opts = RenderOptions {
        samples,
        ..Default::default()
    };
    let renderer = Renderer::new(dev, &grids, None, decoder, opts)?;
    let g = dev.upload(&values(grids.len(), 1))?;
    let p = decoder.xavier_init(32, None, -1.0, 1)?;
    let params = dev.upload(&p)?;
    let [o, d, near, far] = rays(dev, n_rays)?;
    let batch = dev.upload(&(0..n_rays as u32).map(|i| i % 3).collect::<Vec<_>>())?;
    let rays = Rays {
        origins: &o,
        directions: &d,
        batch: &batch,
        near: &near,
        far: &far,
        encoding: None,
    };
    let mut out = RenderOutput::zeros(dev, n_rays, 3)?;
    let fixed = 4 * (grids.len() + p.len()) as u64;
    let per_ray = 4 * (3 + 3 + 1 + 1 + 1 + 3 + 2) as u64;
    progress(&format!("render fw {n_rays} rays x {samples}"));
    let t = time(dev, || renderer.forward(&g, None, &params, &rays, &mut out))?;
    let op_fw: &'static str = "render fw (rays)";
    rows.push(row(
        dev,
        op_fw,
        DType::F32,
        n_rays,
        t,
        fixed + per_ray * n_rays as u64,
        copy_gbps,
    ));
    progress(&format!("render bw {n_rays} rays x {samples}"));
    let mut grads = renderer.grads_zeros(n_rays, p.len())?;
    match time(dev, || {
        renderer.backward(&g, None, &params, &rays, &out, &mut grads)
    }) {
        Ok(t) => {
            let bytes = 2 * fixed + (per_ray + 4 * 32) * n_rays as u64;
            rows.push(row(
                dev,
                "render bw (rays)",
                DType::F32,
                n_rays,
                t,
                bytes,
                copy_gbps,
            ));
        }
        Err(crate::Error::Unsupported { what, .. }) => {
            progress(&format!("render bw: not run on {}: {what}", dev.backend()))
        }
        Err(e) => return Err(e),
    }
    Ok(())
}
