//! `trainkern run clip` and `trainkern run ghost-norms`: the clipping ops on `.npy` files, so a
//! user can compare with Opacus or jax_privacy array by array.

use std::path::{Path, PathBuf};

use half::{bf16, f16};
use trainkern::clip::{Bounds, ClipNoise, ClipOptions, ClipRule, Clipper, GhostShape, ghost_norms};
use trainkern::{DType, Device, Error, Float, Result};

use crate::npy::{self, io};

/// The flags of `trainkern run clip`.
pub struct ClipArgs {
    pub grads: PathBuf,
    pub clip_norm: Option<f32>,
    pub rule: ClipRule,
    pub noise: Option<ClipNoise>,
    pub scale: f32,
    pub groups: Option<PathBuf>,
    pub group_norms: Option<PathBuf>,
    pub dtype: Option<DType>,
    pub out_sum: PathBuf,
    pub out_norms: PathBuf,
}

fn bad(op: &'static str, what: String) -> Error {
    Error::InvalidArgument { op, what }
}

/// The storage type of an array: the flag, else f16 for `<f2` and f32 for the rest.
fn storage_type(flag: Option<DType>, a: &npy::Array) -> DType {
    flag.unwrap_or(if a.descr == "<f2" {
        DType::F16
    } else {
        DType::F32
    })
}

pub fn write_f32(path: &Path, shape: &[u64], data: &[f32]) -> Result<()> {
    use npyz::WriterBuilder;
    let file = std::fs::File::create(path).map_err(io(path))?;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(io(path))?;
    w.extend(data.iter().copied()).map_err(io(path))?;
    w.finish().map_err(io(path))
}

/// Run the clip; returns the JSON line to print.
pub fn run_clip(dev: &Device, a: &ClipArgs) -> Result<String> {
    const OP: &str = "run clip";
    let g = npy::read(&a.grads)?;
    let batch = *g.shape.first().ok_or_else(|| {
        bad(
            OP,
            format!("{}: --grads must have a batch axis", a.grads.display()),
        )
    })? as usize;
    let d: usize = g.shape[1..].iter().map(|&x| x as usize).product();
    let offsets: Vec<usize> = match &a.groups {
        Some(p) => npy::read(p)?.data.iter().map(|&x| x as usize).collect(),
        None => vec![0, d],
    };
    if offsets.last() != Some(&d) {
        return Err(bad(
            OP,
            format!(
                "--groups must end at d = {d} (the columns of --grads), ends at {:?}",
                offsets.last()
            ),
        ));
    }
    let l = offsets.len().saturating_sub(1);
    let bounds: Vec<f32> = match (&a.group_norms, a.clip_norm) {
        (Some(p), None) => npy::read(p)?.data.iter().map(|&x| x as f32).collect(),
        (None, Some(c)) => vec![c; l],
        _ => {
            return Err(bad(
                OP,
                "give exactly one of --clip-norm and --group-norms".into(),
            ));
        }
    };
    let opts = ClipOptions {
        rule: a.rule,
        noise: a.noise,
        scale: a.scale,
    };
    let (sum, norms, counts) = match storage_type(a.dtype, &g) {
        DType::F16 => clip_as::<f16>(dev, &g.data, batch, &offsets, &bounds, &opts)?,
        DType::BF16 => clip_as::<bf16>(dev, &g.data, batch, &offsets, &bounds, &opts)?,
        _ => clip_as::<f32>(dev, &g.data, batch, &offsets, &bounds, &opts)?,
    };
    write_f32(&a.out_sum, &[d as u64], &sum)?;
    let shape: Vec<u64> = match a.groups {
        Some(_) => vec![batch as u64, l as u64],
        None => vec![batch as u64],
    };
    write_f32(&a.out_norms, &shape, &norms)?;
    Ok(format!(
        "{{\"clipped\": {}, \"nonfinite\": {}}}",
        counts.clipped, counts.nonfinite
    ))
}

type ClipResult = (Vec<f32>, Vec<f32>, trainkern::clip::ClipCounts);

fn clip_as<T: Float>(
    dev: &Device,
    data: &[f64],
    batch: usize,
    offsets: &[usize],
    bounds: &[f32],
    opts: &ClipOptions,
) -> Result<ClipResult> {
    let host: Vec<T> = data.iter().map(|&x| T::from_f32(x as f32)).collect();
    let mut clipper = Clipper::grouped(dev, batch, offsets)?;
    let grads = dev.upload(&host)?;
    let mut sum = dev.zeros(clipper.dim())?;
    let mut norms = dev.zeros(batch * clipper.groups())?;
    clipper.run(&grads, Bounds::Host(bounds), opts, &mut sum, &mut norms)?;
    Ok((sum.download()?, norms.download()?, clipper.counts()?))
}

/// Per-example squared norms of one linear layer; returns the JSON line to print.
pub fn run_ghost(
    dev: &Device,
    activations: &Path,
    output_grads: &Path,
    bias: bool,
    dtype: Option<DType>,
    out: &Path,
) -> Result<String> {
    const OP: &str = "run ghost-norms";
    let a = npy::read(activations)?;
    let g = npy::read(output_grads)?;
    // (B, p) is T = 1; (B, T, p) is the general case.
    let split = |x: &npy::Array, path: &Path| -> Result<(usize, usize, usize)> {
        match x.shape[..] {
            [b, f] => Ok((b as usize, 1, f as usize)),
            [b, t, f] => Ok((b as usize, t as usize, f as usize)),
            _ => Err(bad(
                OP,
                format!(
                    "{}: expected shape (B, T, features) or (B, features), got {:?}",
                    path.display(),
                    x.shape
                ),
            )),
        }
    };
    let (b, t, p) = split(&a, activations)?;
    let (b2, t2, q) = split(&g, output_grads)?;
    if (b, t) != (b2, t2) {
        return Err(Error::Shape {
            op: OP,
            arg: "output_grads",
            expected: format!("batch {b} and positions {t} (from the activations)"),
            got: format!("batch {b2} and positions {t2}"),
        });
    }
    let shape = GhostShape {
        batch: b,
        positions: t,
        inputs: p,
        outputs: q,
    };
    let sq = match storage_type(dtype, &a) {
        DType::F16 => ghost_as::<f16>(dev, &a.data, &g.data, &shape, bias)?,
        DType::BF16 => ghost_as::<bf16>(dev, &a.data, &g.data, &shape, bias)?,
        _ => ghost_as::<f32>(dev, &a.data, &g.data, &shape, bias)?,
    };
    write_f32(out, &[b as u64], &sq)?;
    Ok(format!(
        "{{\"method\": \"{:?}\", \"backend\": \"{}\"}}",
        trainkern::clip::ghost_method(&shape),
        dev.backend()
    ))
}

fn ghost_as<T: Float>(
    dev: &Device,
    a: &[f64],
    g: &[f64],
    shape: &GhostShape,
    bias: bool,
) -> Result<Vec<f32>> {
    let to = |v: &[f64]| -> Vec<T> { v.iter().map(|&x| T::from_f32(x as f32)).collect() };
    let (ab, gb) = (dev.upload(&to(a))?, dev.upload(&to(g))?);
    let mut out = dev.zeros(shape.batch)?;
    ghost_norms(dev, &ab, &gb, shape, bias, &mut out)?;
    out.download()
}
