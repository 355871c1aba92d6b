//! `trainkern run splat`: the splatter on `.npz` files, forward and optionally backward, so a
//! user can compare with Lightplane's splatter array by array.

use std::path::PathBuf;

use trainkern::render::GridList;
use trainkern::splat::{SplatMlp, SplatOptions, Splatter};
use trainkern::{Device, Error, Result};

use crate::render::{RayFile, f32s, find, grid_arrays, grid_list, write_arrays};

const OP: &str = "run splat";

/// The flags of `trainkern run splat`.
pub struct Args {
    /// The output grids' shapes, `B,D,H,W,C` each, `;` between grids.
    pub grid_sizes: String,
    pub rays: PathBuf,
    /// The MLP splatter: input grids (`i0, i1, ...`), its flat parameters and its shape.
    pub input_grids: Option<PathBuf>,
    pub params: Option<PathBuf>,
    pub mlp: SplatMlp,
    pub opts: SplatOptions,
    pub out: PathBuf,
    pub backward: Option<PathBuf>,
    pub grads_out: Option<PathBuf>,
}

fn bad(what: String) -> Error {
    Error::InvalidArgument { op: OP, what }
}

fn sizes(text: &str) -> Result<GridList> {
    let shapes = text
        .split(';')
        .map(|g| {
            let v: Vec<usize> = g
                .split(',')
                .map(|x| x.trim().parse::<usize>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| bad(format!("--grid-sizes: {g:?}: {e}")))?;
            <[usize; 5]>::try_from(v)
                .map_err(|_| bad(format!("--grid-sizes: {g:?} is not B,D,H,W,C")))
        })
        .collect::<Result<Vec<_>>>()?;
    GridList::new(&shapes)
}

/// Runs the splatter; returns the JSON line to print.
pub fn run(dev: &Device, a: &Args) -> Result<String> {
    let out = sizes(&a.grid_sizes)?;
    let loaded = RayFile::read(dev, &a.rays, OP)?;
    let rays = loaded.rays();
    let input = match (&a.input_grids, &a.params) {
        (Some(g), Some(p)) => {
            let (list, values, _) = grid_list(g, 'i')?;
            let params = f32s(&crate::npy::read(p)?.data);
            Some((list, dev.upload(&f32s(&values))?, dev.upload(&params)?))
        }
        (None, None) => None,
        _ => return Err(bad("--input-grids and --params go together".into())),
    };
    let splatter = match &input {
        Some((list, ..)) => Splatter::with_mlp(dev, &out, list, a.mlp, a.opts)?,
        None => Splatter::new(dev, &out, a.opts)?,
    };
    let mut grid = dev.zeros::<f32>(out.len())?;
    match &input {
        Some((_, values, params)) => splatter.forward_mlp(values, params, &rays, &mut grid)?,
        None => splatter.forward(&rays, &mut grid)?,
    }
    let g = grid.download()?;
    write_arrays(&a.out, &grid_arrays(&out, 'g', &g))?;
    let mut backward = "null".to_string();
    if let Some(path) = &a.backward {
        let Some(grads_out) = &a.grads_out else {
            return Err(bad("--backward needs --grads-out".into()));
        };
        let arrays = crate::npy::read_npz(path, OP)?;
        let mut flat = Vec::with_capacity(out.len());
        for i in 0..out.shapes().len() {
            flat.extend(f32s(&find(&arrays, path, &format!("g{i}"))?.data));
        }
        let grad_out = dev.upload(&flat)?;
        let r = loaded.len as u64;
        let e_len = splatter.encoding_len() as u64;
        match &input {
            Some((list, values, params)) => {
                let mut grads = splatter.grads_zeros(loaded.len)?;
                splatter.backward_mlp(values, params, &rays, &grad_out, &mut grads)?;
                let (gi, gp, ge) = (
                    grads.input_grids.download()?,
                    grads.params.download()?,
                    grads.encoding.download()?,
                );
                let mut arrays = grid_arrays(list, 'i', &gi);
                arrays.push(("params".into(), vec![gp.len() as u64], &gp));
                arrays.push(("encoding".into(), vec![r, e_len], &ge));
                write_arrays(grads_out, &arrays)?;
            }
            None => {
                let mut ge = dev.zeros::<f32>(loaded.len * splatter.encoding_len())?;
                splatter.backward(&rays, &grad_out, &mut ge)?;
                let ge = ge.download()?;
                write_arrays(grads_out, &[("encoding".into(), vec![r, e_len], &ge)])?;
            }
        }
        backward = format!("{:?}", grads_out.display().to_string());
    }
    Ok(format!(
        "{{\"rays\": {}, \"samples\": {}, \"mlp\": {}, \"backward\": {backward}, \"backend\": {:?}}}",
        loaded.len,
        a.opts.samples + a.opts.samples_inf,
        input.is_some(),
        dev.to_string()
    ))
}
