//! Philox4x32-10 and the Gaussian transform: the reference every backend matches.
//!
//! All noise in the crate comes from this one counter-based generator (Salmon et al. 2011,
//! "Parallel random numbers: as easy as 1, 2, 3"), so every backend produces the same bits and
//! any element can be regenerated from its coordinates without state.
//!
//! - key `(k0, k1)` = low and high 32 bits of the 64-bit seed;
//! - element `i` (a global `u64` index) of stream `s` uses block counter
//!   `(lo32(i / 4), hi32(i / 4), lo32(s), hi32(s))` and output word `i % 4`;
//! - uniform from a word `x`: `u = (f32(x >> 9) + 0.5) * 2^-23`, in `(0, 1)` and exact;
//! - Gaussian (Box–Muller) from the word pairs `(x0, x1)` and `(x2, x3)` of one block:
//!   `r = sqrt(-2 ln u_a)`, `phi = pi (2 u_b - 1)`, `z_a = r cos(phi)`, `z_b = r sin(phi)`.
//!
//! [`gaussians_f64`] is the definition of the Gaussian values. [`gaussians_f32`] is the portable
//! single-precision algorithm that the CPU backend, the PTX and the WGSL all transcribe (the same
//! polynomials, the same order), because GPU `log`/`sin`/`cos` built-ins are too inaccurate near
//! `u = 1` and, on Vulkan, allowed errors of `2^-11`. Its distance from the definition is tested
//! exhaustively over every possible uniform in `tests/rng.rs`.

/// Philox multipliers and Weyl key increments (Random123).
pub const PHILOX_M0: u32 = 0xD251_1F53;
pub const PHILOX_M1: u32 = 0xCD9E_8D57;
pub const PHILOX_W0: u32 = 0x9E37_79B9;
pub const PHILOX_W1: u32 = 0xBB67_AE85;

/// One Philox4x32 block with 10 rounds.
#[inline(always)]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = ctr;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(PHILOX_W0);
            k[1] = k[1].wrapping_add(PHILOX_W1);
        }
        let p0 = u64::from(PHILOX_M0) * u64::from(c[0]);
        let p1 = u64::from(PHILOX_M1) * u64::from(c[2]);
        c = [
            ((p1 >> 32) as u32) ^ c[1] ^ k[0],
            p1 as u32,
            ((p0 >> 32) as u32) ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// The Philox key of a 64-bit seed.
#[inline(always)]
pub fn key(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// The four words of block `block` (= element index / 4) of `stream`.
#[inline(always)]
pub fn block(seed: u64, stream: u64, block: u64) -> [u32; 4] {
    philox4x32_10(
        [
            block as u32,
            (block >> 32) as u32,
            stream as u32,
            (stream >> 32) as u32,
        ],
        key(seed),
    )
}

/// The raw word of global element `i`.
pub fn word(seed: u64, stream: u64, i: u64) -> u32 {
    block(seed, stream, i / 4)[(i % 4) as usize]
}

/// Uniform in `(0, 1)` from a word: `(f32(x >> 9) + 0.5) * 2^-23`, exact.
#[inline(always)]
pub fn uniform(x: u32) -> f32 {
    ((x >> 9) as f32 + 0.5) * (1.0 / 8_388_608.0)
}

/// The definition of the four Gaussians of one block, evaluated in f64.
pub fn gaussians_f64(w: [u32; 4]) -> [f64; 4] {
    let pair = |xa: u32, xb: u32| {
        let r = (-2.0 * f64::from(uniform(xa)).ln()).sqrt();
        let phi = std::f64::consts::PI * (2.0 * f64::from(uniform(xb)) - 1.0);
        (r * phi.cos(), r * phi.sin())
    };
    let (z0, z1) = pair(w[0], w[1]);
    let (z2, z3) = pair(w[2], w[3]);
    [z0, z1, z2, z3]
}

/// The Gaussian of global element `i`, by the definition (f64).
pub fn gaussian_f64(seed: u64, stream: u64, i: u64) -> f64 {
    gaussians_f64(block(seed, stream, i / 4))[(i % 4) as usize]
}

/// Natural log for `x` in `(0, 1)`, a normal f32 (Cephes `logf`): `x = 2^e m` with
/// `m` in `[sqrt(1/2), sqrt(2))`, `ln(1 + f)` by a degree-9 polynomial in `f = m - 1` (exact),
/// and `e ln 2` split in two parts. Relative error about 1 ulp, including near `x = 1`, where
/// `f` is tiny and the result keeps full relative precision.
// The constants are written as in Cephes and in the PTX/WGSL transcriptions; each literal
// rounds to the intended f32.
#[allow(clippy::excessive_precision)]
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    let bits = x.to_bits();
    let e0 = ((bits >> 23) as i32) - 127;
    let m0 = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let big = m0 > std::f32::consts::SQRT_2;
    let m = if big { m0 * 0.5 } else { m0 };
    let e = (if big { e0 + 1 } else { e0 }) as f32;
    let f = m - 1.0;
    let f2 = f * f;
    let mut p = 7.037_683_6e-2_f32;
    p = p * f - 1.151_461_0e-1;
    p = p * f + 1.167_699_9e-1;
    p = p * f - 1.242_014_1e-1;
    p = p * f + 1.424_932_3e-1;
    p = p * f - 1.666_805_8e-1;
    p = p * f + 2.000_071_5e-1;
    p = p * f - 2.499_999_4e-1;
    p = p * f + 3.333_333_1e-1;
    let mut y = f * f2 * p;
    y += e * -2.121_944_4e-4;
    y += -0.5 * f2;
    let z = f + y;
    z + e * 0.693_359_375
}

/// `(sin(pi t), cos(pi t))` for `t` in `(-1, 1)`: quadrant `q = round(2t)` (no ties occur for
/// the `t = 2u - 1` we feed it), `y = t - q/2` exact in `[-1/4, 1/4]`, Taylor polynomials in
/// `a = pi y` to degree 11 (sin) and 10 (cos), then the quadrant's signs and swap.
#[allow(clippy::excessive_precision)]
#[inline(always)]
pub fn sincospi_f32(t: f32) -> (f32, f32) {
    // floor(2t + 2.5) - 2 = round(2t) for 2t in (-2, 2) away from ties; truncation of a
    // positive value is floor and vectorizes, unlike f32::round.
    let qi = (t * 2.0 + 2.5) as i32 - 2;
    let y = t - qi as f32 * 0.5;
    let a = y * std::f32::consts::PI;
    let a2 = a * a;
    let mut s = -2.505_210_8e-8_f32; // -1/11!
    s = s * a2 + 2.755_731_9e-6; // 1/9!
    s = s * a2 - 1.984_127e-4; // -1/7!
    s = s * a2 + 8.333_333e-3; // 1/5!
    s = s * a2 - 1.666_666_7e-1; // -1/3!
    let sin = a + a * a2 * s;
    let mut c = -2.755_731_9e-7_f32; // -1/10!
    c = c * a2 + 2.480_158_7e-5; // 1/8!
    c = c * a2 - 1.388_888_9e-3; // -1/6!
    c = c * a2 + 4.166_666_6e-2; // 1/4!
    c = c * a2 - 0.5; // -1/2!
    let cos = 1.0 + a2 * c;
    let q = qi & 3;
    let swap = (q & 1) == 1;
    let (s1, c1) = if swap { (cos, sin) } else { (sin, cos) };
    // q = 0: ( s,  c); q = 1: ( c, -s); q = 2: (-s, -c); q = 3: (-c,  s)
    let s_neg = q >= 2;
    let c_neg = q == 1 || q == 2;
    (if s_neg { -s1 } else { s1 }, if c_neg { -c1 } else { c1 })
}

/// The portable f32 algorithm for the four Gaussians of one block, as every backend computes it.
#[inline(always)]
pub fn gaussians_f32(w: [u32; 4]) -> [f32; 4] {
    #[inline(always)]
    fn pair(xa: u32, xb: u32) -> (f32, f32) {
        let r = (-2.0 * ln_f32(uniform(xa))).sqrt();
        let (s, c) = sincospi_f32(2.0 * uniform(xb) - 1.0);
        (r * c, r * s)
    }
    let (z0, z1) = pair(w[0], w[1]);
    let (z2, z3) = pair(w[2], w[3]);
    [z0, z1, z2, z3]
}

/// A seed from the operating system's entropy, for callers who give none.
pub fn entropy_seed() -> crate::Result<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| crate::Error::InvalidArgument {
        op: "entropy_seed",
        what: format!("the operating system gave no entropy: {e}"),
    })?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(target_arch = "x86_64")]
mod avx512;

use crate::backend::cpu::Isa;

/// [`avx512::gaussians`] for the batch loops, which run it only where [`Isa::detect`] saw
/// AVX-512.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn avx512_gaussians(seed: u64, stream: u64, blk: u64, out: &mut [f32; BATCH]) {
    debug_assert_eq!(Isa::detect(), Isa::Avx512);
    // SAFETY: only called where `Isa::detect` returned `Avx512`.
    unsafe { avx512::gaussians(seed, stream, blk, out) }
}

/// [`avx512::words`], as [`avx512_gaussians`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn avx512_words(seed: u64, stream: u64, blk: u64, out: &mut [u32; BATCH]) {
    debug_assert_eq!(Isa::detect(), Isa::Avx512);
    // SAFETY: as above.
    unsafe { avx512::words(seed, stream, blk, out) }
}

/// Blocks generated per batch by the slice fillers: enough for the compiler to vectorize the
/// loop, small enough to stay in L1.
const BATCH_BLOCKS: usize = 64;

/// `dst[j]` = the Gaussian of global element `first + j` of `stream`, by the portable f32
/// algorithm. `first + dst.len()` must not overflow (the ops validate it).
///
/// Measured on the development machine (AMD EPYC with AVX-512), one thread on data in cache:
/// 265 M/s baseline, 370 M/s AVX2 (the compiler's vectorization of `gaussian_batch`),
/// 1.0 G/s AVX-512 (the intrinsics of `avx512.rs`); [`words_into`] 2.1 G/s with AVX-512.
pub fn gaussians_into(seed: u64, stream: u64, first: u64, dst: &mut [f32]) {
    let isa = Isa::detect();
    fill_by_blocks(first, dst, |blk, out| {
        if out.len() < FEW {
            for (b, o) in out.chunks_exact_mut(4).enumerate() {
                o.copy_from_slice(&gaussians_f32(block(seed, stream, blk + b as u64)));
            }
            return;
        }
        by_batch(blk, out, |blk, batch| match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512_gaussians(seed, stream, blk, batch),
            // SAFETY: `Isa::detect` saw the features at run time.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { gaussian_batch_avx2(seed, stream, blk, batch) },
            _ => gaussian_batch(seed, stream, blk, batch),
        })
    });
}

/// The Gaussians of blocks `blk .. blk + BATCH_BLOCKS`, block by block. Written lane-wise
/// (all blocks' words, then all Gaussians, then interleaved) so the compiler vectorizes each
/// loop across blocks; the operations per value are those of [`gaussians_f32`], in the same
/// order, so every path gives the same bits (Rust never contracts to FMA, and vector square
/// roots and conversions round as the scalar ones).
#[inline(always)]
fn gaussian_batch(seed: u64, stream: u64, blk: u64, out: &mut [f32; BATCH]) {
    let mut w = [[0u32; BATCH_BLOCKS]; 4];
    for b in 0..BATCH_BLOCKS {
        let x = block(seed, stream, blk + b as u64);
        for (lane, v) in w.iter_mut().zip(x) {
            lane[b] = v;
        }
    }
    let mut z = [[0.0f32; BATCH_BLOCKS]; 4];
    for b in 0..BATCH_BLOCKS {
        let g = gaussians_f32([w[0][b], w[1][b], w[2][b], w[3][b]]);
        for (lane, v) in z.iter_mut().zip(g) {
            lane[b] = v;
        }
    }
    for (b, o) in out.chunks_exact_mut(4).enumerate() {
        o.copy_from_slice(&[z[0][b], z[1][b], z[2][b], z[3][b]]);
    }
}

/// [`gaussian_batch`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gaussian_batch_avx2(seed: u64, stream: u64, blk: u64, out: &mut [f32; BATCH]) {
    gaussian_batch(seed, stream, blk, out);
}

/// `dst[j]` = the raw word of global element `first + j` of `stream`.
pub fn words_into(seed: u64, stream: u64, first: u64, dst: &mut [u32]) {
    let isa = Isa::detect();
    fill_by_blocks(first, dst, |blk, out| {
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 && out.len() >= FEW {
            by_batch(blk, out, |blk, batch| {
                avx512_words(seed, stream, blk, batch)
            });
            return;
        }
        for (b, o) in out.chunks_exact_mut(4).enumerate() {
            o.copy_from_slice(&block(seed, stream, blk + b as u64));
        }
    });
}

/// `dst[j]` = the Gaussian of global element `first + j` by the definition (f64): the values
/// every backend is compared against.
pub fn gaussians_f64_into(seed: u64, stream: u64, first: u64, dst: &mut [f64]) {
    fill_by_blocks(first, dst, |blk, out| {
        for (b, o) in out.chunks_exact_mut(4).enumerate() {
            o.copy_from_slice(&gaussians_f64(block(seed, stream, blk + b as u64)));
        }
    });
}

/// Values per batch of the slice fillers.
const BATCH: usize = 4 * BATCH_BLOCKS;

/// Below this many values (16 blocks) the fillers compute block by block: a vector batch
/// always computes all its blocks, and a block cut by a slice's start or end cost a whole batch
/// (a slice of 256 from an index that is not a multiple of 4 took two). At 2^26 from offset 1,
/// A/B: `add_gaussian` (slices of 1024) 51-52 -> 45-46 ms, BandMF p = 8 (slices of 256)
/// 150 -> 141 ms; from offset 0, 41 and 107-111 ms either way.
const FEW: usize = 64;

/// Walk `dst` in whole blocks: `generate(block, out)` fills `out` (a multiple of 4 long, at most
/// a batch) with the values of consecutive blocks from `block`. Whole batches that start on a
/// block boundary are generated in place; a block cut by the start (alone, so that the batches
/// after it are whole) and the blocks after the last whole batch go through a buffer, and only
/// the part that falls inside `dst` is copied out.
#[inline(always)]
fn fill_by_blocks<T: Copy + Default>(
    first: u64,
    dst: &mut [T],
    mut generate: impl FnMut(u64, &mut [T]),
) {
    let mut i = first;
    let mut rest = dst;
    while !rest.is_empty() {
        let skip = (i % 4) as usize;
        let take = if skip == 0 && rest.len() >= BATCH {
            generate(i / 4, &mut rest[..BATCH]);
            BATCH
        } else {
            let mut buf = [T::default(); BATCH];
            let n = if skip > 0 {
                1
            } else {
                rest.len().div_ceil(4).min(BATCH_BLOCKS)
            };
            generate(i / 4, &mut buf[..4 * n]);
            let take = (4 * n - skip).min(rest.len());
            rest[..take].copy_from_slice(&buf[skip..skip + take]);
            take
        };
        rest = &mut rest[take..];
        i += take as u64;
    }
}

/// `generate(block, batch)` into `out` (a multiple of 4 long, at most a batch): in place for a
/// whole batch, else through a buffer.
#[inline(always)]
fn by_batch<T: Copy + Default>(
    blk: u64,
    out: &mut [T],
    mut generate: impl FnMut(u64, &mut [T; BATCH]),
) {
    match <&mut [T; BATCH]>::try_from(&mut *out) {
        Ok(whole) => generate(blk, whole),
        Err(_) => {
            let mut batch = [T::default(); BATCH];
            generate(blk, &mut batch);
            out.copy_from_slice(&batch[..out.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every vector path gives the scalar algorithm's bits: 4096 batches (and some across the
    /// counter's carry) of every ISA this CPU has, against `gaussians_f32` block by block, and
    /// the slice fillers (Gaussians and words) at ragged offsets.
    #[test]
    fn vector_batches_equal_the_scalar_algorithm() {
        let isa = Isa::detect();
        eprintln!("rng batch ISA on this CPU: {isa:?}");
        // The last batches straddle the counter's 2^32 carry and the end of the block range.
        let near_carry = [(1u64 << 32) - 20, (1 << 32) - 1, u64::MAX / 4 - 70];
        let blks = (0..4096u64).map(|b| b * BATCH_BLOCKS as u64 + (b % 7));
        for blk in blks.chain(near_carry) {
            let mut want = [0.0f32; BATCH];
            for (b, o) in want.chunks_exact_mut(4).enumerate() {
                o.copy_from_slice(&gaussians_f32(block(3, 9, blk + b as u64)));
            }
            let mut got = [0.0f32; BATCH];
            gaussian_batch(3, 9, blk, &mut got);
            assert_eq!(
                got.map(f32::to_bits),
                want.map(f32::to_bits),
                "baseline {blk}"
            );
            #[cfg(target_arch = "x86_64")]
            {
                if isa != Isa::Baseline {
                    // SAFETY: detected above.
                    unsafe { gaussian_batch_avx2(3, 9, blk, &mut got) };
                    assert_eq!(got.map(f32::to_bits), want.map(f32::to_bits), "avx2 {blk}");
                }
                if isa == Isa::Avx512 {
                    avx512_gaussians(3, 9, blk, &mut got);
                    assert_eq!(
                        got.map(f32::to_bits),
                        want.map(f32::to_bits),
                        "avx512 {blk}"
                    );
                }
            }
        }
        // Heads cut inside a block (alone, or before whole batches), tails shorter and longer
        // than the block-by-block limit, and the end of the index range.
        let cases = [
            (0u64, 1usize),
            (1, 2),
            (3, 1000),
            (2, 300),
            (6, 63),
            (4, BATCH + FEW - 4),
            (8, BATCH + FEW),
            (u64::MAX - 5000, 5000),
        ];
        for (first, len) in cases {
            let mut got = vec![0.0f32; len];
            gaussians_into(5, 1, first, &mut got);
            let mut words = vec![0u32; len];
            words_into(5, 1, first, &mut words);
            for (j, (g, x)) in got.iter().zip(&words).enumerate() {
                let i = first + j as u64;
                let want = gaussians_f32(block(5, 1, i / 4))[(i % 4) as usize];
                assert_eq!(g.to_bits(), want.to_bits(), "{i}");
                assert_eq!(*x, word(5, 1, i), "word {i}");
            }
        }
    }
}
