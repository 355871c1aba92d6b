//! A CPU interpreter for the PTX in `kernels/`, so every hand-written kernel runs against its
//! CPU reference on machines without a GPU (`Device::PtxEmu`, feature `ptx-emu`).
//!
//! # Scope and semantics
//!
//! The parser (`parse.rs`) reads the subset of PTX ISA 8.x our kernels use: `.version`,
//! `.target`, `.address_size 64`; `.entry` and `.func` with `.param` parameters (one return
//! aggregate per `.func`, as ptxas requires); `.reg` declarations including `%r<N>` ranges;
//! `.shared`, `.local` and `.param` variables with `.align`, and the launch's dynamic shared memory
//! as an `.extern .shared` array (`Dims::shared` bytes); labels; `@p` / `@!p` guards; vector
//! operands. It decodes every instruction once into `ir::Op`; anything it does not implement —
//! an instruction, a modifier, a form — is an error naming the line, never a silent no-op.
//!
//! Instructions follow the PTX ISA:
//! - integer `add sub mul{.lo,.hi,.wide} mad div rem min max neg abs not and or xor shl shr
//!   popc clz brev bfe bfi`, wrapping at the type's width (`.sat` on s32 add/sub clamps); shifts
//!   of at least the width give 0 (or the sign for `.s` right shifts); division by zero is an
//!   error rather than the hardware's unspecified value;
//! - float `add sub mul fma mad div rcp sqrt` on f32 in every IEEE rounding mode, exactly
//!   (computed in f64 with an exact error term, rounded once); f64 in round-to-nearest; `.ftz`
//!   flushes subnormal inputs and results, `.sat` clamps to [0, 1]; NaN results are the
//!   canonical `0x7fffffff`; `min`/`max` return the non-NaN operand and order -0 below +0;
//! - the `.approx` forms (`rcp sqrt rsqrt ex2 lg2 sin cos div`) are computed with Rust's f32
//!   library functions: close to, but not bit-identical with, the GPU's MUFU results, so a kernel
//!   checked on the emulator with `.approx` still needs its tolerance on a real GPU;
//! - `cvt` between all integer and float types (f16, bf16, f32, f64) with every rounding mode,
//!   `.sat` and `.ftz`; float-to-integer saturates and maps NaN to 0, as NVIDIA GPUs do;
//! - `setp` with every comparison (ordered and unordered), the `|q` complement and `.and/.or/.xor`
//!   combination; `selp`; `mov` including special registers (`%tid %ntid %ctaid %nctaid` in
//!   x/y/z, `%laneid`, `%warpid` = linear thread id / 32, `%dynamic_smem_size`) and vector
//!   pack/unpack; `cvta`;
//! - `ld`/`st` in the param, global, shared, local and generic spaces, `.v2`/`.v4`, every scalar
//!   type (signed loads sign-extend); cache and ordering qualifiers are accepted and ignored,
//!   since the emulator is sequentially consistent (`membar`/`fence` likewise);
//! - `atom` and `red` (`add min max cas exch and or xor inc dec`, 32 and 64 bits, `add.f32`
//!   with round-to-nearest and flush-to-zero) on global and shared memory;
//! - `bra`, `call`, `ret`, `exit`, `bar.sync`, `shfl.sync` (up, down, bfly, idx, with the
//!   clamp and segment mask of `c`) and `vote.sync` (all, any, uni, ballot).
//!
//! The execution model and the errors it reports are described in `exec.rs`: out-of-bounds or
//! misaligned global access (only the buffers passed to the launch are mapped), shared memory
//! out of bounds, barriers that can never complete, collectives whose mask names an exited or
//! absent lane, reads of shared memory written by another thread since the last barrier, and
//! reads of registers never written.

pub mod exec;
pub mod float;
pub mod ir;
mod lex;
pub mod mem;
pub mod parse;

pub use exec::{Dims, Fault};
pub use ir::Module;
pub use mem::{Global, Region};

/// A syntax or decoding error, with its line.
#[derive(Clone, Debug)]
pub struct ParseError {
    pub line: u32,
    pub what: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

/// Parse and decode a module.
pub fn parse(src: &str) -> Result<Module, ParseError> {
    parse::parse(src)
}

/// A kernel argument, in the order of the entry's `.param` list.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    /// A device address (8 bytes).
    Ptr(u64),
    U64(u64),
    U32(u32),
    F32(f32),
}

impl Arg {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Arg::Ptr(v) | Arg::U64(v) => v.to_le_bytes().to_vec(),
            Arg::U32(v) => v.to_le_bytes().to_vec(),
            Arg::F32(v) => v.to_le_bytes().to_vec(),
        }
    }
}

/// The kernel parameter buffer of `entry` for `args`, or why they do not fit its `.param` list.
pub fn param_buffer(m: &Module, entry: &str, args: &[Arg]) -> Result<(usize, Vec<u8>), String> {
    let (idx, f) = m
        .func(entry)
        .filter(|(_, f)| f.entry)
        .ok_or_else(|| format!("no entry point {entry}"))?;
    if f.params.len() != args.len() {
        return Err(format!(
            "{entry} takes {} parameters, the launch passes {}",
            f.params.len(),
            args.len()
        ));
    }
    let mut buf = vec![0u8; f.param_bytes as usize];
    for (p, a) in f.params.iter().zip(args) {
        let b = a.bytes();
        if b.len() as u64 != p.slot.size {
            return Err(format!(
                "{entry} parameter {} has {} bytes, the launch passes {a:?}",
                p.name, p.slot.size
            ));
        }
        buf[p.slot.offset as usize..][..b.len()].copy_from_slice(&b);
    }
    Ok((idx, buf))
}
