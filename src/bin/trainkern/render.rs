//! `trainkern run render`: the renderer on `.npz` files, forward and optionally backward, so a
//! user can compare with Lightplane array by array.

use std::path::{Path, PathBuf};

use trainkern::render::{
    Decoder, GridList, RayBuffers, Rays, RenderOptions, RenderOutput, Renderer,
};
use trainkern::{Buffer, Device, Error, Float, Result};

use crate::npy::{self, Named};

const OP: &str = "run render";

/// The flags of `trainkern run render`.
pub struct Args {
    pub grids: PathBuf,
    pub color_grids: Option<PathBuf>,
    pub params: PathBuf,
    pub rays: PathBuf,
    pub decoder: Decoder,
    pub opts: RenderOptions,
    pub out: PathBuf,
    pub backward: Option<PathBuf>,
    pub grads_out: Option<PathBuf>,
}

fn bad(what: String) -> Error {
    Error::InvalidArgument { op: OP, what }
}

/// The grids of an archive: `g0, g1, ...` (or `c0, c1, ...`), each `[B, D, H, W, C]`, and
/// whether every one was stored as f16.
pub fn grid_list(path: &Path, prefix: char) -> Result<(GridList, Vec<f64>, bool)> {
    let arrays = npy::read_npz(path, OP)?;
    let mut shapes = Vec::new();
    let mut values = Vec::new();
    let mut all_f16 = true;
    for i in 0.. {
        let name = format!("{prefix}{i}");
        let Some(a) = arrays.iter().find(|a| a.name == name) else {
            break;
        };
        let s = &a.array.shape;
        if s.len() != 5 {
            return Err(bad(format!(
                "{}: {name} must be [B, D, H, W, C], has shape {s:?}",
                path.display()
            )));
        }
        shapes.push([0, 1, 2, 3, 4].map(|k| s[k] as usize));
        values.extend_from_slice(&a.array.data);
        all_f16 &= a.array.descr == "<f2";
    }
    if shapes.is_empty() {
        return Err(bad(format!("{}: no array {prefix}0", path.display())));
    }
    Ok((GridList::new(&shapes)?, values, all_f16))
}

pub fn find<'a>(arrays: &'a [Named], path: &Path, name: &str) -> Result<&'a npy::Array> {
    arrays
        .iter()
        .find(|a| a.name == name)
        .map(|a| &a.array)
        .ok_or_else(|| bad(format!("{}: no array {name}", path.display())))
}

/// The rays of an archive (`origins, directions, near, far, batch` and optionally `encoding`),
/// on the device.
pub struct RayFile {
    pub len: usize,
    buffers: RayBuffers,
}

impl RayFile {
    pub fn read(dev: &Device, path: &Path, op: &'static str) -> Result<RayFile> {
        let arrays = npy::read_npz(path, op)?;
        let get = |name| find(&arrays, path, name);
        let origins = f32s(&get("origins")?.data);
        let directions = f32s(&get("directions")?.data);
        let near = f32s(&get("near")?.data);
        let far = f32s(&get("far")?.data);
        let batch_vals = &get("batch")?.data;
        if let Some(x) = batch_vals
            .iter()
            .find(|&&x| x < 0.0 || x.fract() != 0.0 || x > f64::from(u32::MAX))
        {
            return Err(Error::InvalidArgument {
                op,
                what: format!("rays.batch holds {x}, not a batch index"),
            });
        }
        let batch: Vec<u32> = batch_vals.iter().map(|&x| x as u32).collect();
        let encoding = arrays
            .iter()
            .find(|n| n.name == "encoding")
            .map(|e| f32s(&e.array.data));
        let buffers = RayBuffers::upload(
            dev,
            &origins,
            &directions,
            &batch,
            &near,
            &far,
            encoding.as_deref(),
        )?;
        Ok(RayFile {
            len: near.len(),
            buffers,
        })
    }

    pub fn rays(&self) -> Rays<'_> {
        self.buffers.rays()
    }
}

/// Each grid of `list` as its own array `{prefix}0, {prefix}1, ...` of its shape, sliced from
/// the flat `values`.
pub fn grid_arrays<'a>(
    list: &GridList,
    prefix: char,
    values: &'a [f32],
) -> Vec<(String, Vec<u64>, &'a [f32])> {
    list.shapes()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n: usize = s.iter().product();
            (
                format!("{prefix}{i}"),
                s.map(|x| x as u64).to_vec(),
                &values[list.offset(i)..list.offset(i) + n],
            )
        })
        .collect()
}

/// Writes named arrays of owned names and shapes.
pub fn write_arrays(path: &Path, arrays: &[(String, Vec<u64>, &[f32])]) -> Result<()> {
    let refs: Vec<(&str, &[u64], &[f32])> = arrays
        .iter()
        .map(|(n, s, d)| (n.as_str(), s.as_slice(), *d))
        .collect();
    npy::write_npz(path, &refs)
}

pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Run the renderer; returns the JSON line to print.
pub fn run(dev: &Device, a: &Args) -> Result<String> {
    let (grids, values, f16) = grid_list(&a.grids, 'g')?;
    let color = a
        .color_grids
        .as_deref()
        .map(|p| grid_list(p, 'c'))
        .transpose()?;
    let renderer = Renderer::new(dev, &grids, color.as_ref().map(|c| &c.0), a.decoder, a.opts)?;
    let params = dev.upload(&f32s(&npy::read(&a.params)?.data))?;
    let loaded = RayFile::read(dev, &a.rays, OP)?;
    let rays = loaded.rays();
    let r = loaded.len;
    if f16 && color.as_ref().is_none_or(|c| c.2) {
        let to = |v: &[f64]| {
            v.iter()
                .map(|&x| half::f16::from_f64(x))
                .collect::<Vec<_>>()
        };
        let g = dev.upload(&to(&values))?;
        let c = color.as_ref().map(|c| dev.upload(&to(&c.1))).transpose()?;
        let lists = (&grids, color.as_ref().map(|c| &c.0));
        render(
            dev,
            a,
            &renderer,
            lists,
            &g,
            c.as_ref(),
            &params,
            &rays,
            r,
            "f16",
        )
    } else {
        let g = dev.upload(&f32s(&values))?;
        let c = color
            .as_ref()
            .map(|c| dev.upload(&f32s(&c.1)))
            .transpose()?;
        let lists = (&grids, color.as_ref().map(|c| &c.0));
        render(
            dev,
            a,
            &renderer,
            lists,
            &g,
            c.as_ref(),
            &params,
            &rays,
            r,
            "f32",
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn render<T: Float>(
    dev: &Device,
    a: &Args,
    renderer: &Renderer,
    (list, color_list): (&GridList, Option<&GridList>),
    grids: &Buffer<T>,
    color: Option<&Buffer<T>>,
    params: &Buffer<f32>,
    rays: &Rays,
    r: usize,
    dtype: &str,
) -> Result<String> {
    let k = a.decoder.color_channels;
    let mut out = RenderOutput::zeros(dev, r, k)?;
    renderer.forward(grids, color, params, rays, &mut out)?;
    let (rr, kk) = (r as u64, k as u64);
    npy::write_npz(
        &a.out,
        &[
            ("features", &[rr, kk], &out.features.download()?),
            ("ray_length", &[rr], &out.ray_length.download()?),
            (
                "neg_log_transmittance",
                &[rr],
                &out.neg_log_transmittance.download()?,
            ),
        ],
    )?;
    let mut backward = "null".to_string();
    if let Some(path) = &a.backward {
        let Some(grads_out) = &a.grads_out else {
            return Err(bad("--backward needs --grads-out".into()));
        };
        let arrays = npy::read_npz(path, OP)?;
        let get = |name| find(&arrays, path, name).map(|x| f32s(&x.data));
        let grad_out = RenderOutput {
            features: dev.upload(&get("features")?)?,
            ray_length: dev.upload(&get("ray_length")?)?,
            neg_log_transmittance: dev.upload(&get("neg_log_transmittance")?)?,
        };
        let mut grads = renderer.grads_zeros(r, params.len())?;
        renderer.backward(grids, color, params, rays, &grad_out, &mut grads)?;
        let g = grads.grids.download()?;
        let c = grads
            .color_grids
            .as_ref()
            .map(Buffer::download)
            .transpose()?;
        let p = grads.params.download()?;
        let e = grads.encoding.download()?;
        let mut arrays = grid_arrays(list, 'g', &g);
        if let (Some(cl), Some(c)) = (color_list, c.as_ref()) {
            arrays.extend(grid_arrays(cl, 'c', c));
        }
        let e_len = (e.len() / r.max(1)) as u64;
        arrays.push(("params".into(), vec![p.len() as u64], &p));
        arrays.push(("encoding".into(), vec![rr, e_len], &e));
        write_arrays(grads_out, &arrays)?;
        backward = format!("{:?}", grads_out.display().to_string());
    }
    Ok(format!(
        "{{\"rays\": {r}, \"samples\": {}, \"grids\": {:?}, \"backward\": {backward}, \"backend\": {:?}}}",
        a.opts.samples + a.opts.samples_inf,
        dtype,
        dev.to_string()
    ))
}
