//! `trainkern check`: every op on one device against the CPU reference, at every size class of
//! `design/testing.md`, as a table of errors and tolerances.

mod clip;
mod compare;
mod fft;
mod mf_noise;
mod noise;
pub(crate) mod render;
mod splat;
mod upgd;

pub use compare::{rel_l2, scaled_max_error, ulp16};

use crate::Backend;
use crate::backend::Device;
use crate::buffer::DType;

/// One line of the check table.
#[derive(Clone, Debug)]
pub struct Row {
    pub op: &'static str,
    pub dtype: DType,
    pub backend: String,
    pub size: &'static str,
    pub len: usize,
    /// What `error` measures, e.g. "max |d|/(1+|ref|)".
    pub metric: &'static str,
    pub error: f64,
    pub tolerance: f64,
    pub pass: bool,
    /// The case's variant, or why a row failed beyond its metric (an op error, a
    /// per-element violation).
    pub note: String,
}

/// A size class: its name, the element count and the global RNG offset used with it.
#[derive(Clone, Copy, Debug)]
pub struct SizeClass {
    pub name: &'static str,
    pub len: usize,
    pub offset: u64,
}

/// The size classes for elements of `dtype` on `backend`: a single element; a ragged size (not
/// a multiple of any workgroup, block or vector width) at an offset whose blocks carry into the
/// high counter word; a size that needs more than one chunk at the 128 MiB binding limit of
/// lavapipe and most adapters; and the largest size the ops promise to check, 2^28 elements.
/// The PTX emulator interprets every instruction on the CPU, so it gets sizes that finish in
/// seconds: 1, 70 001, 2^18 + 3 (over a thousand blocks) and 2^20.
pub fn size_classes(dtype: DType, backend: Backend) -> Vec<SizeClass> {
    let class = |name, len, offset| SizeClass { name, len, offset };
    let carry = (1u64 << 34) - 1_999;
    if backend == Backend::PtxEmu {
        return vec![
            class("one", 1, 5),
            class("ragged", 70_001, carry),
            class("many-blocks", (1 << 18) + 3, 1),
            class("largest", 1 << 20, 0),
        ];
    }
    let multi = (128usize << 20) / dtype.size() + 4099;
    vec![
        class("one", 1, 5),
        class("ragged", 1_000_003, carry),
        class("multi-chunk", multi, 1),
        class("largest", 1 << 28, 0),
    ]
}

/// One family's cases: they run on the device and append their rows.
type Cases = fn(&Device, &mut dyn FnMut(&str), &mut Vec<Row>);

/// The op families `trainkern check --only` can name, in the order they run.
pub const FAMILIES: &[&str] = &[
    "noise", "clip", "mf_noise", "fft", "upgd", "render", "splat",
];

/// The families of [`FAMILIES`] that `only` names (all of them when it is empty); an unknown
/// name is an error of `op` (`check` or `bench`).
pub fn select_families(op: &'static str, only: &[String]) -> crate::Result<Vec<&'static str>> {
    if let Some(bad) = only.iter().find(|f| !FAMILIES.contains(&f.as_str())) {
        return Err(crate::Error::InvalidArgument {
            op,
            what: format!("unknown op family {bad:?}: {}", FAMILIES.join(", ")),
        });
    }
    Ok(FAMILIES
        .iter()
        .copied()
        .filter(|f| only.is_empty() || only.iter().any(|o| o == f))
        .collect())
}

/// Run the cases of the families in `only` (every family when empty) on `dev`; `progress`
/// hears the name of each case before it runs. An unknown family name is an error.
pub fn run(
    dev: &Device,
    only: &[String],
    progress: &mut dyn FnMut(&str),
) -> crate::Result<Vec<Row>> {
    let selected = select_families("check", only)?;
    let wanted = |f: &str| selected.contains(&f);
    let mut rows = Vec::new();
    let all: [(&str, Cases); 7] = [
        ("noise", noise::cases),
        ("clip", clip::cases),
        ("mf_noise", mf_noise::cases),
        ("fft", fft::cases),
        ("upgd", upgd::cases),
        ("render", render::cases),
        ("splat", splat::cases),
    ];
    for (family, cases) in all {
        if wanted(family) {
            cases(dev, progress, &mut rows);
        }
    }
    Ok(rows)
}

/// The table, one row per case, and a summary line.
pub fn format_table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<14} {:<5} {:<8} {:<12} {:>10}  {:<22} {:>10} {:>10}  {}\n",
        "op", "dtype", "backend", "size", "len", "metric", "error", "tolerance", "result"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<14} {:<5} {:<8} {:<12} {:>10}  {:<22} {:>10.3e} {:>10.1e}  {}{}\n",
            r.op,
            r.dtype.name(),
            r.backend,
            r.size,
            r.len,
            r.metric,
            r.error,
            r.tolerance,
            if r.pass { "PASS" } else { "FAIL" },
            if r.note.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    r.note.split_whitespace().collect::<Vec<_>>().join(" ")
                )
            }
        ));
    }
    let failed = rows.iter().filter(|r| !r.pass).count();
    s.push_str(&format!(
        "{} cases, {} passed, {} failed\n",
        rows.len(),
        rows.len() - failed,
        failed
    ));
    s
}
