//! Check cases of clipping: flat clipping with noise in every storage type at every size class
//! (as `B x d` shapes of about the class's element count), grouped clipping over 100 uneven
//! groups, ghost norms by both methods, and twenty adaptive clip-norm updates.

use half::{bf16, f16};

use super::{Row, SizeClass, compare, size_classes};
use crate::backend::Device;
use crate::buffer::{DType, Float};
use crate::clip::{
    AdaptiveClip, Bounds, ClipNoise, ClipOptions, ClipRule, Clipper, GhostMethod, GhostShape,
    ghost_norms_by,
};
use crate::{Result, rng};

fn values(n: usize, salt: u64) -> Vec<f32> {
    let mut w = vec![0u32; n];
    rng::words_into(salt, 5, 0, &mut w);
    w.iter().map(|&x| 2.0 * rng::uniform(x) - 1.0).collect()
}

/// Rows of uneven scale, so some are clipped and some are not.
fn gradients<T: Float>(b: usize, d: usize) -> Vec<T> {
    let v = values(b * d, (b + d) as u64);
    (0..b * d)
        .map(|j| T::from_f32(v[j] * (0.2 + ((j / d) % 13) as f32)))
        .collect()
}

/// The rows a size class is cut into: one row for a single element, else 3 or 64.
fn shape(class: &SizeClass) -> (usize, usize) {
    let b = match class.len {
        1 => 1,
        n if n < 1 << 24 => 3,
        _ => 64,
    };
    (b, (class.len / b).max(1))
}

/// Errors of one clip against the CPU: (sum relative L2, max relative norm error, counts
/// equal).
fn run<T: Float>(dev: &Device, b: usize, offsets: &[usize], opts: &ClipOptions) -> Result<Cmp> {
    let d = offsets[offsets.len() - 1];
    let l = offsets.len() - 1;
    let g = gradients::<T>(b, d);
    let bounds: Vec<f32> = (0..l).map(|k| 0.37 * (1.0 + (k % 5) as f32)).collect();
    let one = |dev: &Device| -> Result<(Vec<f32>, Vec<f32>, crate::clip::ClipCounts)> {
        let mut c = Clipper::grouped(dev, b, offsets)?;
        let grads = dev.upload(&g)?;
        let mut sum = dev.upload(&vec![f32::NAN; d])?;
        let mut norms = dev.upload(&vec![f32::NAN; b * l])?;
        c.run(&grads, Bounds::Host(&bounds), opts, &mut sum, &mut norms)?;
        Ok((sum.download()?, norms.download()?, c.counts()?))
    };
    let (ws, wn, wc) = one(&Device::cpu())?;
    let (gs, gn, gc) = one(dev)?;
    let f = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>();
    let norm_err = gn
        .iter()
        .zip(&wn)
        .map(|(x, y)| f64::from((x - y).abs() / y.abs().max(f32::MIN_POSITIVE)))
        .fold(
            0.0,
            |a: f64, e| if e.is_nan() { f64::INFINITY } else { a.max(e) },
        );
    Ok(Cmp {
        error: compare::rel_l2(&f(&gs), &f(&ws)).max(norm_err),
        counts: (gc == wc)
            .then(String::new)
            .unwrap_or_else(|| format!("counts {gc:?} vs reference {wc:?}")),
    })
}

struct Cmp {
    error: f64,
    counts: String,
}

fn row(dev: &Device, op: &'static str, dtype: DType, size: &'static str, len: usize) -> Row {
    Row {
        op,
        dtype,
        backend: dev.backend().to_string(),
        size,
        len,
        metric: "rel L2 (sum), max rel",
        error: f64::INFINITY,
        tolerance: 1e-5,
        pass: false,
        note: String::new(),
    }
}

fn finish(mut r: Row, got: Result<Cmp>) -> Row {
    match got {
        Ok(c) => {
            r.error = c.error;
            r.pass = c.error <= r.tolerance && c.counts.is_empty();
            if !c.counts.is_empty() {
                r.note = c.counts;
            }
        }
        Err(e) => r.note = e.to_string(),
    }
    r
}

pub(super) fn cases(dev: &Device, progress: &mut dyn FnMut(&str), rows: &mut Vec<Row>) {
    let noise = ClipOptions {
        noise: Some(ClipNoise {
            multiplier: 1.1,
            seed: 3,
            stream: 4,
            offset: (1 << 34) - 7,
        }),
        scale: 1.0 / 64.0,
        ..ClipOptions::default()
    };
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for class in size_classes(dtype, dev.backend()) {
            let (b, d) = shape(&class);
            progress(&format!("clip {dtype} {} {b}x{d}", class.name));
            let offsets = [0, d];
            let got = match dtype {
                DType::F16 => run::<f16>(dev, b, &offsets, &noise),
                DType::BF16 => run::<bf16>(dev, b, &offsets, &noise),
                _ => run::<f32>(dev, b, &offsets, &noise),
            };
            let mut r = row(dev, "clip", dtype, class.name, b * d);
            r.note = format!("{b}x{d}");
            let r = finish(r, got);
            rows.push(r);
        }
    }

    // 100 groups of uneven widths, the Opacus rule, no noise.
    progress("clip grouped");
    let widths = (0..100).map(|k| 1 + (k * 7919) % 3001);
    let mut offsets = vec![0];
    for w in widths {
        offsets.push(offsets[offsets.len() - 1] + w);
    }
    let opts = ClipOptions {
        rule: ClipRule::Opacus,
        ..ClipOptions::default()
    };
    let n = 64 * offsets[100];
    rows.push(finish(
        row(dev, "clip grouped", DType::F32, "100-groups", n),
        run::<f32>(dev, 64, &offsets, &opts),
    ));

    for (size, shape) in [
        ("T=1", (256, 1, 512, 128)),
        ("T=64", (16, 64, 96, 80)),
        ("T=256", (4, 256, 16, 24)),
    ] {
        let (b, t, p, q) = shape;
        let s = GhostShape {
            batch: b,
            positions: t,
            inputs: p,
            outputs: q,
        };
        for method in [GhostMethod::Gram, GhostMethod::Direct] {
            progress(&format!("ghost norms {size} {method:?}"));
            let op = match method {
                GhostMethod::Gram => "ghost gram",
                GhostMethod::Direct => "ghost direct",
            };
            let mut r = row(dev, op, DType::F32, size, b * t * (p + q));
            r.metric = "max rel";
            rows.push(finish(r, ghost(dev, &s, method)));
        }
    }

    progress("adaptive clip");
    let mut r = row(dev, "adaptive clip", DType::F32, "20-steps", 256);
    r.metric = "max rel (bound)";
    rows.push(finish(r, adaptive(dev)));
}

fn ghost(dev: &Device, s: &GhostShape, method: GhostMethod) -> Result<Cmp> {
    let a = values(s.batch * s.positions * s.inputs, 1);
    let g = values(s.batch * s.positions * s.outputs, 2);
    let one = |dev: &Device| -> Result<Vec<f32>> {
        let (ab, gb) = (dev.upload(&a)?, dev.upload(&g)?);
        let mut out = dev.upload(&vec![f32::NAN; s.batch])?;
        ghost_norms_by(dev, &ab, &gb, s, true, method, &mut out)?;
        out.download()
    };
    let (want, got) = (one(&Device::cpu())?, one(dev)?);
    let error = got
        .iter()
        .zip(&want)
        .map(|(x, y)| f64::from((x - y).abs() / y.abs()))
        .fold(
            0.0,
            |a: f64, e| if e.is_nan() { f64::INFINITY } else { a.max(e) },
        );
    Ok(Cmp {
        error,
        counts: String::new(),
    })
}

/// Twenty clip-and-update steps on `dev`, each bound against the reference update from the
/// same count.
fn adaptive(dev: &Device) -> Result<Cmp> {
    let b = 256;
    let a = AdaptiveClip::new(b, 9, 1);
    let mut clipper = Clipper::flat(dev, b, 3)?;
    let mut bound = dev.upload(&[0.3f32])?;
    let (mut sum, mut norms) = (dev.zeros(3)?, dev.zeros(b)?);
    let mut error = 0.0f64;
    let mut counts = String::new();
    for step in 0..20 {
        let before = bound.download()?[0];
        let grads = dev.upload(&values(3 * b, step))?;
        let opts = ClipOptions::default();
        clipper.run(&grads, Bounds::Device(&bound), &opts, &mut sum, &mut norms)?;
        let clipped = clipper.counts()?.clipped;
        a.update(dev, clipper.stats(), b, &mut bound, step)?;
        let got = bound.download()?[0];
        let want = a.next(clipped, b, before, step)?;
        error = error.max(f64::from((got - want).abs() / want));
        let n = norms.download()?;
        let reference = n.iter().filter(|&&x| x > before).count() as u32;
        if reference != clipped && counts.is_empty() {
            counts = format!("step {step}: {clipped} clipped, {reference} norms above C");
        }
    }
    Ok(Cmp { error, counts })
}
