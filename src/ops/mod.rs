//! The ops, one family per module. Each `mod.rs` holds the public API, the validation shared by
//! all backends, and the dispatch; `cpu.rs` is the reference; the GPU glue sits beside it.

pub mod clip;
pub mod fft;
pub mod mf_noise;
pub mod noise;
pub mod render;
pub mod splat;
pub mod upgd;
