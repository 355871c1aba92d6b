//! Splatting ray features into triplanes and voxel grids, forward and backward
//! (`design/triplane.md`, "Splat"; Lightplane's splatter).
//!
//! Splatting is the adjoint of the renderer's sampling: every counted sample of a ray puts the
//! ray's vector `v` (its `encoding`) into every grid of an output list with the sampling's corner
//! weights, and each cell is then divided by the weight it received, `out = sum(w v) /
//! max(sum(w), 1e-5)`. There is no transmittance: every sample counts the same. With the
//! `mask_out_of_bounds` option a sample outside `[-1, 1]^3` puts nothing anywhere (its weight
//! included), as in Lightplane.
//!
//! The MLP splatter ([`Splatter::with_mlp`]) splats `v = MLP(e + f_in(p))` instead, where
//! `f_in` samples an input grid list at the sample's point and `e` is the ray's encoding (the
//! input list's width; none means zeros): ReLU between layers, a linear last layer as wide as
//! the output list's channels, parameters in Lightplane's flat layout for one MLP (all weight
//! matrices `(in, out)` row-major, layer 0 first, then all bias vectors).
//!
//! The backward pass treats the normalizer as a constant (it depends on the rays' geometry
//! alone, so this is the exact gradient): `g' = grad_out / max(weight, 1e-5)` gathered along each
//! ray with the same interpolation is the gradient of `v`; with an MLP, each sample's MLP is
//! recomputed and run backward into the parameters, the encoding and the input grids. Nothing
//! from the forward pass is needed: the weights are splatted again.
//!
//! ```
//! use trainkern::Device;
//! use trainkern::render::{GridList, Rays};
//! use trainkern::splat::{SplatOptions, Splatter};
//!
//! let dev = Device::cpu();
//! let planes = GridList::new(&[[1, 1, 8, 8, 4], [1, 8, 1, 8, 4], [1, 8, 8, 1, 4]])?;
//! let splatter = Splatter::new(&dev, &planes, SplatOptions { samples: 16, ..Default::default() })?;
//! let origins = dev.upload(&[0.0f32, 0.0, -2.0])?;
//! let directions = dev.upload(&[0.1f32, 0.2, 1.0])?;
//! let (batch, near, far) = (dev.upload(&[0u32])?, dev.upload(&[1.0f32])?, dev.upload(&[3.0f32])?);
//! let feature = dev.upload(&[1.0f32, 2.0, 3.0, 4.0])?;
//! let rays = Rays { origins: &origins, directions: &directions, batch: &batch, near: &near, far: &far, encoding: Some(&feature) };
//! let mut out = dev.zeros(planes.len())?;
//! splatter.forward(&rays, &mut out)?;
//! // Every cell the ray touched holds its feature (one ray: the normalization undoes the weights).
//! let cell = out.download()?.chunks(4).find(|c| c[0] != 0.0).map(|c| c.to_vec()).unwrap();
//! assert!((cell[3] / cell[0] - 4.0).abs() < 1e-5);
//! # Ok::<(), trainkern::Error>(())
//! ```
//!
//! Sums: the GPU backends add the weights and the plain splatter's values in 64-bit fixed point
//! (scaled by the number of terms and the largest |encoding|, two u32 atomic adds with a
//! carry), which is exact and independent of the order of the adds: two runs agree to the bit,
//! and cells whose thousands of terms cancel lose nothing (on 4000 rays of cancelling encodings
//! through a 4 x 4 plane: 9e-8 relative L2 against 1.0e-6 with the weights added in f32). The
//! MLP splatter's values are not known before the pass and are added in f32. The CPU reference
//! adds in f64. Where a cell's total weight is tiny the normalized value inherits the corner
//! weights' f32 position error divided by that weight, whatever the sums' precision.
//!
//! Backends: the CPU reference, wgpu and PTX (CUDA and the emulator) run both splatters forward
//! and backward. On wgpu each grid list must fit one storage binding (a larger one is refused by
//! name). llvmpipe (lavapipe) ends an invocation's loops past 65 535 iterations: the MLP
//! splatter's forward items and backward samples that long are split over dispatches at the
//! MLP's layers (any depth at the widest, 128, runs there), and lavapipe refuses one whose
//! single step still passes it.

mod cpu;
#[cfg(any(feature = "cuda", feature = "ptx-emu"))]
mod ptx;
pub mod reference;
#[cfg(any(feature = "wgpu", feature = "cuda", feature = "ptx-emu"))]
mod tables;
#[cfg(feature = "wgpu")]
mod wgpu;

pub use cpu::HostSplatGrads;

use crate::backend::Device;
#[cfg(any(feature = "cuda", feature = "ptx-emu"))]
use crate::backend::ptx::PtxDevice;
use crate::buffer::{Buffer, Float, Storage};
use crate::ops::render::cpu::{GridRead, Grids, HostRays};
use crate::ops::render::decoder::{MAX_WIDTH, Mlp};
use crate::ops::render::grid::{GridList, Marching};
use crate::ops::render::{Rays, host_rays, narrow_into, widen};
use crate::{Error, Result, validate};

const OP: &str = "splat";

/// Where the samples of each ray lie (as in rendering) and which count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SplatOptions {
    /// Samples from `near` to `far`, both included (at least 2).
    pub samples: usize,
    /// Background samples beyond `far`, evenly spaced in inverse depth.
    pub samples_inf: usize,
    /// The disparity of the last background sample, in `(0, 1)`.
    pub disparity_at_inf: f32,
    /// MERF's contraction of every point into the cube, then halving.
    pub contract: bool,
    /// Samples outside `[-1, 1]^3` put nothing anywhere.
    pub mask_out_of_bounds: bool,
}

impl Default for SplatOptions {
    fn default() -> Self {
        SplatOptions {
            samples: 64,
            samples_inf: 0,
            disparity_at_inf: 1e-5,
            contract: false,
            mask_out_of_bounds: false,
        }
    }
}

impl SplatOptions {
    fn check(&self) -> Result<()> {
        self.marching().check(OP)
    }

    pub fn marching(&self) -> Marching {
        Marching {
            samples: self.samples,
            samples_inf: self.samples_inf,
            disparity_at_inf: f64::from(self.disparity_at_inf),
        }
    }
}

/// The MLP splatter's network: `layers` linear layers (at least 1), `hidden` wide between them,
/// from the input grids' channels to the output grids' channels; every width at most
/// [`MAX_WIDTH`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplatMlp {
    pub layers: usize,
    pub hidden: usize,
}

impl SplatMlp {
    fn layout(&self, input: usize, output: usize) -> Result<Mlp> {
        let bad = |what: String| Err(Error::InvalidArgument { op: OP, what });
        if self.layers == 0 {
            return bad("mlp.layers must be >= 1".into());
        }
        for (name, w) in [
            ("mlp.hidden", self.hidden),
            ("the input grids' channel count", input),
            ("the output grids' channel count", output),
        ] {
            if w == 0 || w > MAX_WIDTH {
                return bad(format!("{name} must be in 1..={MAX_WIDTH}, got {w}"));
            }
        }
        Ok(Mlp::at(0, self.layers, input, self.hidden, output).0)
    }

    /// The length of the flat parameter vector from `input` to `output` channels.
    pub fn params_len(&self, input: usize, output: usize) -> Result<usize> {
        let m = self.layout(input, output)?;
        Ok(m.b[m.layers() - 1] + output)
    }

    /// Xavier-uniform weights (ReLU gain) from the crate's RNG, zero biases, as
    /// `render::Decoder::xavier_init` does for the decoder.
    pub fn xavier_init(&self, input: usize, output: usize, seed: u64) -> Result<Vec<f32>> {
        let m = self.layout(input, output)?;
        let mut p = vec![0.0f32; self.params_len(input, output)?];
        m.xavier_fill(&mut p, seed);
        Ok(p)
    }
}

/// Gradients from [`Splatter::backward_mlp`], all f32: the input grids' (their shapes), the
/// parameters' and the encodings' (`R x E`, present even when the rays had none).
pub struct SplatGrads {
    pub input_grids: Buffer<f32>,
    pub params: Buffer<f32>,
    pub encoding: Buffer<f32>,
}

/// The MLP splatter's plan: its input list and network.
struct MlpPlan {
    input: GridList,
    mlp: Mlp,
}

/// Splatting planned for one output grid list (and, for the MLP splatter, an input list and a
/// network) and one set of options.
pub struct Splatter {
    dev: Device,
    out: GridList,
    weights: GridList,
    mlp: Option<MlpPlan>,
    opts: SplatOptions,
}

impl Splatter {
    /// The plain splatter: each ray's encoding (as wide as `out`'s channels) into `out`.
    pub fn new(dev: &Device, out: &GridList, opts: SplatOptions) -> Result<Splatter> {
        opts.check()?;
        let ones: Vec<[usize; 5]> = out
            .shapes()
            .iter()
            .map(|&[b, d, h, w, _]| [b, d, h, w, 1])
            .collect();
        Ok(Splatter {
            dev: dev.clone(),
            out: out.clone(),
            weights: GridList::named(OP, "the weight grids", &ones)?,
            mlp: None,
            opts,
        })
    }

    /// The MLP splatter: `MLP(e + f_in(p))` into `out`, `f_in` sampling `input` (same batch).
    pub fn with_mlp(
        dev: &Device,
        out: &GridList,
        input: &GridList,
        mlp: SplatMlp,
        opts: SplatOptions,
    ) -> Result<Splatter> {
        if input.batch() != out.batch() {
            return Err(Error::Shape {
                op: OP,
                arg: "input_grids",
                expected: format!("batch {} like the output grids", out.batch()),
                got: format!("batch {}", input.batch()),
            });
        }
        let layout = mlp.layout(input.channels(), out.channels())?;
        let mut s = Splatter::new(dev, out, opts)?;
        s.mlp = Some(MlpPlan {
            input: input.clone(),
            mlp: layout,
        });
        Ok(s)
    }

    pub fn options(&self) -> &SplatOptions {
        &self.opts
    }

    /// The output list.
    pub fn grids(&self) -> &GridList {
        &self.out
    }

    /// The width `E` of each ray's encoding: the output channels, or the MLP's input channels.
    pub fn encoding_len(&self) -> usize {
        self.mlp
            .as_ref()
            .map_or(self.out.channels(), |m| m.input.channels())
    }

    /// The length of the MLP's parameter vector (0 for the plain splatter).
    pub fn params_len(&self) -> usize {
        self.mlp
            .as_ref()
            .map_or(0, |m| m.mlp.b[m.mlp.layers() - 1] + m.mlp.output())
    }

    /// Splats `rays.encoding` (required, `R x C`) into `out` (the output list's layout,
    /// overwritten).
    pub fn forward(&self, rays: &Rays, out: &mut Buffer<f32>) -> Result<()> {
        self.plain_only()?;
        self.check_rays(rays, true)?;
        self.check_grid(out, "out")?;
        match &out.storage {
            Storage::Cpu(_) => {
                let host = self.host_rays(rays)?;
                narrow_into(&self.scene::<[f32]>(None)?.forward(&host), out)
            }
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => wgpu::forward(self, rays, out),
            #[allow(unreachable_patterns)]
            _ => {
                #[cfg(any(feature = "cuda", feature = "ptx-emu"))]
                if let Some(dev) = PtxDevice::of(&self.dev) {
                    return ptx::forward(&dev, self, rays, out);
                }
                Err(self.unsupported("plain"))
            }
        }
    }

    /// The gradient of `<grad_out, forward(rays)>` with respect to `rays.encoding`, into
    /// `grad_encoding` (`R x C`, overwritten).
    pub fn backward(
        &self,
        rays: &Rays,
        grad_out: &Buffer<f32>,
        grad_encoding: &mut Buffer<f32>,
    ) -> Result<()> {
        self.plain_only()?;
        self.check_rays(rays, false)?;
        self.check_grid(grad_out, "grad_out")?;
        validate::on_device(OP, "grad_encoding", &self.dev, grad_encoding)?;
        validate::len(
            OP,
            "grad_encoding",
            rays.len() * self.encoding_len(),
            grad_encoding.len(),
        )?;
        match &grad_out.storage {
            Storage::Cpu(_) => {
                let host = self.host_rays(rays)?;
                let g = self
                    .scene::<[f32]>(None)?
                    .backward(&host, &widen(grad_out)?);
                narrow_into(&g.encoding, grad_encoding)
            }
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => wgpu::backward(self, rays, grad_out, grad_encoding),
            #[allow(unreachable_patterns)]
            _ => {
                #[cfg(any(feature = "cuda", feature = "ptx-emu"))]
                if let Some(dev) = PtxDevice::of(&self.dev) {
                    return ptx::backward(&dev, self, rays, grad_out, grad_encoding);
                }
                Err(self.unsupported("plain"))
            }
        }
    }

    /// The MLP splatter: splats `MLP(e + f_in(p))` into `out` (overwritten); `input` holds the
    /// input list's values, `params` the MLP's.
    pub fn forward_mlp<T: Float>(
        &self,
        input: &Buffer<T>,
        params: &Buffer<f32>,
        rays: &Rays,
        out: &mut Buffer<f32>,
    ) -> Result<()> {
        self.check_mlp_inputs(input, params)?;
        self.check_rays(rays, false)?;
        self.check_grid(out, "out")?;
        match &out.storage {
            Storage::Cpu(_) => {
                let values = input
                    .as_host_slice()
                    .ok_or_else(|| self.unsupported("MLP"))?;
                let host = self.host_rays(rays)?;
                let p = widen(params)?;
                narrow_into(&self.scene(Some((values, &p)))?.forward(&host), out)
            }
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => wgpu::forward_mlp(self, input, params, rays, out),
            #[allow(unreachable_patterns)]
            _ => {
                #[cfg(any(feature = "cuda", feature = "ptx-emu"))]
                if let Some(dev) = PtxDevice::of(&self.dev) {
                    return ptx::forward_mlp(&dev, self, input, params, rays, out);
                }
                Err(self.unsupported("MLP"))
            }
        }
    }

    /// Gradients of `<grad_out, forward_mlp(..)>` into `grads` (overwritten).
    pub fn backward_mlp<T: Float>(
        &self,
        input: &Buffer<T>,
        params: &Buffer<f32>,
        rays: &Rays,
        grad_out: &Buffer<f32>,
        grads: &mut SplatGrads,
    ) -> Result<()> {
        self.check_mlp_inputs(input, params)?;
        self.check_rays(rays, false)?;
        self.check_grid(grad_out, "grad_out")?;
        let dev = &self.dev;
        for (arg, buf, len) in [
            ("grads.input_grids", &grads.input_grids, input.len()),
            ("grads.params", &grads.params, params.len()),
            (
                "grads.encoding",
                &grads.encoding,
                rays.len() * self.encoding_len(),
            ),
        ] {
            validate::on_device(OP, arg, dev, buf)?;
            validate::len(OP, arg, len, buf.len())?;
        }
        match &grad_out.storage {
            Storage::Cpu(_) => {
                let values = input
                    .as_host_slice()
                    .ok_or_else(|| self.unsupported("MLP"))?;
                let host = self.host_rays(rays)?;
                let p = widen(params)?;
                let g = self
                    .scene(Some((values, &p)))?
                    .backward(&host, &widen(grad_out)?);
                narrow_into(&g.encoding, &mut grads.encoding)?;
                narrow_into(&g.input_grids.unwrap_or_default(), &mut grads.input_grids)?;
                narrow_into(&g.params.unwrap_or_default(), &mut grads.params)
            }
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => wgpu::backward_mlp(self, input, params, rays, grad_out, grads),
            #[allow(unreachable_patterns)]
            _ => {
                #[cfg(any(feature = "cuda", feature = "ptx-emu"))]
                if let Some(dev) = PtxDevice::of(&self.dev) {
                    return ptx::backward_mlp(&dev, self, input, params, rays, grad_out, grads);
                }
                Err(self.unsupported("MLP"))
            }
        }
    }

    /// Zeroed gradient buffers of the MLP splatter's shapes for `rays` rays.
    pub fn grads_zeros(&self, rays: usize) -> Result<SplatGrads> {
        Ok(SplatGrads {
            input_grids: self
                .dev
                .zeros(self.mlp.as_ref().map_or(0, |m| m.input.len()))?,
            params: self.dev.zeros(self.params_len())?,
            encoding: self.dev.zeros(rays * self.encoding_len())?,
        })
    }

    fn scene<'a, G: GridRead + ?Sized>(
        &'a self,
        mlp: Option<(&'a G, &'a [f64])>,
    ) -> Result<cpu::SplatScene<'a, G>> {
        let mlp = match (&self.mlp, mlp) {
            (None, None) => None,
            (Some(plan), Some((data, params))) => Some(cpu::MlpIn {
                grids: Grids {
                    list: &plan.input,
                    data,
                },
                mlp: &plan.mlp,
                params,
            }),
            _ => return Err(self.wrong_kind()),
        };
        Ok(cpu::SplatScene {
            out: &self.out,
            weights: &self.weights,
            mlp,
            opts: &self.opts,
        })
    }

    fn plain_only(&self) -> Result<()> {
        match self.mlp {
            None => Ok(()),
            Some(_) => Err(self.wrong_kind()),
        }
    }

    fn wrong_kind(&self) -> Error {
        Error::InvalidArgument {
            op: OP,
            what: format!(
                "this splatter was planned {} an MLP: call {}",
                if self.mlp.is_some() {
                    "with"
                } else {
                    "without"
                },
                if self.mlp.is_some() {
                    "forward_mlp / backward_mlp"
                } else {
                    "forward / backward"
                }
            ),
        }
    }

    fn unsupported(&self, which: &str) -> Error {
        Error::Unsupported {
            op: OP,
            backend: self.dev.backend().name(),
            what: format!(
                "the {which} splatter is not built for this backend yet (the CPU and wgpu run \
                 both; PTX runs the plain one)"
            ),
        }
    }

    fn check_mlp_inputs<T: Float>(&self, input: &Buffer<T>, params: &Buffer<f32>) -> Result<()> {
        let Some(plan) = &self.mlp else {
            return Err(self.wrong_kind());
        };
        validate::on_device(OP, "input_grids", &self.dev, input)?;
        validate::len(OP, "input_grids", plan.input.len(), input.len())?;
        validate::on_device(OP, "mlp_params", &self.dev, params)?;
        validate::len(OP, "mlp_params", self.params_len(), params.len())
    }

    /// Buffers and lengths of the rays; the plain splatter's forward pass requires an encoding
    /// (`splats_encoding`).
    fn check_rays(&self, rays: &Rays, splats_encoding: bool) -> Result<()> {
        let (dev, r) = (&self.dev, rays.len());
        for (arg, buf, per) in [
            ("rays.origins", rays.origins, 3),
            ("rays.directions", rays.directions, 3),
            ("rays.near", rays.near, 1),
            ("rays.far", rays.far, 1),
        ] {
            validate::on_device(OP, arg, dev, buf)?;
            validate::len(OP, arg, r * per, buf.len())?;
        }
        validate::on_device(OP, "rays.batch", dev, rays.batch)?;
        validate::len(OP, "rays.batch", r, rays.batch.len())?;
        match rays.encoding {
            Some(e) => {
                validate::on_device(OP, "rays.encoding", dev, e)?;
                validate::len(OP, "rays.encoding", r * self.encoding_len(), e.len())
            }
            None if splats_encoding && self.mlp.is_none() => Err(Error::InvalidArgument {
                op: OP,
                what: "rays.encoding is required: it is the vector each ray splats".into(),
            }),
            None => Ok(()),
        }
    }

    fn check_grid(&self, buf: &Buffer<f32>, arg: &'static str) -> Result<()> {
        validate::on_device(OP, arg, &self.dev, buf)?;
        validate::len(OP, arg, self.out.len(), buf.len())
    }

    fn host_rays(&self, rays: &Rays) -> Result<HostRays> {
        host_rays(OP, rays, self.out.batch(), self.encoding_len())
    }
}
