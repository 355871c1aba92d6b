//! Every kernel source, exactly as the loaders assemble it: WGSL parsed and validated by naga
//! (no adapter needed), PTX assembled by the pinned ptxas for sm_80 and sm_90 with spills and
//! local memory as errors.

mod common;

use std::path::PathBuf;
use std::process::Command;

use trainkern::sources;

#[test]
fn every_wgsl_shader_validates_with_naga() {
    assert!(!sources::WGSL_MODULES.is_empty());
    for (name, _) in sources::WGSL_MODULES {
        let src = sources::wgsl(name).unwrap();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(&src)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(&src)));
        let entries: Vec<&str> = module
            .entry_points
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        eprintln!("naga: {name}.wgsl valid, entry points {entries:?}");
    }
}

#[test]
fn every_source_file_is_registered() {
    // A kernel file that the loader does not know would never be checked or run.
    for (dir, ext, known) in [
        ("kernels", "ptx", sources::PTX_MODULES),
        ("shaders", "wgsl", sources::WGSL_MODULES),
    ] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) == Some(ext) {
                let stem = path.file_stem().unwrap().to_str().unwrap();
                assert!(
                    known.iter().any(|(n, _)| *n == stem),
                    "{} is not in sources.rs",
                    path.display()
                );
            }
        }
    }
}

/// ptxas from `PTXAS`, the pinned PyPI wheel, or `PATH`.
fn ptxas() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PTXAS") {
        return Some(PathBuf::from(p));
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import nvidia.cuda_nvcc as m; print(m.__path__[0] + '/bin/ptxas')",
        ])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if out.status.success() && p.exists() {
        return Some(p);
    }
    Command::new("ptxas").arg("--version").output().ok()?;
    Some(PathBuf::from("ptxas"))
}

#[test]
fn every_ptx_module_assembles_without_spills() {
    let Some(ptxas) = ptxas() else {
        common::missing(
            "ptxas",
            "not found (pip install nvidia-cuda-nvcc-cu12==12.9.86)",
        );
        return;
    };
    let version = Command::new(&ptxas).arg("--version").output().unwrap();
    eprintln!(
        "{}",
        String::from_utf8_lossy(&version.stdout)
            .lines()
            .last()
            .unwrap_or("")
    );
    let dir = std::env::temp_dir().join(format!("trainkern-ptx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, _) in sources::PTX_MODULES {
        let src = sources::ptx(name).unwrap();
        assert!(
            src.contains(".version 8.0") && src.contains(".target sm_80"),
            "{name}: header"
        );
        let file = dir.join(format!("{name}.ptx"));
        std::fs::write(&file, &src).unwrap();
        for arch in ["sm_80", "sm_90"] {
            let out = Command::new(&ptxas)
                .arg(format!("-arch={arch}"))
                .args([
                    "-v",
                    "--warn-on-spills",
                    "--warn-on-local-memory-usage",
                    "-Werror",
                ])
                .arg("-o")
                .arg(dir.join(format!("{name}.{arch}.cubin")))
                .arg(&file)
                .output()
                .unwrap();
            let log = String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{name}.ptx for {arch}:\n{log}");
            for line in log.lines() {
                if line.contains("spill") || line.contains("stack frame") {
                    assert!(
                        line.trim_start().starts_with(
                            "0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads"
                        ),
                        "{name}.ptx for {arch}: {line}"
                    );
                }
            }
            let mut entry = "";
            for line in log.lines() {
                if let Some(at) = line.find("Compiling entry function '") {
                    entry = line[at + 26..].split('\'').next().unwrap_or("");
                }
                if let Some(at) = line.find("Used ") {
                    eprintln!("ptxas {arch} {name}.ptx {entry}: {}", &line[at..]);
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn assembled_ptx_lines_map_back_to_their_files() {
    for (name, body) in sources::PTX_MODULES {
        let src = sources::ptx(name).unwrap();
        for (i, line) in src.lines().enumerate() {
            // The loader's markers (a blank line and a "// ---- file ----" line) have no origin.
            if line.starts_with("// ---- ") || line.is_empty() {
                continue;
            }
            let at = sources::ptx_origin(name, i as u32 + 1);
            let (file, n) = at.rsplit_once(':').unwrap();
            let text = if file == format!("kernels/{name}.ptx") {
                body.to_string()
            } else {
                let f = file.trim_start_matches("kernels/");
                sources::PTX_COMMON
                    .iter()
                    .find(|(p, _)| *p == f)
                    .unwrap()
                    .1
                    .to_string()
            };
            let n: usize = n.parse().unwrap();
            assert_eq!(
                text.lines().nth(n - 1),
                Some(line),
                "{name}.ptx assembled line {}",
                i + 1
            );
        }
    }
}
