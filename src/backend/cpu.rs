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
