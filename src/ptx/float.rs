//! Floating-point semantics of the emulator: IEEE rounding modes on f32 and the 16-bit types,
//! flush-to-zero, saturation, conversions to and from integers. Results are computed exactly in
//! f64 where that is possible (products and sums of f32 are, with an error term from TwoSum),
//! then rounded once in the requested mode, so every mode is exact, not approximated.

use super::ir::Rnd;

/// The canonical NaN NVIDIA GPUs produce for f32 arithmetic.
pub const NAN32: u32 = 0x7fff_ffff;
pub const NAN64: u64 = 0x7fff_ffff_ffff_ffff;

/// `(s, e)` with `s = fl(a + b)` and `a + b = s + e` exactly.
pub fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

fn sign(x: f64) -> i32 {
    if x > 0.0 {
        1
    } else if x < 0.0 {
        -1
    } else {
        0
    }
}

/// A target format for directed rounding: conversion by round-to-nearest, exact widening back
/// to f64, and the neighbours of a value.
pub trait Format: Copy + PartialEq {
    fn rn(x: f64) -> Self;
    fn wide(self) -> f64;
    fn next_up(self) -> Self;
    fn next_down(self) -> Self;
    fn max_finite(neg: bool) -> Self;
}

macro_rules! ieee_format {
    ($t:ty, $bits:ty, $rn:expr, $wide:expr, $from:expr, $to:expr, $max:expr) => {
        impl Format for $t {
            fn rn(x: f64) -> Self {
                $rn(x)
            }
            fn wide(self) -> f64 {
                $wide(self)
            }
            fn next_up(self) -> Self {
                let b: $bits = $to(self);
                let sign_bit: $bits = 1 << (<$bits>::BITS - 1);
                if self.wide().is_nan() || self.wide() == f64::INFINITY {
                    return self;
                }
                if self.wide() == 0.0 {
                    return $from(1);
                }
                if b & sign_bit == 0 {
                    $from(b + 1)
                } else {
                    $from(b - 1)
                }
            }
            fn next_down(self) -> Self {
                let b: $bits = $to(self);
                let sign_bit: $bits = 1 << (<$bits>::BITS - 1);
                if self.wide().is_nan() || self.wide() == f64::NEG_INFINITY {
                    return self;
                }
                if self.wide() == 0.0 {
                    return $from(sign_bit | 1);
                }
                if b & sign_bit == 0 {
                    $from(b - 1)
                } else {
                    $from(b + 1)
                }
            }
            fn max_finite(neg: bool) -> Self {
                let m: $t = $max;
                if neg {
                    $from($to(m) | (1 << (<$bits>::BITS - 1)))
                } else {
                    m
                }
            }
        }
    };
}

ieee_format!(
    f32,
    u32,
    |x: f64| x as f32,
    f64::from,
    f32::from_bits,
    f32::to_bits,
    f32::MAX
);
ieee_format!(
    half::f16,
    u16,
    half::f16::from_f64,
    half::f16::to_f64,
    half::f16::from_bits,
    half::f16::to_bits,
    half::f16::MAX
);
ieee_format!(
    half::bf16,
    u16,
    half::bf16::from_f64,
    half::bf16::to_f64,
    half::bf16::from_bits,
    half::bf16::to_bits,
    half::bf16::MAX
);

/// Round the exact value `hi + err` (where only the sign of `err` matters beyond `hi`) to `F`
/// in `mode` (`None` means round to nearest even).
pub fn round<F: Format>(hi: f64, err: f64, mode: Rnd) -> F {
    let f = F::rn(hi);
    let fw = f.wide();
    if hi.is_nan() {
        return f;
    }
    if fw.is_infinite() && hi.is_finite() {
        // Overflow: directed modes stop at the largest finite value on their side.
        let neg = hi < 0.0;
        return match mode {
            Rnd::Rz => F::max_finite(neg),
            Rnd::Rm if !neg => F::max_finite(false),
            Rnd::Rp if neg => F::max_finite(true),
            _ => f,
        };
    }
    if hi.is_infinite() {
        return f;
    }
    let d = hi - fw;
    let cmp = if d != 0.0 { sign(d) } else { sign(err) };
    if cmp == 0 {
        return f;
    }
    let (lo, up) = if cmp > 0 {
        (f, f.next_up())
    } else {
        (f.next_down(), f)
    };
    match mode {
        Rnd::Rm => lo,
        Rnd::Rp => up,
        Rnd::Rz => {
            let positive = if fw != 0.0 { fw > 0.0 } else { cmp > 0 };
            if positive { lo } else { up }
        }
        _ => {
            // Nearest: `F::rn(hi)` is right unless `hi` sits exactly on a midpoint and the
            // error pushes the exact value off it.
            let mid = (lo.wide() + up.wide()) / 2.0;
            if hi == mid && err != 0.0 {
                if err > 0.0 { up } else { lo }
            } else {
                f
            }
        }
    }
}

/// Flush an f32 subnormal to a zero of the same sign.
pub fn ftz32(x: f32) -> f32 {
    if x.is_subnormal() {
        0.0f32.copysign(x)
    } else {
        x
    }
}

/// `.sat`: clamp to [0, 1]; NaN becomes +0.
pub fn sat32(x: f32) -> f32 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

/// NaN results canonicalized as the hardware does.
pub fn canon32(x: f32) -> u32 {
    if x.is_nan() { NAN32 } else { x.to_bits() }
}

pub fn canon64(x: f64) -> u64 {
    if x.is_nan() { NAN64 } else { x.to_bits() }
}

/// A float rounded to an integer-valued float by an `i` rounding.
pub fn round_int(x: f64, mode: Rnd) -> f64 {
    match mode {
        Rnd::Rzi => x.trunc(),
        Rnd::Rmi => x.floor(),
        Rnd::Rpi => x.ceil(),
        _ => x.round_ties_even(),
    }
}

/// Float to integer of `bits` bits: round by `mode`, saturate to the range, NaN to 0 (what
/// `cvt` does on every NVIDIA GPU since sm_20).
pub fn float_to_int(x: f64, mode: Rnd, bits: u32, signed: bool) -> i128 {
    if x.is_nan() {
        return 0;
    }
    let r = round_int(x, mode);
    let (lo, hi) = if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    };
    if r <= lo as f64 {
        lo
    } else if r >= hi as f64 {
        hi
    } else {
        r as i128
    }
}

/// Integer to f64 bits in `mode`, exactly.
pub fn int_to_f64(v: i128, mode: Rnd) -> f64 {
    let f = v as f64;
    let back = f as i128;
    if back == v || mode == Rnd::Rn || mode == Rnd::None {
        return f;
    }
    let (lo, up) = if back < v {
        (f, f.next_up())
    } else {
        (f.next_down(), f)
    };
    match mode {
        Rnd::Rm => lo,
        Rnd::Rp => up,
        _ => {
            if v > 0 {
                lo
            } else {
                up
            }
        }
    }
}

/// Integer to a narrower float format in `mode`, exactly.
pub fn int_to<F: Format>(v: i128, mode: Rnd) -> F {
    let hi = v as f64;
    let err = (v - hi as i128) as f64;
    round::<F>(hi, err, mode)
}
