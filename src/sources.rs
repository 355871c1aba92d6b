//! The embedded kernel sources and how modules are assembled from them.
//!
//! A PTX module is its file's header (`.version`, `.target`, `.address_size`), then every
//! `kernels/common/*.ptx` piece (`.func` definitions only), then the rest of the file. A WGSL
//! module is every `shaders/common/*.wgsl` piece followed by the file. Tests assemble and
//! validate exactly these texts, so what CI checks is what the GPU runs.

/// Shared PTX `.func` pieces, in the order they are prepended.
pub const PTX_COMMON: &[(&str, &str)] = &[
    (
        "common/philox.ptx",
        include_str!("../kernels/common/philox.ptx"),
    ),
    (
        "common/storage.ptx",
        include_str!("../kernels/common/storage.ptx"),
    ),
    (
        "common/march.ptx",
        include_str!("../kernels/common/march.ptx"),
    ),
    (
        "common/mlp_bw.ptx",
        include_str!("../kernels/common/mlp_bw.ptx"),
    ),
];

/// PTX modules by name (`kernels/<name>.ptx`).
pub const PTX_MODULES: &[(&str, &str)] = &[
    ("clip", include_str!("../kernels/clip.ptx")),
    ("fft", include_str!("../kernels/fft.ptx")),
    ("mf_noise", include_str!("../kernels/mf_noise.ptx")),
    ("noise", include_str!("../kernels/noise.ptx")),
    ("render", include_str!("../kernels/render.ptx")),
    ("splat", include_str!("../kernels/splat.ptx")),
    ("upgd", include_str!("../kernels/upgd.ptx")),
];

/// Shared WGSL pieces, in the order they are prepended.
pub const WGSL_COMMON: &[(&str, &str)] = &[
    (
        "common/philox.wgsl",
        include_str!("../shaders/common/philox.wgsl"),
    ),
    (
        "common/storage.wgsl",
        include_str!("../shaders/common/storage.wgsl"),
    ),
    (
        "common/march.wgsl",
        include_str!("../shaders/common/march.wgsl"),
    ),
];

/// WGSL shaders by name (`shaders/<name>.wgsl`).
pub const WGSL_MODULES: &[(&str, &str)] = &[
    ("clip", include_str!("../shaders/clip.wgsl")),
    ("fft", include_str!("../shaders/fft.wgsl")),
    ("mf_noise", include_str!("../shaders/mf_noise.wgsl")),
    ("noise", include_str!("../shaders/noise.wgsl")),
    ("render", include_str!("../shaders/render.wgsl")),
    ("splat", include_str!("../shaders/splat.wgsl")),
    ("upgd", include_str!("../shaders/upgd.wgsl")),
];

/// The full text of PTX module `name`, as loaded on a CUDA device.
pub fn ptx(name: &str) -> Option<String> {
    let (_, body) = PTX_MODULES.iter().find(|(n, _)| *n == name)?;
    // The header ends with the `.address_size` line; the common pieces go right after it.
    let split = body
        .find(".address_size")
        .and_then(|at| body[at..].find('\n').map(|nl| at + nl + 1))
        .unwrap_or(0);
    let mut out = String::with_capacity(body.len() + 8192);
    out.push_str(&body[..split]);
    for (file, text) in PTX_COMMON {
        out.push_str(&format!("\n// ---- {file} ----\n"));
        out.push_str(text);
    }
    out.push_str(&format!("\n// ---- {name}.ptx ----\n"));
    out.push_str(&body[split..]);
    Some(out)
}

/// Where line `line` (1-based) of the assembled PTX module `name` comes from: the file under
/// `kernels/` and its line, so errors point at what a person edits.
pub fn ptx_origin(name: &str, line: u32) -> String {
    let Some((_, body)) = PTX_MODULES.iter().find(|(n, _)| *n == name) else {
        return format!("{name}.ptx:{line}");
    };
    let split = body
        .find(".address_size")
        .and_then(|at| body[at..].find('\n').map(|nl| at + nl + 1))
        .unwrap_or(0);
    // Segments in assembly order: (file, its first line, lines, marker lines before it). A
    // marker is "\n// ---- file ----\n": two lines after text that ends in a newline, one
    // (closing the last line) after text that does not.
    let header = body[..split].matches('\n').count() as u32;
    let lines = |t: &str| t.matches('\n').count() as u32 + u32::from(!t.ends_with('\n'));
    let marker = |prev: &str| {
        if prev.ends_with('\n') || prev.is_empty() {
            2
        } else {
            1
        }
    };
    let mut segs = vec![(format!("kernels/{name}.ptx"), 1u32, header, 0u32)];
    let mut prev = &body[..split];
    for (file, text) in PTX_COMMON {
        segs.push((format!("kernels/{file}"), 1, lines(text), marker(prev)));
        prev = text;
    }
    segs.push((
        format!("kernels/{name}.ptx"),
        header + 1,
        u32::MAX / 2,
        marker(prev),
    ));
    let mut at = 1u32;
    for (file, first, count, marker) in segs {
        at += marker;
        if line < at + count {
            return format!("{file}:{}", first + line.saturating_sub(at));
        }
        at += count;
    }
    format!("{name}.ptx:{line}")
}

/// The full text of WGSL shader `name`, as compiled by wgpu.
pub fn wgsl(name: &str) -> Option<String> {
    let (_, body) = WGSL_MODULES.iter().find(|(n, _)| *n == name)?;
    let mut out = String::new();
    for (file, text) in WGSL_COMMON {
        out.push_str(&format!("// ---- {file} ----\n"));
        out.push_str(text);
        out.push('\n');
    }
    out.push_str(&format!("// ---- {name}.wgsl ----\n"));
    out.push_str(body);
    Some(out)
}
