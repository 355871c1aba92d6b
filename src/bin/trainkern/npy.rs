//! Reading `.npy` arrays for the `run` commands: any of the float and integer types NumPy
//! writes by default, as f64 (exact for f32, f16 and integers below 2^53).

use std::io::Read;
use std::path::Path;

use trainkern::{Error, Result};

/// One array: its shape, its `descr` (`<f4`, `<f2`, ...) and its values.
pub struct Array {
    pub shape: Vec<u64>,
    pub descr: String,
    pub data: Vec<f64>,
}

pub fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.display().to_string(),
        source: e,
    }
}

/// The values of an opened array (`what` names it in errors).
pub fn values<R: Read>(npy: npyz::NpyFile<R>, path: &Path, what: &str) -> Result<Array> {
    let shape = npy.shape().to_vec();
    let descr = npy.dtype().descr().trim_matches('\'').to_string();
    let io = io(path);
    let data: Vec<f64> = match descr.as_str() {
        "<f4" => widen(npy.into_vec::<f32>().map_err(io)?),
        "<f8" => npy.into_vec::<f64>().map_err(io)?,
        "<f2" => widen(npy.into_vec::<half::f16>().map_err(io)?),
        "<i8" => npy
            .into_vec::<i64>()
            .map_err(io)?
            .into_iter()
            .map(|x| x as f64)
            .collect(),
        "<i4" => widen(npy.into_vec::<i32>().map_err(io)?),
        "<u8" => npy
            .into_vec::<u64>()
            .map_err(io)?
            .into_iter()
            .map(|x| x as f64)
            .collect(),
        "<u4" => widen(npy.into_vec::<u32>().map_err(io)?),
        other => {
            return Err(Error::InvalidArgument {
                op: "run",
                what: format!(
                    "{}: {what} has dtype {other}; expected f32, f64, f16 or an integer type",
                    path.display()
                ),
            });
        }
    };
    Ok(Array { shape, descr, data })
}

fn widen<T: Into<f64>>(v: Vec<T>) -> Vec<f64> {
    v.into_iter().map(Into::into).collect()
}

/// A whole `.npy` file.
pub fn read(path: &Path) -> Result<Array> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file)).map_err(io(path))?;
    values(npy, path, "the array")
}

/// One named array of an `.npz`.
pub struct Named {
    pub name: String,
    pub array: Array,
}

/// Every array of an `.npz`, in the archive's directory order (the order `np.savez` wrote
/// them); `op` names the command in errors.
pub fn read_npz(path: &Path, op: &'static str) -> Result<Vec<Named>> {
    let bad = |what: String| Error::InvalidArgument { op, what };
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut z = npyz::zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| bad(format!("{}: not an .npz archive: {e}", path.display())))?;
    let mut out = Vec::new();
    for index in 0..z.len() {
        let entry = z
            .by_index(index)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let Some(name) = npyz::npz::array_name_from_file_name(entry.name()) else {
            continue;
        };
        let name = name.to_string();
        let npy = npyz::NpyFile::new(entry).map_err(io(path))?;
        let array = values(npy, path, &format!("array {name}"))?;
        out.push(Named { name, array });
    }
    Ok(out)
}

/// Writes f32 arrays, each `(name, shape, values)`, as an `.npz`.
pub fn write_npz(path: &Path, arrays: &[(&str, &[u64], &[f32])]) -> Result<()> {
    use npyz::WriterBuilder;
    let mut z = npyz::npz::NpzWriter::create(path).map_err(io(path))?;
    for (name, shape, data) in arrays {
        let mut w = z
            .array::<f32>(name, Default::default())
            .map_err(io(path))?
            .default_dtype()
            .shape(shape)
            .begin_nd()
            .map_err(io(path))?;
        w.extend(data.iter().copied()).map_err(io(path))?;
        w.finish().map_err(io(path))?;
    }
    Ok(())
}
