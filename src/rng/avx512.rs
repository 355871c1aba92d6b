//! Philox4x32-10 and the portable f32 Gaussians written with AVX-512 intrinsics, sixteen blocks
//! per vector.
//!
//! The compiler's own vectorization of the scalar code widens every 32 x 32 -> 64 multiply to
//! 64-bit lanes and narrows it back, which made the generator, not memory, the limit of the
//! CPU's noise ops. Here a multiply is two `vpmuludq` (even and odd lanes) and two blends. The
//! Gaussian arithmetic is that of [`super::gaussians_f32`] operation for operation (no fused
//! multiply-adds; square roots and conversions round as the scalar ones), so every value has
//! the scalar algorithm's bits; `tests` in the parent module check it.

use std::arch::x86_64::*;

use super::{PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1, key};

/// Blocks per vector.
const LANES: usize = 16;

/// Vector sets per Philox call.
const SETS: usize = 4;

/// `(hi, lo)` 32-bit halves of the products `a * m`, lane by lane.
#[inline]
#[target_feature(enable = "avx512f")]
fn mul_hi_lo(a: __m512i, m: __m512i) -> (__m512i, __m512i) {
    // `vpmuludq` multiplies the even 32-bit lanes; the odd lanes are shifted down first.
    let even = _mm512_mul_epu32(a, m);
    let odd = _mm512_mul_epu32(_mm512_srli_epi64::<32>(a), m);
    let hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64::<32>(even), odd);
    let lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64::<32>(odd));
    (hi, lo)
}

/// The four output words of blocks `blk .. blk + 16 N` of `stream`: word `k` of block
/// `blk + 16 i + j` in lane `j` of vector `k` of set `i`. Several independent sets go through
/// the rounds side by side, so one set's multiplies wait out the other's latency.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn philox<const N: usize>(seed: u64, stream: u64, blk: u64) -> [[__m512i; 4]; N] {
    let lo32 = |v: __m512i| _mm512_cvtepi64_epi32(v);
    let hi32 = |v: __m512i| _mm512_cvtepi64_epi32(_mm512_srli_epi64::<32>(v));
    let join = |a: __m256i, b: __m256i| _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b);
    let s_lo = _mm512_set1_epi32(stream as u32 as i32);
    let s_hi = _mm512_set1_epi32((stream >> 32) as u32 as i32);
    let mut c: [[__m512i; 4]; N] = std::array::from_fn(|i| {
        // The counters' low and high words, with the carry of `blk + j` across 2^32 taken in
        // 64 bits.
        let base = _mm512_set1_epi64(blk.wrapping_add((i * LANES) as u64) as i64);
        let a = _mm512_add_epi64(base, _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
        let b = _mm512_add_epi64(base, _mm512_setr_epi64(8, 9, 10, 11, 12, 13, 14, 15));
        [join(lo32(a), lo32(b)), join(hi32(a), hi32(b)), s_lo, s_hi]
    });
    let m0 = _mm512_set1_epi64(i64::from(PHILOX_M0));
    let m1 = _mm512_set1_epi64(i64::from(PHILOX_M1));
    let [mut k0, mut k1] = key(seed);
    for round in 0..10 {
        if round > 0 {
            k0 = k0.wrapping_add(PHILOX_W0);
            k1 = k1.wrapping_add(PHILOX_W1);
        }
        let (kv0, kv1) = (_mm512_set1_epi32(k0 as i32), _mm512_set1_epi32(k1 as i32));
        for c in c.iter_mut() {
            let (hi0, lo0) = mul_hi_lo(c[0], m0);
            let (hi1, lo1) = mul_hi_lo(c[2], m1);
            // 0x96: a ^ b ^ c.
            *c = [
                _mm512_ternarylogic_epi32::<0x96>(hi1, c[1], kv0),
                lo1,
                _mm512_ternarylogic_epi32::<0x96>(hi0, c[3], kv1),
                lo0,
            ];
        }
    }
    c
}

// The Box-Muller arithmetic below works on `K` independent vectors at once, each step applied
// to all of them before the next: its polynomials are long chains of dependent operations, and
// side by side one chain's latency is hidden behind the others' work.

/// `f` of each of the `K` vectors.
#[inline(always)]
fn each<A: Copy, R, const K: usize>(a: [A; K], f: impl Fn(A) -> R) -> [R; K] {
    std::array::from_fn(|i| f(a[i]))
}

/// `f` of each of the `K` pairs.
#[inline(always)]
fn each2<A: Copy, B: Copy, R, const K: usize>(
    a: [A; K],
    b: [B; K],
    f: impl Fn(A, B) -> R,
) -> [R; K] {
    std::array::from_fn(|i| f(a[i], b[i]))
}

/// `uniform` of every lane: `(f32(x >> 9) + 0.5) * 2^-23`.
#[inline]
#[target_feature(enable = "avx512f")]
fn uniform<const K: usize>(x: [__m512i; K]) -> [__m512; K] {
    let f = each(x, |x| _mm512_cvtepi32_ps(_mm512_srli_epi32::<9>(x)));
    let f = each(f, |f| _mm512_add_ps(f, _mm512_set1_ps(0.5)));
    each(f, |f| _mm512_mul_ps(f, _mm512_set1_ps(1.0 / 8_388_608.0)))
}

/// `a * b + c` rounded twice, as the scalar polynomials evaluate it.
#[inline]
#[target_feature(enable = "avx512f")]
fn mul_add<const K: usize>(a: [__m512; K], b: [__m512; K], c: f32) -> [__m512; K] {
    let ab = each2(a, b, |a, b| _mm512_mul_ps(a, b));
    each(ab, |ab| _mm512_add_ps(ab, _mm512_set1_ps(c)))
}

#[inline]
#[target_feature(enable = "avx512f")]
fn mul<const K: usize>(a: [__m512; K], b: [__m512; K]) -> [__m512; K] {
    each2(a, b, |a, b| _mm512_mul_ps(a, b))
}

#[inline]
#[target_feature(enable = "avx512f")]
fn add<const K: usize>(a: [__m512; K], b: [__m512; K]) -> [__m512; K] {
    each2(a, b, |a, b| _mm512_add_ps(a, b))
}

/// [`super::ln_f32`] lane by lane.
#[allow(clippy::excessive_precision)]
#[inline]
#[target_feature(enable = "avx512f")]
fn ln<const K: usize>(x: [__m512; K]) -> [__m512; K] {
    let bits = each(x, |x| _mm512_castps_si512(x));
    let e0 = each(bits, |b| {
        _mm512_sub_epi32(_mm512_srli_epi32::<23>(b), _mm512_set1_epi32(127))
    });
    let m0 = each(bits, |b| {
        _mm512_castsi512_ps(_mm512_or_si512(
            _mm512_and_si512(b, _mm512_set1_epi32(0x007f_ffff)),
            _mm512_set1_epi32(0x3f80_0000),
        ))
    });
    let sqrt2 = _mm512_set1_ps(std::f32::consts::SQRT_2);
    let big = each(m0, |m| _mm512_cmp_ps_mask::<_CMP_GT_OQ>(m, sqrt2));
    let m = each2(m0, big, |m, k| {
        _mm512_mask_mul_ps(m, k, m, _mm512_set1_ps(0.5))
    });
    let e = each2(e0, big, |e, k| {
        _mm512_cvtepi32_ps(_mm512_mask_add_epi32(e, k, e, _mm512_set1_epi32(1)))
    });
    let f = each(m, |m| _mm512_sub_ps(m, _mm512_set1_ps(1.0)));
    let f2 = mul(f, f);
    let mut p = [_mm512_set1_ps(7.037_683_6e-2); K];
    p = mul_add(p, f, -1.151_461_0e-1);
    p = mul_add(p, f, 1.167_699_9e-1);
    p = mul_add(p, f, -1.242_014_1e-1);
    p = mul_add(p, f, 1.424_932_3e-1);
    p = mul_add(p, f, -1.666_805_8e-1);
    p = mul_add(p, f, 2.000_071_5e-1);
    p = mul_add(p, f, -2.499_999_4e-1);
    p = mul_add(p, f, 3.333_333_1e-1);
    let mut y = mul(mul(f, f2), p);
    y = add(y, mul(e, [_mm512_set1_ps(-2.121_944_4e-4); K]));
    y = add(y, mul([_mm512_set1_ps(-0.5); K], f2));
    let z = add(f, y);
    add(z, mul(e, [_mm512_set1_ps(0.693_359_375); K]))
}

/// [`super::sincospi_f32`] lane by lane: `(sin(pi t), cos(pi t))`.
#[allow(clippy::excessive_precision)]
#[inline]
#[target_feature(enable = "avx512f")]
fn sincospi<const K: usize>(t: [__m512; K]) -> ([__m512; K], [__m512; K]) {
    let qi = each(t, |t| {
        let q = _mm512_add_ps(_mm512_mul_ps(t, _mm512_set1_ps(2.0)), _mm512_set1_ps(2.5));
        _mm512_sub_epi32(_mm512_cvttps_epi32(q), _mm512_set1_epi32(2))
    });
    let half_q = each(qi, |q| {
        _mm512_mul_ps(_mm512_cvtepi32_ps(q), _mm512_set1_ps(0.5))
    });
    let y = each2(t, half_q, |t, h| _mm512_sub_ps(t, h));
    let a = mul(y, [_mm512_set1_ps(std::f32::consts::PI); K]);
    let a2 = mul(a, a);
    let mut s = [_mm512_set1_ps(-2.505_210_8e-8); K];
    s = mul_add(s, a2, 2.755_731_9e-6);
    s = mul_add(s, a2, -1.984_127e-4);
    s = mul_add(s, a2, 8.333_333e-3);
    s = mul_add(s, a2, -1.666_666_7e-1);
    let sin = add(a, mul(mul(a, a2), s));
    let mut c = [_mm512_set1_ps(-2.755_731_9e-7); K];
    c = mul_add(c, a2, 2.480_158_7e-5);
    c = mul_add(c, a2, -1.388_888_9e-3);
    c = mul_add(c, a2, 4.166_666_6e-2);
    c = mul_add(c, a2, -0.5);
    let cos = add([_mm512_set1_ps(1.0); K], mul(a2, c));
    // q = 0: ( s,  c); q = 1: ( c, -s); q = 2: (-s, -c); q = 3: (-c,  s). Negation flips the
    // sign bit, as the scalar `-x` does.
    let out = |i: usize| {
        let q = _mm512_and_si512(qi[i], _mm512_set1_epi32(3));
        let one = _mm512_set1_epi32(1);
        let swap = _mm512_test_epi32_mask(q, one);
        let s1 = _mm512_mask_blend_ps(swap, sin[i], cos[i]);
        let c1 = _mm512_mask_blend_ps(swap, cos[i], sin[i]);
        let s_neg = _mm512_cmpge_epi32_mask(q, _mm512_set1_epi32(2));
        let c_neg = _mm512_test_epi32_mask(_mm512_add_epi32(q, one), _mm512_set1_epi32(2));
        let sign = _mm512_set1_epi32(i32::MIN);
        let flip = |v: __m512, k: __mmask16| {
            let v = _mm512_castps_si512(v);
            _mm512_castsi512_ps(_mm512_mask_xor_epi32(v, k, v, sign))
        };
        (flip(s1, s_neg), flip(c1, c_neg))
    };
    let both: [(__m512, __m512); K] = std::array::from_fn(out);
    (each(both, |b| b.0), each(both, |b| b.1))
}

/// The pairs `(r cos phi, r sin phi)` of [`super::gaussians_f32`] lane by lane, for `K` vector
/// pairs of words.
#[inline]
#[target_feature(enable = "avx512f")]
fn pairs<const K: usize>(xa: [__m512i; K], xb: [__m512i; K]) -> ([__m512; K], [__m512; K]) {
    let l = ln(uniform(xa));
    let r = each(l, |l| {
        _mm512_sqrt_ps(_mm512_mul_ps(_mm512_set1_ps(-2.0), l))
    });
    let t = each(uniform(xb), |u| {
        _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(2.0), u), _mm512_set1_ps(1.0))
    });
    let (s, c) = sincospi(t);
    (mul(r, c), mul(r, s))
}

/// Store four vectors whose lane `j` holds value `k` of block `j` as 64 values in block order.
#[inline]
#[target_feature(enable = "avx512f")]
fn store_interleaved(v: [__m512i; 4], out: &mut [u32; 4 * LANES]) {
    // (a0 b0 a1 b1 ...) pairs of words first, then pairs of those pairs.
    let lo2 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi2 = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let lo4 = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    let hi4 = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    let ab_lo = _mm512_permutex2var_epi32(v[0], lo2, v[1]);
    let ab_hi = _mm512_permutex2var_epi32(v[0], hi2, v[1]);
    let cd_lo = _mm512_permutex2var_epi32(v[2], lo2, v[3]);
    let cd_hi = _mm512_permutex2var_epi32(v[2], hi2, v[3]);
    let rows = [
        _mm512_permutex2var_epi64(ab_lo, lo4, cd_lo),
        _mm512_permutex2var_epi64(ab_lo, hi4, cd_lo),
        _mm512_permutex2var_epi64(ab_hi, lo4, cd_hi),
        _mm512_permutex2var_epi64(ab_hi, hi4, cd_hi),
    ];
    let p = out.as_mut_ptr().cast::<__m512i>();
    for (k, row) in rows.into_iter().enumerate() {
        // SAFETY: `out` is 256 bytes: four unaligned 64-byte rows.
        unsafe { _mm512_storeu_si512(p.add(k), row) };
    }
}

/// The Gaussians of blocks `blk .. blk + out.len() / 4`, block by block.
///
/// `out.len()` must be a multiple of `4 LANES SETS` = 256 (a shorter tail is left as it
/// was).
#[target_feature(enable = "avx512f")]
pub(super) fn gaussians(seed: u64, stream: u64, blk: u64, out: &mut [f32]) {
    for (j, o) in out.chunks_exact_mut(4 * LANES * SETS).enumerate() {
        let sets = philox::<SETS>(seed, stream, blk + (j * LANES * SETS) as u64);
        // Both pairs of two sets side by side.
        for (w, o) in sets.chunks_exact(2).zip(o.chunks_exact_mut(8 * LANES)) {
            let (a, b) = pairs(
                [w[0][0], w[0][2], w[1][0], w[1][2]],
                [w[0][1], w[0][3], w[1][1], w[1][3]],
            );
            let (o0, o1) = o.split_at_mut(4 * LANES);
            let z0 = [a[0], b[0], a[1], b[1]].map(|v| _mm512_castps_si512(v));
            let z1 = [a[2], b[2], a[3], b[3]].map(|v| _mm512_castps_si512(v));
            let o0: &mut [f32; 4 * LANES] = o0.try_into().expect("a chunk of 64");
            let o1: &mut [f32; 4 * LANES] = o1.try_into().expect("a chunk of 64");
            store_interleaved(z0, bytemuck::cast_mut(o0));
            store_interleaved(z1, bytemuck::cast_mut(o1));
        }
    }
}

/// The raw words of blocks `blk .. blk + out.len() / 4`, block by block.
///
/// `out.len()` must be a multiple of `4 LANES SETS` = 256 (a shorter tail is left as it
/// was).
#[target_feature(enable = "avx512f")]
pub(super) fn words(seed: u64, stream: u64, blk: u64, out: &mut [u32]) {
    for (j, o) in out.chunks_exact_mut(4 * LANES * SETS).enumerate() {
        let sets = philox::<SETS>(seed, stream, blk + (j * LANES * SETS) as u64);
        for (w, o) in sets.into_iter().zip(o.chunks_exact_mut(4 * LANES)) {
            let o: &mut [u32; 4 * LANES] = o.try_into().expect("a chunk of 64");
            store_interleaved(w, o);
        }
    }
}
