//! The f64 reference of splatting on host data, for checks that need more precision than f32
//! buffers give (adjointness, central differences, conformance suites).

use super::cpu::{HostSplatGrads, MlpIn, SplatScene};
use super::{OP, SplatMlp, SplatOptions, Splatter};
use crate::Result;
use crate::backend::Device;
use crate::ops::render::cpu::{Grids, HostRays};
use crate::ops::render::grid::GridList;
use crate::ops::render::reference::check_rays;

/// The MLP splatter's input on the host: the input list and its values, the network and its
/// flat parameters.
pub struct HostSplatMlp<'a> {
    pub grids: &'a GridList,
    pub values: &'a [f64],
    pub mlp: SplatMlp,
    pub params: &'a [f64],
}

/// A splat on the host: the output list, the MLP if any, the options.
pub struct HostSplat<'a> {
    pub out: &'a GridList,
    pub mlp: Option<HostSplatMlp<'a>>,
    pub opts: SplatOptions,
}

/// Plans the splat as [`Splatter`] would (so every argument is checked the same way), checks
/// the rays, and runs `f` on the CPU scene.
fn with_scene<R>(
    s: &HostSplat,
    rays: &HostRays,
    splats_encoding: bool,
    f: impl FnOnce(&SplatScene<[f64]>) -> R,
) -> Result<R> {
    let dev = Device::cpu();
    let plan = match &s.mlp {
        None => Splatter::new(&dev, s.out, s.opts)?,
        Some(m) => Splatter::with_mlp(&dev, s.out, m.grids, m.mlp, s.opts)?,
    };
    if let Some(m) = &s.mlp {
        crate::validate::len(OP, "input_grids", m.grids.len(), m.values.len())?;
        crate::validate::len(OP, "mlp_params", plan.params_len(), m.params.len())?;
    } else if splats_encoding && rays.encoding.is_none() {
        return Err(crate::Error::InvalidArgument {
            op: OP,
            what: "rays.encoding is required: it is the vector each ray splats".into(),
        });
    }
    check_rays(OP, rays, s.out.batch(), plan.encoding_len())?;
    let mlp = s.mlp.as_ref().zip(plan.mlp.as_ref()).map(|(m, p)| MlpIn {
        grids: Grids {
            list: m.grids,
            data: m.values,
        },
        mlp: &p.mlp,
        params: m.params,
    });
    let scene = SplatScene {
        out: s.out,
        weights: &plan.weights,
        mlp,
        opts: &s.opts,
    };
    Ok(f(&scene))
}

/// The normalized splat (the output list's layout).
pub fn forward(s: &HostSplat, rays: &HostRays) -> Result<Vec<f64>> {
    with_scene(s, rays, true, |sc| sc.forward(rays))
}

/// The unnormalized splat `sum(w v)` and the weight sums `sum(w)`, one per cell.
pub fn sums(s: &HostSplat, rays: &HostRays) -> Result<(Vec<f64>, Vec<f64>)> {
    with_scene(s, rays, true, |sc| sc.sums(rays))
}

/// `sum_j sample(g, p_j)` over each ray's counted samples (`R x C`), `g` in the output list's
/// layout: the adjoint of the plain splat's `sums`.
pub fn gather(s: &HostSplat, rays: &HostRays, g: &[f64]) -> Result<Vec<f64>> {
    crate::validate::len(OP, "g", s.out.len(), g.len())?;
    with_scene(s, rays, false, |sc| sc.gather(rays, g))
}

/// The gradients of `<grad_out, forward(..)>`.
pub fn backward(s: &HostSplat, rays: &HostRays, grad_out: &[f64]) -> Result<HostSplatGrads> {
    crate::validate::len(OP, "grad_out", s.out.len(), grad_out.len())?;
    with_scene(s, rays, false, |sc| sc.backward(rays, grad_out))
}
