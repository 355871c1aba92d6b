//! `trainkern bench`: time, minimum bytes moved and the fraction of a plain device copy measured
//! in the same run, per op, backend and size (`design/testing.md`, "Benchmarks").

mod clip;
mod fft;
mod mf_noise;
mod noise;
mod render;
mod splat;
mod upgd;

use std::time::Instant;

use crate::backend::Device;
use crate::buffer::DType;
use crate::{Backend, Result};

/// One line of the bench table.
#[derive(Clone, Debug)]
pub struct Row {
    pub op: &'static str,
    pub dtype: DType,
    pub backend: String,
    pub device: String,
    pub len: usize,
    /// Median seconds per call, device-synchronized.
    pub seconds: f64,
    /// The least bytes the op must move (read + written).
    pub bytes: u64,
    pub gbps: f64,
    /// The plain device copy of the same run, counting bytes read and written.
    pub copy_gbps: f64,
    pub pct_of_copy: f64,
    /// Floating-point operations per call where the op counts them (FFTs: `5 n log2 n` per
    /// signal), else 0.
    pub flops: u64,
    /// The most device memory the calls held at once beyond what was held before them (the
    /// op's working memory: inputs and outputs are allocated before it is timed); `None` on the
    /// CPU, which keeps no count (see [`crate::backend::memory`]).
    pub work_bytes: Option<u64>,
}

impl Row {
    /// The row as one JSON object.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"op\":\"{}\",\"dtype\":\"{}\",\"backend\":\"{}\",\"device\":{:?},\"len\":{},\
             \"seconds\":{:e},\"bytes\":{},\"gbps\":{:.3},\"copy_gbps\":{:.3},\"pct_of_copy\":{:.2},\
             \"samples_per_s\":{:e},\"gflops\":{:.3},\"work_bytes\":{}}}",
            self.op,
            self.dtype,
            self.backend,
            self.device,
            self.len,
            self.seconds,
            self.bytes,
            self.gbps,
            self.copy_gbps,
            self.pct_of_copy,
            self.len as f64 / self.seconds,
            self.flops as f64 / self.seconds / 1e9,
            self.work_bytes
                .map_or_else(|| "null".to_string(), |b| b.to_string())
        )
    }
}

/// The default sizes: up to 2^28 elements on CUDA (the size the speed targets name), 2^26
/// elsewhere so a CPU or lavapipe run stays short, 2^16 on the PTX emulator (which measures the
/// interpreter, not a GPU).
pub fn default_sizes(backend: Backend) -> Vec<usize> {
    match backend {
        Backend::Cuda => vec![1 << 16, 1 << 20, 1 << 24, 1 << 28],
        Backend::PtxEmu => vec![1 << 12, 1 << 16],
        _ => vec![1 << 16, 1 << 20, 1 << 24, 1 << 26],
    }
}

/// A timing: the median seconds per call and the calls' working memory.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub seconds: f64,
    /// As [`Row::work_bytes`].
    pub work_bytes: Option<u64>,
}

/// Median seconds of `f` followed by a device synchronization, after two warm-up calls; repeats
/// until 0.4 s or 25 calls, at least 5. Also the most device memory held during the calls beyond
/// what was held before them.
pub fn time(dev: &Device, mut f: impl FnMut() -> Result<()>) -> Result<Timing> {
    dev.reset_peak_memory();
    let before = dev.memory();
    for _ in 0..2 {
        f()?;
    }
    dev.synchronize()?;
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5 || (samples.len() < 25 && start.elapsed().as_secs_f64() < 0.4) {
        let t = Instant::now();
        f()?;
        dev.synchronize()?;
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    let work_bytes = before
        .zip(dev.memory())
        .map(|(b, now)| now.peak.saturating_sub(b.live));
    Ok(Timing {
        seconds: samples[samples.len() / 2],
        work_bytes,
    })
}

/// A row from a timing and the op's minimum bytes.
pub(crate) fn row(
    dev: &Device,
    op: &'static str,
    dtype: DType,
    len: usize,
    timing: Timing,
    bytes: u64,
    copy_gbps: f64,
) -> Row {
    let seconds = timing.seconds;
    let gbps = bytes as f64 / seconds / 1e9;
    Row {
        op,
        dtype,
        backend: dev.backend().to_string(),
        device: dev.describe(),
        len,
        seconds,
        bytes,
        gbps,
        copy_gbps,
        pct_of_copy: 100.0 * gbps / copy_gbps,
        flops: 0,
        work_bytes: timing.work_bytes,
    }
}

/// Copy bandwidth (bytes read + written per second) for `len` f32 on `dev`, as a row.
pub fn copy_row(dev: &Device, len: usize) -> Result<Row> {
    // A source of written values: a never-written host allocation maps every page to the one
    // zero page, whose reads hit the cache, and the copy would time writes only.
    let values: Vec<f32> = (0..len).map(|i| i as f32).collect();
    let src = dev.upload(&values)?;
    drop(values);
    let mut dst = dev.zeros::<f32>(len)?;
    let t = time(dev, || dev.copy(&src, &mut dst))?;
    let bytes = 2 * 4 * len as u64;
    let gbps = bytes as f64 / t.seconds / 1e9;
    Ok(row(dev, "copy", DType::F32, len, t, bytes, gbps))
}

/// Every op (or the families in `only`, named as in [`crate::check::FAMILIES`]; all when
/// empty) at every size on `dev`, after the plain copy of each size; `progress` hears each case
/// before it runs.
pub fn run(
    dev: &Device,
    sizes: &[usize],
    only: &[String],
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Row>> {
    let selected = crate::check::select_families("bench", only)?;
    let wanted = |f: &str| selected.contains(&f);
    let mut rows = Vec::new();
    for &len in sizes {
        progress(&format!("copy {len}"));
        let first = rows.len();
        let copy = copy_row(dev, len)?;
        let copy_gbps = copy.gbps;
        rows.push(copy);
        if dev.backend() == Backend::Cpu {
            progress(&format!("write {len}"));
            rows.push(cpu_write_row(dev, len, copy_gbps)?);
        }
        if wanted("noise") {
            noise::run(dev, len, copy_gbps, progress, &mut rows)?;
        }
        if wanted("clip") {
            clip::run(dev, len, copy_gbps, progress, &mut rows)?;
        }
        if wanted("mf_noise") {
            mf_noise::run(dev, len, copy_gbps, progress, &mut rows)?;
        }
        if wanted("fft") {
            fft::run(dev, len, copy_gbps, progress, &mut rows)?;
        }
        if wanted("upgd") {
            upgd::run(dev, len, copy_gbps, progress, &mut rows)?;
        }
        // The copy again after the ops: a machine's bandwidth drifts (other tenants, clocks),
        // so the yardstick is the faster of the two copies, and every fraction of this size is
        // of it (never flattered by a slow moment of the copy).
        progress(&format!("copy {len} again"));
        let again = copy_row(dev, len)?;
        if again.gbps > rows[first].gbps {
            rows[first] = again;
        }
        let best = rows[first].gbps;
        for r in &mut rows[first..] {
            r.copy_gbps = best;
            r.pct_of_copy = 100.0 * r.gbps / best;
        }
    }
    // Rendering and splatting once, on Lightplane's benchmark scenes: 256^2 rays on GPUs, a
    // smaller batch where every sample costs microseconds (the CPU, lavapipe, the emulator).
    let (n_rays, samples) = match dev.backend() {
        Backend::Cuda => (1 << 16, 256),
        Backend::PtxEmu => (64, 32),
        _ => (1 << 10, 128),
    };
    let copy_gbps = rows.iter().find(|r| r.op == "copy").map_or(1.0, |r| r.gbps);
    if wanted("mf_noise") || wanted("fft") {
        fft::table(dev, copy_gbps, progress, &mut rows)?;
    }
    if wanted("render") {
        match render::run(dev, n_rays, samples, copy_gbps, progress, &mut rows) {
            Err(crate::Error::Unsupported { what, .. }) => {
                progress(&format!("render: not run on {}: {what}", dev.backend()))
            }
            other => other?,
        }
    }
    if wanted("splat") {
        match splat::run(dev, n_rays, copy_gbps, progress, &mut rows) {
            Err(crate::Error::Unsupported { what, .. }) => {
                progress(&format!("splat: not run on {}: {what}", dev.backend()))
            }
            other => other?,
        }
    }
    Ok(rows)
}

/// A plain parallel memory write of `len` f32 on the CPU: the floor for ops that only write.
fn cpu_write_row(dev: &Device, len: usize, copy_gbps: f64) -> Result<Row> {
    use rayon::prelude::*;
    let mut v = vec![0.0f32; len];
    let mut x = 0.0f32;
    let t = time(dev, || {
        x += 1.0;
        v.par_chunks_mut(crate::backend::cpu::CHUNK)
            .for_each(|c| c.fill(x));
        Ok(())
    })?;
    std::hint::black_box(&v);
    Ok(row(
        dev,
        "write",
        DType::F32,
        len,
        t,
        4 * len as u64,
        copy_gbps,
    ))
}

/// The table, one row per case.
pub fn format_table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<20} {:<5} {:<8} {:>10} {:>12} {:>12} {:>9} {:>11} {:>8} {:>8} {:>8}  {}\n",
        "op",
        "dtype",
        "backend",
        "len",
        "median",
        "min bytes",
        "GB/s",
        "Melem/s",
        "% copy",
        "GFLOP/s",
        "work MB",
        "device"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<20} {:<5} {:<8} {:>10} {:>10.3}ms {:>12} {:>9.2} {:>11.1} {:>7.1}% {:>8} {:>8}  {}\n",
            r.op,
            r.dtype.name(),
            r.backend,
            r.len,
            r.seconds * 1e3,
            r.bytes,
            r.gbps,
            r.len as f64 / r.seconds / 1e6,
            r.pct_of_copy,
            if r.flops > 0 {
                format!("{:.1}", r.flops as f64 / r.seconds / 1e9)
            } else {
                "-".into()
            },
            r.work_bytes
                .map_or_else(|| "-".into(), |b| format!("{:.2}", b as f64 / 1e6)),
            r.device
        ));
    }
    s.push_str(
        "GB/s counts the minimum bytes each op moves; the copy row counts bytes read + written \
         (the faster of two copies, before and after the size's ops). work MB: the most device \
         memory the op's calls held at once beyond its inputs and outputs (not counted on the \
         CPU).\n",
    );
    s
}
