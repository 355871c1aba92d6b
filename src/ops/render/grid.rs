//! Grid lists, trilinear sampling with its corner weights, and the samples along a ray
//! (`design/triplane.md`, "Grids" and "Rays and samples"). Shared by rendering and splatting:
//! splatting is the adjoint of the sampling here, with the same corners and weights.

use crate::{Error, Result};

/// The shapes `[B, D, H, W, C]` (channels-last) of a list of grids stored one after another in
/// one flat buffer. Every grid covers the cube `[-1, 1]^3`; `x` indexes `W`, `y` `H`, `z` `D`. A
/// grid with exactly one of `D, H, W` equal to 1 is a plane (a triplane is `[B,1,H,W,C]`,
/// `[B,D,1,W,C]`, `[B,D,H,1,C]`); a grid with two or three such axes is rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridList {
    shapes: Vec<[usize; 5]>,
    offsets: Vec<usize>,
    len: usize,
}

impl GridList {
    /// Checks the shapes: at least one grid, no zero dimension, one batch size and one channel
    /// count for all, at most one singleton spatial axis per grid, sizes that fit in 63 bits.
    /// Errors name `GridList::new` and its argument `shapes`.
    pub fn new(shapes: &[[usize; 5]]) -> Result<GridList> {
        Self::named("GridList::new", "shapes", shapes)
    }

    /// [`GridList::new`] with `op` and `arg` naming the caller in errors.
    pub(crate) fn named(
        op: &'static str,
        arg: &'static str,
        shapes: &[[usize; 5]],
    ) -> Result<GridList> {
        let shape_err = |expected: String, got: String| Error::Shape {
            op,
            arg,
            expected,
            got,
        };
        let Some(first) = shapes.first() else {
            return Err(shape_err(
                "at least one grid".into(),
                "an empty list".into(),
            ));
        };
        let mut offsets = Vec::with_capacity(shapes.len());
        let mut len = 0usize;
        for (i, s) in shapes.iter().enumerate() {
            if s.contains(&0) {
                return Err(shape_err(
                    format!("grid {i} with no zero dimension"),
                    format!("{s:?}"),
                ));
            }
            if s[0] != first[0] || s[4] != first[4] {
                return Err(shape_err(
                    format!(
                        "grid {i} with batch {} and {} channels like grid 0",
                        first[0], first[4]
                    ),
                    format!("{s:?}"),
                ));
            }
            if s[1..4].iter().filter(|&&n| n == 1).count() > 1 {
                return Err(shape_err(
                    format!(
                        "grid {i} as a voxel grid or a plane (at most one of D, H, W equal to 1)"
                    ),
                    format!("{s:?}"),
                ));
            }
            let n = s
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .and_then(|n| n.checked_add(len).map(|end| (n, end)));
            let Some((_, end)) = n.filter(|&(_, end)| end <= i64::MAX as usize) else {
                return Err(Error::LimitExceeded {
                    what: format!("{op}: elements of {arg}"),
                    requested: u64::MAX,
                    max: i64::MAX as u64,
                });
            };
            offsets.push(len);
            len = end;
        }
        Ok(GridList {
            shapes: shapes.to_vec(),
            offsets,
            len,
        })
    }

    pub fn shapes(&self) -> &[[usize; 5]] {
        &self.shapes
    }

    /// Element offset of grid `i` in the flat buffer.
    pub fn offset(&self, i: usize) -> usize {
        self.offsets[i]
    }

    /// Elements of all grids together (the flat buffer's length).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a list holds at least one grid of at least one element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn batch(&self) -> usize {
        self.shapes[0][0]
    }

    pub fn channels(&self) -> usize {
        self.shapes[0][4]
    }

    /// Flat element offset of cell `cell` (from [`corners`]) of batch `b` in grid `i`, channel 0.
    pub(crate) fn cell_offset(&self, i: usize, b: usize, cell: usize) -> usize {
        let [_, d, h, w, c] = self.shapes[i];
        self.offsets[i] + (b * d * h * w + cell) * c
    }
}

/// The up to eight cells around `p` in a `D x H x W` grid and their weights: `(z * H + y) * W +
/// x` and the product of the per-axis weights. Corners outside the grid come back with weight
/// 0 (and cell 0), so a caller can loop over all eight.
pub(crate) fn corners(dhw: [usize; 3], p: [f64; 3]) -> [(usize, f64); 8] {
    // Per axis in x, y, z order: the lower index, its weight, and whether each corner is inside.
    let axis = |n: usize, x: f64| -> (i64, f64) {
        if n == 1 {
            return (0, 0.0);
        }
        let ix = ((x + 1.0) / 2.0) * n as f64 - 0.5;
        if !ix.is_finite() {
            return (-2, 0.0); // both corners outside
        }
        // Far outside the grid both corners are outside; clamping keeps the index small.
        let fl = ix.floor().clamp(-2.0, n as f64 + 1.0);
        (fl as i64, ix - ix.floor())
    };
    let [d, h, w] = dhw;
    let ax = [axis(w, p[0]), axis(h, p[1]), axis(d, p[2])];
    let n = [w as i64, h as i64, d as i64];
    let mut out = [(0usize, 0.0f64); 8];
    for (k, slot) in out.iter_mut().enumerate() {
        let mut idx = [0i64; 3];
        let mut weight = 1.0;
        for a in 0..3 {
            let hi = (k >> a) & 1 == 1;
            let (i0, f) = ax[a];
            idx[a] = i0 + i64::from(hi);
            weight *= if hi { f } else { 1.0 - f };
        }
        let inside = (0..3).all(|a| idx[a] >= 0 && idx[a] < n[a]);
        if inside && weight != 0.0 {
            *slot = (((idx[2] * n[1] + idx[1]) * n[0] + idx[0]) as usize, weight);
        }
    }
    out
}

/// MERF's contraction followed by the halving (`triplane.md`): inside the unit cube a point
/// only halves; outside, the largest component `m` becomes `(2 - 1/m) sign` and the others
/// divide by `m`, so everything lands in `[-1, 1]`.
pub(crate) fn contract(p: [f64; 3]) -> [f64; 3] {
    let m = p.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    let mut q = p;
    if m > 1.0 {
        for x in q.iter_mut() {
            *x = if x.abs() == m {
                (2.0 - 1.0 / x.abs()) * x.signum()
            } else {
                *x / m
            };
        }
    }
    q.map(|x| 0.5 * x)
}

/// Whether the point is inside the closed cube `[-1, 1]^3`.
pub(crate) fn in_bounds(p: [f64; 3]) -> bool {
    p.iter().all(|x| x.abs() <= 1.0)
}

/// Where the samples of one ray lie: `n` from `near` to `far` both included, each with the
/// spacing as its length, then `n_inf` background samples evenly spaced in inverse depth down
/// to disparity `disparity_at_inf`, each as long as the gap to the one before.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Marching {
    pub samples: usize,
    pub samples_inf: usize,
    pub disparity_at_inf: f64,
}

impl Marching {
    /// At least two foreground samples, a total that fits in 32 bits, a disparity in (0, 1);
    /// `op` names the caller in errors.
    pub(crate) fn check(&self, op: &'static str) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument { op, what });
        if self.samples < 2 {
            return bad(format!(
                "samples must be >= 2 (both ends of [near, far] are sampled), got {}",
                self.samples
            ));
        }
        if self
            .samples
            .checked_add(self.samples_inf)
            .is_none_or(|n| n > u32::MAX as usize)
        {
            return bad(format!(
                "samples + samples_inf must fit in 32 bits, got {} + {}",
                self.samples, self.samples_inf
            ));
        }
        let d = self.disparity_at_inf;
        if !(d > 0.0 && d < 1.0) {
            return bad(format!("disparity_at_inf must be in (0, 1), got {d}"));
        }
        Ok(())
    }

    pub fn total(&self) -> usize {
        self.samples + self.samples_inf
    }

    /// `(t_j, delta_j)` of sample `j`.
    pub fn at(&self, near: f64, far: f64, j: usize) -> (f64, f64) {
        let n = self.samples;
        if j < n {
            let delta = (far - near) / (n - 1) as f64;
            return (near + (far - near) * j as f64 / (n - 1) as f64, delta);
        }
        let k = j - n;
        // far / ((d - 1) (k + 1) / m + 1), with the denominator summed from two positive
        // terms: in f32 the literal form loses three digits to cancellation at d = 1e-5.
        let m = self.samples_inf as f64;
        let t =
            |k: usize| far * m / ((m - (k + 1) as f64) + self.disparity_at_inf * (k + 1) as f64);
        let prev = if k == 0 { far } else { t(k - 1) };
        let tk = t(k);
        (tk, tk - prev)
    }
}
