//! The f64 reference on host data, for checks that need more precision than f32 buffers give
//! (central differences, conformance suites): the same march as the CPU backend, with every
//! input in f64.

use super::cpu::{GridRead, Grids, HostGrads, HostOutput, HostRays, Scene};
use super::{Decoder, GridList, OP, RenderOptions};
use crate::{Error, Result};

impl GridRead for [f64] {
    #[inline(always)]
    fn at(&self, i: usize) -> f64 {
        self[i]
    }
}

/// A scene on the host: grid values in f64 (the lists' flat layout), the decoder and its flat
/// parameters, and the options.
pub struct HostScene<'a> {
    pub grids: &'a GridList,
    pub grid_values: &'a [f64],
    pub color: Option<(&'a GridList, &'a [f64])>,
    pub decoder: Decoder,
    pub params: &'a [f64],
    pub opts: RenderOptions,
}

impl HostScene<'_> {
    fn check(&self, rays: &HostRays) -> Result<super::decoder::Layout> {
        self.opts.check()?;
        let cc = self.color.map(|(l, _)| l.channels());
        let lay = self
            .decoder
            .layout(self.grids.channels(), cc, self.params.len())?;
        crate::validate::len(OP, "grids", self.grids.len(), self.grid_values.len())?;
        if let Some((l, v)) = self.color {
            crate::validate::len(OP, "color_grids", l.len(), v.len())?;
        }
        check_rays(OP, rays, self.grids.batch(), lay.encoding_len())?;
        Ok(lay)
    }
}

/// Renders `rays` in f64.
pub fn forward(scene: &HostScene, rays: &HostRays) -> Result<HostOutput> {
    let lay = scene.check(rays)?;
    Ok(as_scene(scene, &lay).forward(rays))
}

/// The gradients of `<(g_feat, g_len, g_lambda), forward(..)>`: per ray a forward march for
/// `Lambda_last`, then triplane.md's reverse march from it.
pub fn backward(
    scene: &HostScene,
    rays: &HostRays,
    g_feat: &[f64],
    g_len: &[f64],
    g_lambda: &[f64],
) -> Result<HostGrads> {
    let lay = scene.check(rays)?;
    let r = rays.len();
    crate::validate::len(
        OP,
        "grad_out.features",
        r * lay.color_channels,
        g_feat.len(),
    )?;
    crate::validate::len(OP, "grad_out.ray_length", r, g_len.len())?;
    crate::validate::len(OP, "grad_out.neg_log_transmittance", r, g_lambda.len())?;
    Ok(as_scene(scene, &lay).backward(rays, g_feat, g_len, g_lambda))
}

fn as_scene<'a>(s: &'a HostScene, lay: &'a super::decoder::Layout) -> Scene<'a, [f64]> {
    Scene {
        grids: Grids {
            list: s.grids,
            data: s.grid_values,
        },
        color: s.color.map(|(list, data)| Grids { list, data }),
        lay,
        params: s.params,
        opts: &s.opts,
    }
}

/// Every ray's lengths, batch index (`< batch`), finite values and `near <= far` (`op` names
/// the caller in errors).
pub(crate) fn check_rays(
    op: &'static str,
    rays: &HostRays,
    batch: usize,
    encoding_len: usize,
) -> Result<()> {
    let r = rays.len();
    let v = crate::validate::len;
    v(op, "rays.origins", 3 * r, rays.origins.len())?;
    v(op, "rays.directions", 3 * r, rays.directions.len())?;
    v(op, "rays.batch", r, rays.batch.len())?;
    v(op, "rays.far", r, rays.far.len())?;
    if let Some(e) = &rays.encoding {
        v(op, "rays.encoding", r * encoding_len, e.len())?;
    }
    let bad = |what: String| Err(Error::InvalidArgument { op, what });
    for i in 0..r {
        let b = rays.batch[i] as usize;
        if b >= batch {
            return bad(format!(
                "rays.batch[{i}] = {b} is out of range for grids of batch {batch}"
            ));
        }
        let (n, f) = (rays.near[i], rays.far[i]);
        if !(n.is_finite() && f.is_finite()) || n > f {
            return bad(format!(
                "ray {i}: near and far must be finite with near <= far, got {n} and {f}"
            ));
        }
        let xs = rays.origins[3 * i..3 * i + 3]
            .iter()
            .chain(&rays.directions[3 * i..3 * i + 3]);
        if xs.clone().any(|x| !x.is_finite()) {
            return bad(format!("ray {i}: origins and directions must be finite"));
        }
    }
    if let Some(e) = &rays.encoding
        && let Some(i) = e.iter().position(|x| !x.is_finite())
    {
        return bad(format!("rays.encoding[{i}] is not finite"));
    }
    Ok(())
}

/// `sum_i sample(g_i, p)` for batch `b`: trilinear (bilinear on planes) with `align_corners =
/// false` and zero padding, the grid lookup every op here uses.
pub fn sample(list: &GridList, values: &[f64], batch: usize, p: [f64; 3]) -> Result<Vec<f64>> {
    crate::validate::len(OP, "grids", list.len(), values.len())?;
    if batch >= list.batch() {
        return Err(Error::InvalidArgument {
            op: OP,
            what: format!(
                "batch {batch} is out of range for grids of batch {}",
                list.batch()
            ),
        });
    }
    let mut out = vec![0.0; list.channels()];
    super::cpu::sample_into(&Grids { list, data: values }, batch, p, &mut out);
    Ok(out)
}
