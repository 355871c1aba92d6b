//! The CPU backend: plain host memory; ops parallelize over chunks with rayon.

use rayon::prelude::*;

/// Elements per rayon task: large enough to amortize scheduling, small enough to balance two
/// to sixty-four cores.
pub const CHUNK: usize = 1 << 16;

/// `len` zeros whose pages are already written. A large zeroed allocation comes from the kernel
/// as untouched pages that map its shared zero page until written, so a buffer read before it
/// is written (an optimizer's or a noise generator's state) takes two faults per page, the
/// second a copy-on-write that flushes the other threads' TLBs by interrupt: a new UPGD
/// optimizer's first step over 2^26 weights took 1.2-1.4 s against 0.14 s for the next ones.
/// Written once here, in parallel, each page takes one fault.
pub fn zeros<T: bytemuck::Pod + Default + Send + Sync>(len: usize) -> Vec<T> {
    let mut v = vec![T::default(); len];
    v.par_chunks_mut(CHUNK).for_each(|c| {
        // A volatile write per page: `fill(0)` on memory the allocator reports zeroed may be
        // optimized away.
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(c);
        let last = bytes.len().saturating_sub(1);
        for at in (0..bytes.len()).step_by(4096).chain([last]) {
            // SAFETY: `at` is within `bytes`, a live, exclusively borrowed slice.
            unsafe { std::ptr::write_volatile(bytes.as_mut_ptr().add(at), 0) };
        }
    });
    v
}

/// A parallel memory copy, the CPU's yardstick in benchmarks.
///
/// On x86-64 the bulk goes through non-temporal stores, which write lines without first reading
/// them into the cache (a plain store's read for ownership costs a third transfer per element,
/// and `memcpy` only streams copies larger than the pieces one task gets). Measured at 2^26 f32
/// on the 2-core AMD EPYC this crate is developed on: 11.5 ms against 12-17 ms for
/// `copy_from_slice` per task.
pub fn copy<T: bytemuck::Pod + Send + Sync>(src: &[T], dst: &mut [T]) {
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| copy_streaming(bytemuck::cast_slice(s), bytemuck::cast_slice_mut(d)));
}

/// `dst.copy_from_slice(src)`, with non-temporal stores for the 16-byte aligned middle of `dst`
/// on x86-64 (SSE2, which every x86-64 has).
fn copy_streaming(src: &[u8], dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
        let head = dst.as_ptr().align_offset(16).min(dst.len());
        let (d_head, d_rest) = dst.split_at_mut(head);
        let (s_head, s_rest) = src.split_at(head);
        d_head.copy_from_slice(s_head);
        let whole = d_rest.len() / 16 * 16;
        let (d_mid, d_tail) = d_rest.split_at_mut(whole);
        let (s_mid, s_tail) = s_rest.split_at(whole);
        for (d, s) in d_mid.chunks_exact_mut(16).zip(s_mid.chunks_exact(16)) {
            // SAFETY: `s` and `d` are 16 bytes each; `d` is 16-byte aligned (it starts at a
            // multiple of 16 from the aligned `d_mid`), as `_mm_stream_si128` requires.
            unsafe {
                let v = _mm_loadu_si128(s.as_ptr().cast::<__m128i>());
                _mm_stream_si128(d.as_mut_ptr().cast::<__m128i>(), v);
            }
        }
        // SAFETY: a store fence has no preconditions; it orders the streaming stores before
        // whatever this thread does next (rayon's join then publishes them).
        unsafe { _mm_sfence() };
        d_tail.copy_from_slice(s_tail);
    }
    #[cfg(not(target_arch = "x86_64"))]
    dst.copy_from_slice(src);
}

/// The widest vector instructions this CPU has that the hot loops may use (detected at run
/// time: the crate is built for the baseline x86-64, SSE2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Baseline,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx512,
}

impl Isa {
    pub(crate) fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512dq")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx512bw")
            {
                return Isa::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }
}

/// `f()`, compiled for the widest vector instructions this CPU has: the closure's body is
/// inlined into a function built with those target features, so its loops vectorize wider
/// than the SSE2 baseline. The results are the same bits on every path: Rust never contracts
/// `a * b + c` to a fused multiply-add, and vector arithmetic, square roots, conversions,
/// minima and maxima round as the scalar ones do.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    match Isa::detect() {
        // SAFETY: `Isa::detect` saw the features at run time.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { with_avx512(f) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { with_avx2(f) },
        _ => f(),
    }
}

/// # Safety
/// The CPU must support AVX-512 F, DQ, VL and BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw")]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Ask the CPU to start loading the 64-byte line at `p` into its caches, and return at once.
/// `p` may point anywhere (a prefetch never faults): loops prefetch a fixed distance ahead of
/// what they read, across the 4 KiB page ends where the hardware prefetchers stop.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch reads and changes nothing, and does not fault on any address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zeros of every length around a task's and a page's size, in 4- and 2-byte elements.
    #[test]
    fn zeros_are_zero() {
        for len in [
            0,
            1,
            1023,
            1024,
            1025,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK + 7,
        ] {
            assert!(zeros::<f32>(len).iter().all(|&x| x.to_bits() == 0), "{len}");
            let v = zeros::<u16>(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0), "{len}");
        }
    }

    /// Every alignment of source and destination, lengths on both sides of the 16-byte
    /// streaming blocks, and a copy of many tasks: the bytes arrive, and nothing around them
    /// changes.
    #[test]
    fn copy_moves_every_byte_at_every_alignment() {
        let src: Vec<u8> = (0..256u32).map(|i| (i * 37 + 11) as u8).collect();
        for s_at in 0..16 {
            for d_at in 0..16 {
                for len in [0, 1, 15, 16, 17, 31, 32, 33, 100, 200] {
                    let mut dst = vec![0xA5u8; 256];
                    copy_streaming(&src[s_at..s_at + len], &mut dst[d_at..d_at + len]);
                    assert_eq!(dst[d_at..d_at + len], src[s_at..s_at + len]);
                    assert!(dst[..d_at].iter().all(|&b| b == 0xA5));
                    assert!(dst[d_at + len..].iter().all(|&b| b == 0xA5));
                }
            }
        }
        let big: Vec<f32> = (0..3 * CHUNK + 5).map(|i| i as f32 * 0.5).collect();
        let mut out = vec![0.0f32; big.len()];
        copy(&big, &mut out[..]);
        assert_eq!(out, big);
    }
}
