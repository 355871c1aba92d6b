//! Rendering of triplane and voxel feature grids through a small MLP decoder, forward and
//! backward, with constant memory per ray (`design/triplane.md`; Lightplane's numerics).
//!
//! A [`Renderer`] is planned once for the grid shapes, the [`Decoder`] and the
//! [`RenderOptions`]. [`Renderer::forward`] marches every ray, samples the grid list (and the
//! optional color grid list) at each sample, runs the decoder and composites, writing per ray only
//! the features, the expected ray length and the negative log transmittance `Lambda_last`.
//! [`Renderer::backward`] takes incoming gradients of those three outputs and returns gradients
//! for the grids, the decoder's parameters and the rays' encodings by the reverse march of
//! `triplane.md`: every sample is recomputed, nothing per sample is stored.
//!
//! One departure from `triplane.md`: the backward pass takes nothing from the forward pass, not
//! even `Lambda_last`. It marches each ray forward once more for `Lambda_last` in its own
//! precision and then marches back. The reason is numeric: with background samples at the
//! default disparity of 1e-5 the last sample lies at `1e5 * far`, `Lambda_last` is 1e5 to 1e6,
//! and an f32 copy of it keeps the foreground's share (the part that matters) to within about
//! `1e-7 * Lambda_last`, an error of order one in every foreground transmittance. Measured on
//! the checks in `tests/render.rs`: recovering from the f32 value left gradients off by 1e-3 to
//! 100% (relative L2), against 1e-8 for the recomputed one.
//!
//! Backends: the CPU reference, wgpu and PTX (CUDA and the emulator) run forward and backward.
//! The GPU kernels march one ray per thread with the activations in a scratch buffer sized by
//! the threads of one launch (never by rays or samples), and keep the backward march's `Lambda`
//! in 64-bit fixed point so that subtracting a sample's optical depth undoes adding it exactly;
//! grid gradients by atomic adds. Decoder gradients: in PTX each block of 256 threads adds its
//! threads' into one accumulator (in shared memory when the parameters fit in 48 KiB, about
//! 12 000 of them, else in the block's slice of a global buffer), written once per block and
//! summed in block order afterwards; in WGSL, which has no float atomics, every 32 invocations
//! share a slice by compare-and-swap adds. llvmpipe (lavapipe) ends an invocation's loops past
//! 65 535 iterations: the WGSL marches split a sample that long over dispatches at its decoder
//! layers (the widest decoder, 128, runs there forward and backward). Two f32 forms the kernels
//! avoid because they lose the digits of a small quantity:
//! softplus's `log(1 + u)` (relative error up to `2^-24 / u`, 1e-3 at `x = -10`; they use `log1p`
//! by its series) and a sample's weight as the difference of two transmittances near 1 (they use
//! `T_{j-1} (1 - exp(-tau_j))`, `1 - exp(-tau)` by its series below 0.35: on rays of optical depth
//! about 1e-5 the difference was 24% off, relative L2, and the product is within 3e-7).
//!
//! The decoder's parameters are one flat f32 vector in Lightplane's layout (see [`Decoder`]); a
//! vector whose color head is padded to 16 outputs (what Lightplane's helpers write when fewer
//! than 16 color channels are rendered) is recognized by its length and accepted as it is, so a
//! Lightplane checkpoint loads without conversion; the padded outputs are never rendered and
//! their gradients are zero.
//!
//! ```
//! use trainkern::Device;
//! use trainkern::render::{Decoder, GridList, RenderOptions, RenderOutput, Renderer, Rays};
//!
//! let dev = Device::cpu();
//! let (b, res, c) = (1, 8, 16);
//! let grids = GridList::new(&[[b, 1, res, res, c], [b, res, 1, res, c], [b, res, res, 1, c]])?;
//! let values: Vec<f32> = (0..grids.len()).map(|i| ((i * 37 % 101) as f32 / 101.0) - 0.3).collect();
//! let decoder = Decoder { trunk_layers: 2, opacity_layers: 2, color_layers: 2, hidden: 16, color_channels: 3 };
//! let params = decoder.xavier_init(c, None, 0.0, 7)?;
//! let renderer = Renderer::new(&dev, &grids, None, decoder, RenderOptions { samples: 32, ..Default::default() })?;
//!
//! let rays = 2;
//! let origins = dev.upload(&[0.0f32, 0.0, -2.0, 0.5, 0.0, -2.0])?;
//! let directions = dev.upload(&[0.0f32, 0.0, 1.0, 0.0, 0.1, 1.0])?;
//! let (batch, near, far) = (dev.upload(&[0u32; 2])?, dev.upload(&[1.0f32; 2])?, dev.upload(&[3.0f32; 2])?);
//! let rays_in = Rays { origins: &origins, directions: &directions, batch: &batch, near: &near, far: &far, encoding: None };
//! let mut out = RenderOutput::zeros(&dev, rays, 3)?;
//! renderer.forward(&dev.upload(&values)?, None, &dev.upload(&params)?, &rays_in, &mut out)?;
//! let lambda = out.neg_log_transmittance.download()?;
//! assert!(lambda.iter().all(|l| *l > 0.0));
//! # Ok::<(), trainkern::Error>(())
//! ```
//!
//! Sizes: every MLP layer at most [`MAX_WIDTH`] wide (grid channels, hidden width, color
//! channels); at least two foreground samples per ray; any number of rays (none is a no-op that
//! writes nothing). Rays whose samples leave the grids are not errors: outside samples read zero
//! features (the decoder still runs on them, as in Lightplane).

pub(crate) mod cpu;
pub(crate) mod decoder;
pub(crate) mod grid;
mod helpers;
#[cfg(any(feature = "cuda", feature = "ptx-emu"))]
mod ptx;
pub mod reference;
#[cfg(any(feature = "wgpu", feature = "cuda", feature = "ptx-emu"))]
pub(crate) mod tables;
#[cfg(feature = "wgpu")]
mod wgpu;

pub use cpu::{HostGrads, HostOutput, HostRays};
pub use decoder::{Decoder, LIGHTPLANE_MIN_COLOR, MAX_WIDTH};
pub use grid::{GridList, Marching};
pub use helpers::{composite_background, harmonic_dim, harmonic_embedding};

use crate::backend::Device;
#[cfg(any(feature = "cuda", feature = "ptx-emu"))]
use crate::backend::ptx::PtxDevice;
use crate::buffer::{Buffer, Float, Storage};
use crate::{Error, Result, validate};
use decoder::Layout;

const OP: &str = "render";

/// The RNG stream tag of the opacity noise ("RNDR"), xored with the caller's stream.
pub(crate) const NOISE_TAG: u64 = (u32::from_be_bytes(*b"RNDR") as u64) << 32;

/// Gaussian noise added to the raw opacity before the softplus: `sigma * z(i)` with `i = ray *
/// (samples + samples_inf) + j` from the crate's RNG under `seed` and stream `stream ^ "RNDR"
/// << 32`, so the backward pass regenerates it exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OpacityNoise {
    pub sigma: f32,
    pub seed: u64,
    pub stream: u64,
}

/// How rays are marched and composited.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RenderOptions {
    /// Foreground samples from `near` to `far`, both included (at least 2).
    pub samples: usize,
    /// Background samples beyond `far`, evenly spaced in inverse depth.
    pub samples_inf: usize,
    /// Scales every sample's optical depth: `tau = gain * delta * softplus(o_raw + noise)`.
    pub gain: f32,
    /// The disparity of the last background sample, in `(0, 1)` (Lightplane's default 1e-5).
    pub disparity_at_inf: f32,
    /// MERF's contraction of every point into the cube, then halving.
    pub contract: bool,
    /// Zero features at points outside `[-1, 1]^3`.
    pub mask_out_of_bounds: bool,
    pub noise: Option<OpacityNoise>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            samples: 64,
            samples_inf: 0,
            gain: 1.0,
            disparity_at_inf: 1e-5,
            contract: false,
            mask_out_of_bounds: false,
            noise: None,
        }
    }
}

impl RenderOptions {
    pub(crate) fn check(&self) -> Result<()> {
        self.marching().check(OP)?;
        validate::finite_non_negative(OP, "gain", self.gain)?;
        if let Some(n) = self.noise {
            validate::finite_non_negative(OP, "noise.sigma", n.sigma)?;
        }
        Ok(())
    }

    pub fn marching(&self) -> Marching {
        Marching {
            samples: self.samples,
            samples_inf: self.samples_inf,
            disparity_at_inf: f64::from(self.disparity_at_inf),
        }
    }
}

/// The rays of one call, `R` of them, all f32 except `batch`: `origins` and `directions` are
/// `R x 3` (directions need not be unit), `batch` picks each ray's grid in the batch, `near <=
/// far`, and `encoding` (`R x E`, `E` = [`Renderer::encoding_len`]) is added to the color head's
/// input; none means zeros.
#[derive(Clone, Copy)]
pub struct Rays<'a> {
    pub origins: &'a Buffer<f32>,
    pub directions: &'a Buffer<f32>,
    pub batch: &'a Buffer<u32>,
    pub near: &'a Buffer<f32>,
    pub far: &'a Buffer<f32>,
    pub encoding: Option<&'a Buffer<f32>>,
}

impl Rays<'_> {
    pub fn len(&self) -> usize {
        self.near.len()
    }

    pub fn is_empty(&self) -> bool {
        self.near.is_empty()
    }
}

/// The buffers of [`Rays`], owned: what a caller uploads once and renders or splats with many
/// times.
pub struct RayBuffers {
    pub origins: Buffer<f32>,
    pub directions: Buffer<f32>,
    pub batch: Buffer<u32>,
    pub near: Buffer<f32>,
    pub far: Buffer<f32>,
    pub encoding: Option<Buffer<f32>>,
}

impl RayBuffers {
    /// The rays' host arrays on `dev` (shapes as in [`Rays`]; the ops check them).
    pub fn upload(
        dev: &Device,
        origins: &[f32],
        directions: &[f32],
        batch: &[u32],
        near: &[f32],
        far: &[f32],
        encoding: Option<&[f32]>,
    ) -> Result<RayBuffers> {
        Ok(RayBuffers {
            origins: dev.upload(origins)?,
            directions: dev.upload(directions)?,
            batch: dev.upload(batch)?,
            near: dev.upload(near)?,
            far: dev.upload(far)?,
            encoding: encoding.map(|e| dev.upload(e)).transpose()?,
        })
    }

    pub fn rays(&self) -> Rays<'_> {
        Rays {
            origins: &self.origins,
            directions: &self.directions,
            batch: &self.batch,
            near: &self.near,
            far: &self.far,
            encoding: self.encoding.as_ref(),
        }
    }
}

/// Per-ray results of the forward pass (also the shape of the backward pass's incoming
/// gradients): `features` is `R x K`.
pub struct RenderOutput {
    pub features: Buffer<f32>,
    pub ray_length: Buffer<f32>,
    pub neg_log_transmittance: Buffer<f32>,
}

impl RenderOutput {
    /// Zeroed outputs for `rays` rays and `channels` color channels.
    pub fn zeros(dev: &Device, rays: usize, channels: usize) -> Result<RenderOutput> {
        let len = rays
            .checked_mul(channels)
            .ok_or_else(|| Error::LimitExceeded {
                what: format!("{OP}: rays x color channels"),
                requested: rays as u64,
                max: (usize::MAX / channels.max(1)) as u64,
            })?;
        Ok(RenderOutput {
            features: dev.zeros(len)?,
            ray_length: dev.zeros(rays)?,
            neg_log_transmittance: dev.zeros(rays)?,
        })
    }
}

/// Gradients from [`Renderer::backward`], all f32: the grid lists' (the grids' shapes, whatever
/// their storage type), the decoder parameters' (the vector's length) and the encodings' (`R x
/// E`, present even when the rays had none).
pub struct RenderGrads {
    pub grids: Buffer<f32>,
    pub color_grids: Option<Buffer<f32>>,
    pub params: Buffer<f32>,
    pub encoding: Buffer<f32>,
}

/// Rendering planned for one set of grid shapes, decoder and options.
pub struct Renderer {
    dev: Device,
    grids: GridList,
    color: Option<GridList>,
    decoder: Decoder,
    opts: RenderOptions,
}

impl Renderer {
    /// Checks the decoder against the grids' channel counts and the options.
    pub fn new(
        dev: &Device,
        grids: &GridList,
        color: Option<&GridList>,
        decoder: Decoder,
        opts: RenderOptions,
    ) -> Result<Renderer> {
        if let Some(cg) = color
            && cg.batch() != grids.batch()
        {
            return Err(Error::Shape {
                op: OP,
                arg: "color_grids",
                expected: format!("batch {} like the grids", grids.batch()),
                got: format!("batch {}", cg.batch()),
            });
        }
        decoder.check(grids.channels(), color.map(GridList::channels))?;
        opts.check()?;
        Ok(Renderer {
            dev: dev.clone(),
            grids: grids.clone(),
            color: color.cloned(),
            decoder,
            opts,
        })
    }

    pub fn decoder(&self) -> Decoder {
        self.decoder
    }

    pub fn options(&self) -> &RenderOptions {
        &self.opts
    }

    /// The length of `mlp_params` (unpadded; the padded Lightplane length is accepted too).
    pub fn params_len(&self) -> usize {
        self.decoder.params_len(
            self.grids.channels(),
            self.color.as_ref().map(GridList::channels),
        )
    }

    /// The width `E` of each ray's encoding: the color head's input.
    pub fn encoding_len(&self) -> usize {
        self.color
            .as_ref()
            .map_or(self.decoder.hidden, GridList::channels)
    }

    fn layout(&self, params: usize) -> Result<Layout> {
        self.decoder.layout(
            self.grids.channels(),
            self.color.as_ref().map(GridList::channels),
            params,
        )
    }

    /// Renders `rays` into `out` (overwritten).
    pub fn forward<T: Float>(
        &self,
        grids: &Buffer<T>,
        color_grids: Option<&Buffer<T>>,
        params: &Buffer<f32>,
        rays: &Rays,
        out: &mut RenderOutput,
    ) -> Result<()> {
        let lay = self.check_inputs(grids, color_grids, params, rays)?;
        let r = rays.len();
        self.check_output("out", out, r)?;
        if r == 0 {
            return Ok(());
        }
        match &grids.storage {
            Storage::Cpu(g) => {
                let host = self.host_rays(rays)?;
                let p = widen(params)?;
                let cg = color_grids
                    .map(|b| b.as_host_slice())
                    .map(|s| s.unwrap_or(&[]));
                let scene = self.scene(&lay, g.as_slice(), cg, &p);
                let res = scene.forward(&host);
                narrow_into(&res.features, &mut out.features)?;
                narrow_into(&res.ray_length, &mut out.ray_length)?;
                narrow_into(&res.neg_log_transmittance, &mut out.neg_log_transmittance)
            }
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => wgpu::forward(self, &lay, grids, color_grids, params, rays, out),
            #[allow(unreachable_patterns)]
            _ => {
                #[cfg(any(feature = "cuda", feature = "ptx-emu"))]
                if let Some(dev) = PtxDevice::of(&self.dev) {
                    return ptx::forward(&dev, self, &lay, grids, color_grids, params, rays, out);
                }
                Err(self.unsupported())
            }
        }
    }

    /// Gradients of `<grad_out, forward(..)>` into `grads` (overwritten). Nothing from the
    /// forward pass is needed: see the module docs for why not even `Lambda_last`.
    pub fn backward<T: Float>(
        &self,
        grids: &Buffer<T>,
        color_grids: Option<&Buffer<T>>,
        params: &Buffer<f32>,
        rays: &Rays,
        grad_out: &RenderOutput,
        grads: &mut RenderGrads,
    ) -> Result<()> {
        let lay = self.check_inputs(grids, color_grids, params, rays)?;
        let r = rays.len();
        self.check_output("grad_out", grad_out, r)?;
        self.check_grads(grads, r, params.len())?;
        match &grids.storage {
            Storage::Cpu(g) => {
                let host = self.host_rays(rays)?;
                let p = widen(params)?;
                let cg = color_grids
                    .map(|b| b.as_host_slice())
                    .map(|s| s.unwrap_or(&[]));
                let scene = self.scene(&lay, g.as_slice(), cg, &p);
                let res = scene.backward(
                    &host,
                    &widen(&grad_out.features)?,
                    &widen(&grad_out.ray_length)?,
                    &widen(&grad_out.neg_log_transmittance)?,
                );
                narrow_into(&res.grids, &mut grads.grids)?;
                if let (Some(src), Some(dst)) = (&res.color_grids, grads.color_grids.as_mut()) {
                    narrow_into(src, dst)?;
                }
                narrow_into(&res.params, &mut grads.params)?;
                narrow_into(&res.encoding, &mut grads.encoding)
            }
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => wgpu::backward(
                self,
                &lay,
                grids,
                color_grids,
                params,
                rays,
                grad_out,
                grads,
            ),
            #[allow(unreachable_patterns)]
            _ => {
                #[cfg(any(feature = "cuda", feature = "ptx-emu"))]
                if let Some(dev) = PtxDevice::of(&self.dev) {
                    return ptx::backward(
                        &dev,
                        self,
                        &lay,
                        grids,
                        color_grids,
                        params,
                        rays,
                        grad_out,
                        grads,
                    );
                }
                Err(self.unsupported())
            }
        }
    }

    /// Zeroed gradient buffers of the right shapes for `rays` rays and `params_len` parameters.
    pub fn grads_zeros(&self, rays: usize, params_len: usize) -> Result<RenderGrads> {
        Ok(RenderGrads {
            grids: self.dev.zeros(self.grids.len())?,
            color_grids: match &self.color {
                Some(cg) => Some(self.dev.zeros(cg.len())?),
                None => None,
            },
            params: self.dev.zeros(params_len)?,
            encoding: self.dev.zeros(rays * self.encoding_len())?,
        })
    }

    fn unsupported(&self) -> Error {
        Error::Unsupported {
            op: OP,
            backend: self.dev.backend().name(),
            what: "not built for this backend".into(),
        }
    }

    fn scene<'a, G: cpu::GridRead + ?Sized>(
        &'a self,
        lay: &'a Layout,
        grids: &'a G,
        color: Option<&'a G>,
        params: &'a [f64],
    ) -> cpu::Scene<'a, G> {
        cpu::Scene {
            grids: cpu::Grids {
                list: &self.grids,
                data: grids,
            },
            color: self
                .color
                .as_ref()
                .zip(color)
                .map(|(list, data)| cpu::Grids { list, data }),
            lay,
            params,
            opts: &self.opts,
        }
    }

    fn check_inputs<T: Float>(
        &self,
        grids: &Buffer<T>,
        color_grids: Option<&Buffer<T>>,
        params: &Buffer<f32>,
        rays: &Rays,
    ) -> Result<Layout> {
        let dev = &self.dev;
        validate::on_device(OP, "grids", dev, grids)?;
        validate::len(OP, "grids", self.grids.len(), grids.len())?;
        match (&self.color, color_grids) {
            (Some(list), Some(cg)) => {
                validate::on_device(OP, "color_grids", dev, cg)?;
                validate::len(OP, "color_grids", list.len(), cg.len())?;
            }
            (None, None) => {}
            (want, _) => {
                return Err(Error::InvalidArgument {
                    op: OP,
                    what: format!(
                        "color_grids must be given exactly when the renderer was planned with a color grid list (it was {})",
                        if want.is_some() { "" } else { "not" }
                    ),
                });
            }
        }
        validate::on_device(OP, "mlp_params", dev, params)?;
        let lay = self.layout(params.len())?;
        let r = rays.len();
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
        if let Some(e) = rays.encoding {
            validate::on_device(OP, "rays.encoding", dev, e)?;
            validate::len(OP, "rays.encoding", r * lay.encoding_len(), e.len())?;
        }
        Ok(lay)
    }

    fn check_output(&self, arg: &'static str, out: &RenderOutput, r: usize) -> Result<()> {
        let k = self.decoder.color_channels;
        for (name, buf, per) in [
            (".features", &out.features, k),
            (".ray_length", &out.ray_length, 1),
            (".neg_log_transmittance", &out.neg_log_transmittance, 1),
        ] {
            let _ = name;
            validate::on_device(OP, arg, &self.dev, buf)?;
            validate::len(OP, arg, r * per, buf.len())?;
        }
        Ok(())
    }

    fn check_grads(&self, g: &RenderGrads, r: usize, params: usize) -> Result<()> {
        let dev = &self.dev;
        validate::on_device(OP, "grads.grids", dev, &g.grids)?;
        validate::len(OP, "grads.grids", self.grids.len(), g.grids.len())?;
        match (&self.color, &g.color_grids) {
            (Some(list), Some(b)) => {
                validate::on_device(OP, "grads.color_grids", dev, b)?;
                validate::len(OP, "grads.color_grids", list.len(), b.len())?;
            }
            (None, None) => {}
            _ => {
                return Err(Error::InvalidArgument {
                    op: OP,
                    what:
                        "grads.color_grids must be present exactly when there is a color grid list"
                            .into(),
                });
            }
        }
        validate::on_device(OP, "grads.params", dev, &g.params)?;
        validate::len(OP, "grads.params", params, g.params.len())?;
        validate::on_device(OP, "grads.encoding", dev, &g.encoding)?;
        validate::len(
            OP,
            "grads.encoding",
            r * self.encoding_len(),
            g.encoding.len(),
        )
    }

    fn host_rays(&self, rays: &Rays) -> Result<HostRays> {
        host_rays(OP, rays, self.grids.batch(), self.encoding_len())
    }
}

/// The rays on the host in f64, each checked: batch in range, finite values, `near <= far`
/// (`op` names the caller in errors).
pub(crate) fn host_rays(
    op: &'static str,
    rays: &Rays,
    batch: usize,
    encoding_len: usize,
) -> Result<HostRays> {
    let host = HostRays {
        origins: widen(rays.origins)?,
        directions: widen(rays.directions)?,
        batch: rays.batch.download()?,
        near: widen(rays.near)?,
        far: widen(rays.far)?,
        encoding: rays.encoding.map(widen).transpose()?,
    };
    reference::check_rays(op, &host, batch, encoding_len)?;
    Ok(host)
}

pub(crate) fn widen(b: &Buffer<f32>) -> Result<Vec<f64>> {
    Ok(b.download()?.into_iter().map(f64::from).collect())
}

pub(crate) fn narrow_into(src: &[f64], dst: &mut Buffer<f32>) -> Result<()> {
    let v: Vec<f32> = src.iter().map(|&x| x as f32).collect();
    dst.write(&v)
}
