//! Error measures of `design/testing.md`, shared by `trainkern check` and the tests.

/// `max_j |got_j - ref_j| / (1 + |ref_j|)`: at most `t` exactly when every element meets
/// `|got - ref| <= t + t |ref|`. NaN anywhere gives infinity.
pub fn scaled_max_error(got: &[f64], want: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(g, w)| {
            let e = (g - w).abs() / (1.0 + w.abs());
            if e.is_nan() { f64::INFINITY } else { e }
        })
        .fold(0.0, f64::max)
}

/// `||got - ref|| / ||ref||`; NaN anywhere gives infinity.
pub fn rel_l2(got: &[f64], want: &[f64]) -> f64 {
    let (mut d, mut n) = (0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(want) {
        d += (g - w) * (g - w);
        n += w * w;
    }
    let r = if n == 0.0 { d.sqrt() } else { (d / n).sqrt() };
    if r.is_nan() { f64::INFINITY } else { r }
}

/// The spacing of 16-bit floats with `mantissa_bits` stored mantissa bits (10 for f16, 7 for
/// bf16) at magnitude `x`, with the subnormal floor of each format.
pub fn ulp16(x: f64, mantissa_bits: i32, min_exp: i32) -> f64 {
    let e = if x == 0.0 {
        min_exp
    } else {
        (x.abs().log2().floor() as i32).max(min_exp)
    };
    2f64.powi(e - mantissa_bits)
}
