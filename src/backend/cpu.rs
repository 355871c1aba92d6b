//! The CPU backend: plain host memory; ops parallelize over chunks with rayon.

use rayon::prelude::*;

/// Elements per rayon task: large enough to amortize scheduling, small enough to balance two
/// to sixty-four cores.
pub const CHUNK: usize = 1 << 16;

/// A parallel memory copy, the CPU's yardstick in benchmarks.
pub fn copy<T: Copy + Send + Sync>(src: &[T], dst: &mut [T]) {
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| d.copy_from_slice(s));
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
