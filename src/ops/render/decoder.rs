//! The decoder's three MLPs and where each weight and bias sits in the flat `mlp_params`
//! vector (`design/triplane.md`, "Decoder"): trunk, then opacity head, then color head; within
//! each MLP all weight matrices (`(in, out)` row-major, layer 0 first), then all bias vectors.

use crate::{Error, Result};

use super::OP;

/// The widest layer (input, hidden or output) any MLP may have. GPU kernels keep one sample's
/// activations in fast on-chip memory, so the bound is part of the contract.
pub const MAX_WIDTH: usize = 128;

/// Lightplane pads a color head with fewer outputs than this to this many (zero columns).
pub const LIGHTPLANE_MIN_COLOR: usize = 16;

/// The shape of the decoder: layer counts of the three MLPs, their common hidden width and the
/// number of rendered color channels. The input widths come from the grids.
///
/// With one grid list the trunk maps the sampled feature (`C` channels) through
/// `trunk_layers >= 1` layers of width `hidden` (ReLU after each, the last included); the
/// opacity head maps that through `opacity_layers` layers to one output, the color head
/// through `color_layers` layers to `color_channels`. With a separate color grid list there is
/// no trunk (`trunk_layers = 0`): the opacity head reads `relu(f)` (`C` wide) and the color head
/// `relu(f_color) + e` (the color grid's channel count wide).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoder {
    pub trunk_layers: usize,
    pub opacity_layers: usize,
    pub color_layers: usize,
    pub hidden: usize,
    pub color_channels: usize,
}

/// One MLP inside the flat vector: its widths (`dims[0]` in, `dims[l + 1]` out of layer `l`),
/// and the offsets of each layer's weights and biases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mlp {
    pub dims: Vec<usize>,
    pub w: Vec<usize>,
    pub b: Vec<usize>,
}

impl Mlp {
    /// Lays out an MLP of `layers` layers from `input` through `hidden` to `output`, starting at
    /// `start`; returns it and the offset just past it.
    pub(crate) fn at(
        start: usize,
        layers: usize,
        input: usize,
        hidden: usize,
        output: usize,
    ) -> (Mlp, usize) {
        let mut dims = vec![input];
        for l in 0..layers {
            dims.push(if l + 1 == layers { output } else { hidden });
        }
        let mut at = start;
        let mut w = Vec::with_capacity(layers);
        for l in 0..layers {
            w.push(at);
            at += dims[l] * dims[l + 1];
        }
        let mut b = Vec::with_capacity(layers);
        for l in 0..layers {
            b.push(at);
            at += dims[l + 1];
        }
        (Mlp { dims, w, b }, at)
    }

    pub fn layers(&self) -> usize {
        self.w.len()
    }

    /// Xavier-uniform weights with ReLU's gain, `U(-b, b)` with `b = sqrt(2) sqrt(6 / (in +
    /// out))`, drawn from the crate's RNG by each weight's index in `p` (stream "XAVR"); biases
    /// stay as they are.
    pub(crate) fn xavier_fill(&self, p: &mut [f32], seed: u64) {
        let stream = u64::from(u32::from_be_bytes(*b"XAVR")) << 32;
        for l in 0..self.layers() {
            let (n_in, n_out) = (self.dims[l], self.dims[l + 1]);
            let bound = 2f64.sqrt() * (6.0 / (n_in + n_out) as f64).sqrt();
            for k in 0..n_in * n_out {
                let at = self.w[l] + k;
                let u = crate::rng::uniform(crate::rng::word(seed, stream, at as u64)) as f64;
                p[at] = (bound * (2.0 * u - 1.0)) as f32;
            }
        }
    }

    pub fn input(&self) -> usize {
        self.dims[0]
    }

    pub fn output(&self) -> usize {
        self.dims[self.dims.len() - 1]
    }
}

/// The decoder laid out for given input widths: every offset a kernel needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub trunk: Mlp,
    pub opacity: Mlp,
    pub color: Mlp,
    /// The color channels rendered (`Decoder::color_channels`); the color head may have more
    /// outputs when the vector is padded the Lightplane way, and those are dropped.
    pub color_channels: usize,
    /// Length of `mlp_params`.
    pub len: usize,
}

impl Layout {
    /// Widths of the opacity and color heads' inputs and the encoding's length.
    pub fn encoding_len(&self) -> usize {
        self.color.input()
    }
}

impl Decoder {
    /// Checks the decoder against the grids' channel counts (`color_grid_channels` when there
    /// is a separate color grid list).
    pub(crate) fn check(
        &self,
        grid_channels: usize,
        color_grid_channels: Option<usize>,
    ) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument { op: OP, what });
        match color_grid_channels {
            None if self.trunk_layers == 0 => {
                return bad(
                    "decoder.trunk_layers must be >= 1 without a separate color grid list".into(),
                );
            }
            Some(_) if self.trunk_layers != 0 => {
                return bad(format!(
                    "decoder.trunk_layers must be 0 with a separate color grid list, got {}",
                    self.trunk_layers
                ));
            }
            _ => {}
        }
        if self.opacity_layers == 0 || self.color_layers == 0 {
            return bad(format!(
                "decoder.opacity_layers and decoder.color_layers must be >= 1, got {} and {}",
                self.opacity_layers, self.color_layers
            ));
        }
        for (name, w) in [
            ("decoder.hidden", self.hidden),
            ("decoder.color_channels", self.color_channels),
            ("the grids' channel count", grid_channels),
            (
                "the color grids' channel count",
                color_grid_channels.unwrap_or(1),
            ),
        ] {
            if w == 0 || w > MAX_WIDTH {
                return bad(format!("{name} must be in 1..={MAX_WIDTH}, got {w}"));
            }
        }
        Ok(())
    }

    /// The layout with the color head's last layer `color_out` wide.
    fn layout_with(&self, c: usize, cc: Option<usize>, color_out: usize) -> Layout {
        let (trunk, at) = Mlp::at(0, self.trunk_layers, c, self.hidden, self.hidden);
        let head_in = if cc.is_some() { c } else { self.hidden };
        let (opacity, at) = Mlp::at(at, self.opacity_layers, head_in, self.hidden, 1);
        let color_in = cc.unwrap_or(self.hidden);
        let (color, len) = Mlp::at(at, self.color_layers, color_in, self.hidden, color_out);
        Layout {
            trunk,
            opacity,
            color,
            color_channels: self.color_channels,
            len,
        }
    }

    /// The number of f32 values of `mlp_params` for these grids (unpadded).
    pub fn params_len(&self, grid_channels: usize, color_grid_channels: Option<usize>) -> usize {
        self.layout_with(grid_channels, color_grid_channels, self.color_channels)
            .len
    }

    /// The layout that matches a vector of `len` values: ours, or Lightplane's with the color
    /// head padded to 16 outputs.
    pub(crate) fn layout(&self, c: usize, cc: Option<usize>, len: usize) -> Result<Layout> {
        self.check(c, cc)?;
        let plain = self.layout_with(c, cc, self.color_channels);
        if plain.len == len {
            return Ok(plain);
        }
        if self.color_channels < LIGHTPLANE_MIN_COLOR {
            let padded = self.layout_with(c, cc, LIGHTPLANE_MIN_COLOR);
            if padded.len == len {
                return Ok(padded);
            }
            return Err(Error::Shape {
                op: OP,
                arg: "mlp_params",
                expected: format!(
                    "{} values ({} with the color head padded to {LIGHTPLANE_MIN_COLOR} outputs)",
                    plain.len, padded.len
                ),
                got: format!("{len} values"),
            });
        }
        Err(Error::Shape {
            op: OP,
            arg: "mlp_params",
            expected: format!("{} values", plain.len),
            got: format!("{len} values"),
        })
    }

    /// Xavier-uniform weights with the ReLU gain (`bound = sqrt(2) * sqrt(6 / (in + out))`),
    /// zero biases except the opacity head's last, which is `opacity_bias` (Lightplane's
    /// initialization; its renderer module uses -5 so a fresh field starts nearly empty).
    /// Unpadded layout; deterministic in `seed` (the crate's RNG, stream "XAVR").
    pub fn xavier_init(
        &self,
        grid_channels: usize,
        color_grid_channels: Option<usize>,
        opacity_bias: f32,
        seed: u64,
    ) -> Result<Vec<f32>> {
        self.check(grid_channels, color_grid_channels)?;
        let lay = self.layout_with(grid_channels, color_grid_channels, self.color_channels);
        let mut p = vec![0.0f32; lay.len];
        for mlp in [&lay.trunk, &lay.opacity, &lay.color] {
            mlp.xavier_fill(&mut p, seed);
        }
        let last = lay.opacity.layers() - 1;
        p[lay.opacity.b[last]] = opacity_bias;
        Ok(p)
    }
}
