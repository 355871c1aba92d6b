//! The PTX emulator's own checks: instructions against hand-computed results (the awkward
//! cases included), every reported error kind provoked by a small planted-bug kernel, and the
//! execution model (barriers, warp collectives, calls, atomics across blocks).
#![cfg(feature = "ptx-emu")]

use std::sync::atomic::{AtomicU32, Ordering};

use trainkern::ptx::{self, Arg, Dims, Fault, Global, Region};

const BASE: u64 = 1 << 40;

/// A module with one entry `k(.param .u64 out)` whose body is `body`, with registers declared.
fn module(body: &str, extra: &str) -> String {
    format!(
        ".version 8.0\n.target sm_80\n.address_size 64\n{extra}\n\
         .visible .entry k(.param .u64 out)\n{{\n\
         .reg .b64 %out, %rd<8>;\n.reg .b32 %r<16>;\n.reg .f32 %f<16>;\n.reg .pred %p<8>;\n\
         .reg .b16 %h<4>;\n.reg .f64 %d<4>;\n\
         ld.param.u64 %out, [out];\n{body}\nret;\n}}\n"
    )
}

/// Run `src` over `dims` with an output buffer of `words` u32 (initially `init`); returns the
/// buffer after the launch, or the fault.
fn run_src(src: &str, dims: Dims, words: usize, init: u32) -> Result<Vec<u32>, String> {
    let m = ptx::parse(src).map_err(|e| format!("parse: {e}"))?;
    let mem: Vec<AtomicU32> = (0..words).map(|_| AtomicU32::new(init)).collect();
    let (idx, params) = ptx::param_buffer(&m, "k", &[Arg::Ptr(BASE)])?;
    let global = Global::new(vec![Region {
        addr: BASE,
        bytes: 4 * words as u64,
        words: &mem,
        words_addr: BASE,
    }]);
    ptx::exec::run(&m, idx, dims, &params, &global).map_err(|f: Fault| {
        format!(
            "line {} block {:?} thread {:?}: {}",
            f.line, f.block, f.thread, f.what
        )
    })?;
    Ok(mem.iter().map(|w| w.load(Ordering::Relaxed)).collect())
}

fn one_thread(body: &str, words: usize) -> Vec<u32> {
    run_src(&module(body, ""), dims(1, 1), words, 0xDEAD_BEEF).unwrap_or_else(|e| panic!("{e}"))
}

fn dims(grid: u32, block: u32) -> Dims {
    Dims {
        grid: [grid, 1, 1],
        block: [block, 1, 1],
        shared: 0,
    }
}

fn f(x: f32) -> u32 {
    x.to_bits()
}

#[test]
fn integer_arithmetic() {
    let out = one_thread(
        "mov.u32 %r1, 0xFFFFFFFF;
         mul.hi.u32 %r2, %r1, %r1;          st.global.u32 [%out], %r2;
         mul.hi.s32 %r2, %r1, %r1;          st.global.u32 [%out+4], %r2;
         mov.u32 %r3, 0x80000000;
         mul.hi.s32 %r2, %r3, %r3;          st.global.u32 [%out+8], %r2;
         mul.wide.u32 %rd1, %r1, %r1;       st.global.u64 [%out+16], %rd1;
         mov.u32 %r4, -2;
         mov.u32 %r5, 3;
         mul.wide.s32 %rd2, %r4, %r5;       st.global.u64 [%out+24], %rd2;
         mov.u32 %r6, 0x7FFFFFFF;
         add.sat.s32 %r2, %r6, 1;           st.global.u32 [%out+32], %r2;
         add.u32 %r2, %r6, 1;               st.global.u32 [%out+36], %r2;
         mad.lo.u32 %r2, %r5, %r5, 1;       st.global.u32 [%out+40], %r2;
         mov.u32 %r7, -7;
         div.s32 %r2, %r7, 2;               st.global.u32 [%out+44], %r2;
         rem.s32 %r2, %r7, 2;               st.global.u32 [%out+48], %r2;
         div.u32 %r2, 7, 2;                 st.global.u32 [%out+52], %r2;
         shl.b32 %r2, %r5, 32;              st.global.u32 [%out+56], %r2;
         shr.s32 %r2, -8, 1;                st.global.u32 [%out+60], %r2;
         shr.s32 %r2, %r1, 40;              st.global.u32 [%out+64], %r2;
         shr.u32 %r2, %r3, 31;              st.global.u32 [%out+68], %r2;
         min.s32 %r2, %r1, 5;               st.global.u32 [%out+72], %r2;
         min.u32 %r2, %r1, 5;               st.global.u32 [%out+76], %r2;
         popc.b32 %r2, %r1;                 st.global.u32 [%out+80], %r2;
         clz.b32 %r2, 1;                    st.global.u32 [%out+84], %r2;
         brev.b32 %r2, 1;                   st.global.u32 [%out+88], %r2;
         bfe.u32 %r2, 0xF0, 4, 4;           st.global.u32 [%out+92], %r2;
         bfe.s32 %r2, 0xF0, 4, 4;           st.global.u32 [%out+96], %r2;
         bfi.b32 %r2, 0xF, 0, 8, 4;         st.global.u32 [%out+100], %r2;
         neg.s32 %r2, %r3;                  st.global.u32 [%out+104], %r2;
         abs.s32 %r2, -5;                   st.global.u32 [%out+108], %r2;
         not.b32 %r2, 0;                    st.global.u32 [%out+112], %r2;
         mad.wide.u32 %rd3, %r1, 2, %rd1;   st.global.u64 [%out+120], %rd3;",
        32,
    );
    let w = |i: usize| out[i / 4];
    let w64 = |i: usize| out[i / 4] as u64 | (out[i / 4 + 1] as u64) << 32;
    assert_eq!(w(0), 0xFFFF_FFFE, "mul.hi.u32 of max by max");
    assert_eq!(w(4), 0, "mul.hi.s32 of -1 by -1");
    assert_eq!(w(8), 0x4000_0000, "mul.hi.s32 of INT_MIN squared");
    assert_eq!(w64(16), 0xFFFF_FFFE_0000_0001);
    assert_eq!(w64(24), (-6i64) as u64);
    assert_eq!(w(32), 0x7FFF_FFFF, "add.sat saturates");
    assert_eq!(w(36), 0x8000_0000, "add wraps");
    assert_eq!(w(40), 10);
    assert_eq!(w(44), (-3i32) as u32, "division truncates");
    assert_eq!(w(48), (-1i32) as u32, "remainder takes the dividend's sign");
    assert_eq!(w(52), 3);
    assert_eq!(w(56), 0, "shift by the width");
    assert_eq!(w(60), (-4i32) as u32);
    assert_eq!(
        w(64),
        u32::MAX,
        "arithmetic shift past the width fills with the sign"
    );
    assert_eq!(w(68), 1);
    assert_eq!(w(72), u32::MAX, "min.s32(-1, 5)");
    assert_eq!(w(76), 5, "min.u32(max, 5)");
    assert_eq!(w(80), 32);
    assert_eq!(w(84), 31);
    assert_eq!(w(88), 0x8000_0000);
    assert_eq!(w(92), 0xF);
    assert_eq!(w(96), u32::MAX, "bfe.s32 sign-extends the field");
    assert_eq!(w(100), 0xF00);
    assert_eq!(w(104), 0x8000_0000, "neg of INT_MIN wraps");
    assert_eq!(w(108), 5);
    assert_eq!(w(112), u32::MAX);
    assert_eq!(
        w64(120),
        0xFFFF_FFFE_0000_0001u64.wrapping_add(0x1_FFFF_FFFE)
    );
}

#[test]
fn conversions_round_as_specified() {
    let out = one_thread(
        "cvt.rni.s32.f32 %r1, 0f40200000;  st.global.u32 [%out], %r1;
         cvt.rni.s32.f32 %r1, 0f40600000;  st.global.u32 [%out+4], %r1;
         cvt.rni.s32.f32 %r1, 0fC0200000;  st.global.u32 [%out+8], %r1;
         cvt.rzi.s32.f32 %r1, 0fC02CCCCD;  st.global.u32 [%out+12], %r1;
         cvt.rmi.s32.f32 %r1, 0fC02CCCCD;  st.global.u32 [%out+16], %r1;
         cvt.rpi.s32.f32 %r1, 0f40066666;  st.global.u32 [%out+20], %r1;
         cvt.rzi.s32.f32 %r1, 0f7FC00000;  st.global.u32 [%out+24], %r1;
         cvt.rzi.s32.f32 %r1, 0f4F32D05E;  st.global.u32 [%out+28], %r1;
         cvt.rzi.u32.f32 %r1, 0fBF800000;  st.global.u32 [%out+32], %r1;
         cvt.rn.f16.f32 %h1, 0f3F801000;   cvt.u32.u16 %r1, %h1; st.global.u32 [%out+36], %r1;
         cvt.rn.f16.f32 %h1, 0f3F803000;   cvt.u32.u16 %r1, %h1; st.global.u32 [%out+40], %r1;
         cvt.rz.f16.f32 %h1, 0f477FF000;   cvt.u32.u16 %r1, %h1; st.global.u32 [%out+44], %r1;
         cvt.rn.f16.f32 %h1, 0f477FF000;   cvt.u32.u16 %r1, %h1; st.global.u32 [%out+48], %r1;
         cvt.rn.bf16.f32 %h1, 0f3F808000;  cvt.u32.u16 %r1, %h1; st.global.u32 [%out+52], %r1;
         cvt.rn.bf16.f32 %h1, 0f3F818000;  cvt.u32.u16 %r1, %h1; st.global.u32 [%out+56], %r1;
         mov.b16 %h2, 0x0001;
         cvt.f32.f16 %f1, %h2;             st.global.f32 [%out+60], %f1;
         cvt.rn.f32.u32 %f1, 0xFFFFFFFF;   st.global.f32 [%out+64], %f1;
         cvt.rz.f32.u32 %f1, 0xFFFFFFFF;   st.global.f32 [%out+68], %f1;
         cvt.sat.u8.s32 %r1, 300;          st.global.u32 [%out+72], %r1;
         cvt.s8.s32 %r1, 255;              st.global.u32 [%out+76], %r1;
         cvt.rni.f32.f32 %f1, 0f40200000;  st.global.f32 [%out+80], %f1;
         cvt.sat.f32.f32 %f1, 0f40200000;  st.global.f32 [%out+84], %f1;
         cvt.rn.f32.f64 %f1, 0d3FF0000010000000; st.global.f32 [%out+88], %f1;",
        24,
    );
    assert_eq!(out[0] as i32, 2, "rni: 2.5 ties to even");
    assert_eq!(out[1] as i32, 4, "rni: 3.5 ties to even");
    assert_eq!(out[2] as i32, -2, "rni: -2.5 ties to even");
    assert_eq!(out[3] as i32, -2, "rzi of -2.7");
    assert_eq!(out[4] as i32, -3, "rmi of -2.7");
    assert_eq!(out[5] as i32, 3, "rpi of 2.1");
    assert_eq!(out[6], 0, "NaN converts to 0");
    assert_eq!(out[7], 0x7FFF_FFFF, "3e9 saturates");
    assert_eq!(out[8], 0, "-1 saturates to 0 unsigned");
    assert_eq!(out[9], 0x3C00, "1 + 2^-11 ties to even 1.0 in f16");
    assert_eq!(out[10], 0x3C02, "1 + 3*2^-11 ties to even 1 + 2^-9");
    assert_eq!(out[11], 0x7BFF, "rz keeps 65520 finite");
    assert_eq!(out[12], 0x7C00, "rn rounds 65520 to infinity");
    assert_eq!(out[13], 0x3F80, "bf16 tie to even (down)");
    assert_eq!(out[14], 0x3F82, "bf16 tie to even (up)");
    assert_eq!(out[15], f(2f32.powi(-24)), "f16 subnormal widens exactly");
    assert_eq!(out[16], f(4_294_967_296.0));
    assert_eq!(out[17], 0x4F7F_FFFF, "rz of u32::MAX");
    assert_eq!(out[18], 255, "sat to u8");
    assert_eq!(out[19], u32::MAX, "s8 truncation sign-extends");
    assert_eq!(out[20], f(2.0), "rni in float");
    assert_eq!(out[21], f(1.0), "sat clamps");
    assert_eq!(out[22], f(1.0), "f64 to f32 rounds to nearest");
}

#[test]
fn float_arithmetic_in_every_rounding_mode() {
    let out = one_thread(
        "add.rz.f32 %f1, 0f3F800000, 0f30800000;  st.global.f32 [%out], %f1;
         add.rp.f32 %f1, 0f3F800000, 0f30800000;  st.global.f32 [%out+4], %f1;
         add.rm.f32 %f1, 0fBF800000, 0fB0800000;  st.global.f32 [%out+8], %f1;
         add.rn.f32 %f1, 0f3F800000, 0f30800000;  st.global.f32 [%out+12], %f1;
         fma.rn.f32 %f1, 0f3F800800, 0f3F800800, 0fBF801000; st.global.f32 [%out+16], %f1;
         mul.rn.f32 %f2, 0f3F800800, 0f3F800800;
         add.rn.f32 %f1, %f2, 0fBF801000;         st.global.f32 [%out+20], %f1;
         div.rn.f32 %f1, 0f3F800000, 0f40400000;  st.global.f32 [%out+24], %f1;
         div.rz.f32 %f1, 0f3F800000, 0f40400000;  st.global.f32 [%out+28], %f1;
         sqrt.rn.f32 %f1, 0f40000000;             st.global.f32 [%out+32], %f1;
         rcp.rn.f32 %f1, 0f40400000;              st.global.f32 [%out+36], %f1;
         min.f32 %f1, 0f7FC00000, 0f3F800000;     st.global.f32 [%out+40], %f1;
         max.f32 %f1, 0f80000000, 0f00000000;     st.global.f32 [%out+44], %f1;
         add.ftz.f32 %f1, 0f00000001, 0f00000000; st.global.f32 [%out+48], %f1;
         add.f32 %f1, 0f00000001, 0f00000000;     st.global.f32 [%out+52], %f1;
         mul.sat.f32 %f1, 0f40000000, 0f40000000; st.global.f32 [%out+56], %f1;
         sub.rn.f32 %f1, 0f7F800000, 0f7F800000;  st.global.f32 [%out+60], %f1;
         neg.f32 %f1, 0f3F800000;                 st.global.f32 [%out+64], %f1;
         abs.f32 %f1, 0fBF800000;                 st.global.f32 [%out+68], %f1;
         ex2.approx.f32 %f1, 0f40400000;          st.global.f32 [%out+72], %f1;
         add.rn.f64 %d1, 0d3FF0000000000000, 0d3CA0000000000000; st.global.f64 [%out+80], %d1;",
        22,
    );
    assert_eq!(out[0], 0x3F80_0000, "rz: 1 + 2^-30 -> 1");
    assert_eq!(out[1], 0x3F80_0001, "rp: 1 + 2^-30 -> next up");
    assert_eq!(out[2], 0xBF80_0001, "rm: -1 - 2^-30 -> next down");
    assert_eq!(out[3], 0x3F80_0000);
    // (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24: a tie in f32, which mul rounds to even.
    assert_eq!(out[4], f(2f32.powi(-24)), "fma keeps the exact product");
    assert_eq!(out[5], 0, "mul then add rounds the product first");
    assert_eq!(out[6], 0x3EAA_AAAB, "1/3 to nearest");
    assert_eq!(out[7], 0x3EAA_AAAA, "1/3 toward zero");
    assert_eq!(out[8], 0x3FB5_04F3, "sqrt 2");
    assert_eq!(out[9], 0x3EAA_AAAB);
    assert_eq!(out[10], f(1.0), "min with NaN gives the number");
    assert_eq!(out[11], 0, "max(-0, +0) is +0");
    assert_eq!(out[12], 0, "ftz flushes the subnormal");
    assert_eq!(out[13], 1, "without ftz it stays");
    assert_eq!(out[14], f(1.0), "sat clamps to 1");
    assert_eq!(out[15], 0x7FFF_FFFF, "inf - inf is the canonical NaN");
    assert_eq!(out[16], f(-1.0));
    assert_eq!(out[17], f(1.0));
    assert_eq!(out[18], f(8.0));
    assert_eq!(
        out[20] as u64 | (out[21] as u64) << 32,
        1.0f64.to_bits(),
        "f64 tie to even"
    );
}

#[test]
fn predicates_selects_moves_and_memory() {
    let out = one_thread(
        "setp.lt.u32 %p1, 0xFFFFFFFF, 0;  selp.u32 %r1, 1, 0, %p1; st.global.u32 [%out], %r1;
         setp.lt.s32 %p1, 0xFFFFFFFF, 0;  selp.u32 %r1, 1, 0, %p1; st.global.u32 [%out+4], %r1;
         setp.ltu.f32 %p1, 0f7FC00000, 0f3F800000; selp.u32 %r1, 1, 0, %p1; st.global.u32 [%out+8], %r1;
         setp.lt.f32 %p1, 0f7FC00000, 0f3F800000;  selp.u32 %r1, 1, 0, %p1; st.global.u32 [%out+12], %r1;
         setp.eq.and.u32 %p2|%p3, 1, 1, %p1;
         selp.u32 %r1, 1, 0, %p2; st.global.u32 [%out+16], %r1;
         selp.u32 %r1, 1, 0, %p3; st.global.u32 [%out+20], %r1;
         mov.b64 %rd1, {%r1, 7};   st.global.u64 [%out+24], %rd1;
         mov.b64 {%r2, %r3}, 0x0000000500000004; st.global.v2.u32 [%out+32], {%r3, %r2};
         st.global.v4.u32 [%out+48], {1, 2, 3, 4};
         ld.global.v4.u32 {%r4, %r5, %r6, %r7}, [%out+48];
         add.u32 %r4, %r4, %r7; st.global.u32 [%out+40], %r4;
         st.global.u32 [%out+64], 0xFFFFFF80;
         ld.global.s8 %r8, [%out+64]; st.global.u32 [%out+68], %r8;
         ld.global.u8 %r8, [%out+64]; st.global.u32 [%out+72], %r8;
         st.global.u32 [%out+76], 0x11223344;
         st.global.u16 [%out+78], 0xAABB;
         setp.eq.u32 %p1, 1, 1;
         @%p1 bra SKIP;
         st.global.u32 [%out+80], 9;
         SKIP:
         @!%p1 st.global.u32 [%out+84], 8;
         @%p1 st.global.u32 [%out+88], 7;",
        24,
    );
    assert_eq!(out[0], 0, "0xFFFFFFFF is not below 0 unsigned");
    assert_eq!(out[1], 1, "-1 is below 0 signed");
    assert_eq!(out[2], 1, "unordered compare with NaN");
    assert_eq!(out[3], 0, "ordered compare with NaN");
    assert_eq!(out[4], 0, "eq and false");
    assert_eq!(out[5], 0, "the complement is also combined with false");
    assert_eq!([out[6], out[7]], [0, 7]);
    assert_eq!([out[8], out[9]], [5, 4]);
    assert_eq!(out[10], 5);
    assert_eq!(out[17], (-128i32) as u32, "ld.s8 sign-extends");
    assert_eq!(out[18], 0x80);
    assert_eq!(
        out[19], 0xAABB_3344,
        "a 16-bit store keeps its word's other half"
    );
    assert_eq!(out[20], 0xDEAD_BEEF, "a taken branch skips");
    assert_eq!(out[21], 0xDEAD_BEEF, "@!p does not run when p is true");
    assert_eq!(out[22], 7, "@p runs when p is true");
}

#[test]
fn calls_pass_parameters_and_return_values() {
    let extra = ".func (.param .b32 y) twice_plus(.param .b32 a, .param .b32 b)
        {
            .reg .b32 %a, %b;
            ld.param.u32 %a, [a];
            ld.param.u32 %b, [b];
            mad.lo.u32 %a, %a, 2, %b;
            st.param.u32 [y], %a;
            ret;
        }";
    let body = "{
            .param .b32 pa;
            .param .b32 pb;
            .param .b32 pr;
            st.param.u32 [pa], 20;
            st.param.u32 [pb], 2;
            call (pr), twice_plus, (pa, pb);
            ld.param.u32 %r1, [pr];
        }
        st.global.u32 [%out], %r1;";
    let out = run_src(&module(body, extra), dims(1, 1), 1, 0).unwrap();
    assert_eq!(out[0], 42);
}

#[test]
fn special_registers_and_atomics_across_blocks() {
    let body = "mov.u32 %r1, %tid.x; mov.u32 %r2, %ctaid.x; mov.u32 %r3, %ntid.x;
        mad.lo.u32 %r4, %r2, %r3, %r1;
        mul.wide.u32 %rd1, %r4, 4; add.u64 %rd1, %rd1, %out;
        mov.u32 %r5, %laneid; mov.u32 %r6, %warpid;
        mad.lo.u32 %r5, %r6, 100, %r5;
        st.global.u32 [%rd1+16], %r5;
        atom.global.add.u32 %r7, [%out], 1;
        red.global.add.u32 [%out+4], 2;
        atom.global.add.f32 %f1, [%out+8], 0f3F000000;
        atom.global.max.s32 %r7, [%out+12], %r4;";
    let out = run_src(&module(body, ""), dims(3, 64), 4 + 192, 0).unwrap();
    assert_eq!(out[0], 192, "atom.add from 192 threads in 3 blocks");
    assert_eq!(out[1], 384);
    assert_eq!(out[2], f(96.0));
    assert_eq!(out[3], 191);
    for g in 0..192usize {
        let lin = (g % 64) as u32;
        assert_eq!(out[4 + g], (lin / 32) * 100 + lin % 32, "thread {g}");
    }
}

#[test]
fn cas_exch_inc_and_shared_atomics() {
    let body = ".shared .align 4 .b32 s[1];
        mov.u32 %r1, %tid.x;
        setp.eq.u32 %p1, %r1, 0;
        @%p1 st.shared.u32 [s], 0;
        bar.sync 0;
        atom.shared.add.u32 %r2, [s], 1;
        bar.sync 0;
        @!%p1 bra DONE;
        ld.shared.u32 %r3, [s];
        st.global.u32 [%out], %r3;
        atom.global.cas.b32 %r4, [%out+4], 5, 9;
        atom.global.cas.b32 %r4, [%out+4], 0, 7;
        st.global.u32 [%out+8], %r4;
        atom.global.exch.b32 %r4, [%out+12], 3;
        atom.global.inc.u32 %r4, [%out+16], 1;
        atom.global.inc.u32 %r4, [%out+16], 1;
        DONE:";
    let out = run_src(&module(body, ""), dims(1, 40), 5, 0).unwrap();
    assert_eq!(out[0], 40);
    assert_eq!(out[1], 7, "cas swaps only on a match");
    assert_eq!(out[2], 0, "cas returns the old value");
    assert_eq!(out[3], 3);
    assert_eq!(out[4], 0, "inc wraps to 0 at the bound");
}

#[test]
fn warp_shuffles_and_votes() {
    let body = "mov.u32 %r1, %tid.x;
        mul.lo.u32 %r2, %r1, 10;
        mul.wide.u32 %rd1, %r1, 4; add.u64 %rd1, %rd1, %out;
        shfl.sync.down.b32 %r3|%p1, %r2, 1, 0x1f, 0xffffffff;
        st.global.u32 [%rd1], %r3;
        selp.u32 %r4, 1, 0, %p1; st.global.u32 [%rd1+128], %r4;
        shfl.sync.up.b32 %r3, %r2, 2, 0, 0xffffffff;
        st.global.u32 [%rd1+256], %r3;
        shfl.sync.bfly.b32 %r3, %r2, 1, 0x1f, 0xffffffff;
        st.global.u32 [%rd1+384], %r3;
        shfl.sync.idx.b32 %r3, %r2, 33, 0x1f, 0xffffffff;
        st.global.u32 [%rd1+512], %r3;
        setp.lt.u32 %p2, %r1, 5;
        vote.sync.ballot.b32 %r5, %p2, 0xffffffff;
        st.global.u32 [%rd1+640], %r5;
        vote.sync.any.pred %p3, %p2, 0xffffffff; selp.u32 %r6, 1, 0, %p3;
        vote.sync.all.pred %p4, !%p2, 0xffffffff; selp.u32 %r7, 1, 0, %p4;
        vote.sync.uni.pred %p5, %p2, 0xffffffff; selp.u32 %r8, 1, 0, %p5;
        shl.b32 %r7, %r7, 1; shl.b32 %r8, %r8, 2; or.b32 %r6, %r6, %r7; or.b32 %r6, %r6, %r8;
        st.global.u32 [%rd1+768], %r6;";
    let out = run_src(&module(body, ""), dims(1, 32), 32 * 7, 0).unwrap();
    for l in 0..32u32 {
        let at = |k: u32| out[(k * 32 + l) as usize];
        assert_eq!(
            at(0),
            if l < 31 { (l + 1) * 10 } else { 310 },
            "down, lane {l}"
        );
        assert_eq!(at(1), (l < 31) as u32, "down predicate, lane {l}");
        assert_eq!(
            at(2),
            if l >= 2 { (l - 2) * 10 } else { l * 10 },
            "up, lane {l}"
        );
        assert_eq!(at(3), (l ^ 1) * 10, "bfly, lane {l}");
        assert_eq!(at(4), 10, "idx 33 reads lane 1");
        assert_eq!(at(5), 0b11111, "ballot");
        assert_eq!(at(6), 0b001, "any true, all(!p) false, uni false");
    }
}

#[test]
fn barriers_order_shared_memory() {
    let body = ".shared .align 4 .b32 s[64];
        mov.u32 %r1, %tid.x;
        mul.wide.u32 %rd1, %r1, 4;
        mov.u64 %rd2, s;
        add.u64 %rd3, %rd2, %rd1;
        st.shared.u32 [%rd3], %r1;
        bar.sync 0;
        add.u32 %r2, %r1, 1;
        rem.u32 %r2, %r2, 64;
        mul.wide.u32 %rd4, %r2, 4;
        add.u64 %rd4, %rd2, %rd4;
        ld.shared.u32 %r3, [%rd4];
        add.u64 %rd5, %out, %rd1;
        st.global.u32 [%rd5], %r3;";
    let out = run_src(&module(body, ""), dims(2, 64), 64, 0).unwrap();
    for t in 0..64u32 {
        assert_eq!(out[t as usize], (t + 1) % 64);
    }
}

#[test]
fn dynamic_shared_memory_follows_the_static_variables() {
    // Thread t adds t + 1 to word t % 4 of the dynamic array with shared atomics, and the
    // static word counts the threads; after the barrier thread 0 copies all five out, with
    // %dynamic_smem_size. Without the dynamic bytes the first atomic is out of bounds; the
    // static word stays where it is whichever declaration comes first.
    let extra = ".shared .align 4 .b32 st[1];\n.extern .shared .align 16 .b8 dyn[];";
    let body = "mov.u32 %r1, %tid.x;
        rem.u32 %r2, %r1, 4;
        mul.wide.u32 %rd1, %r2, 4;
        mov.u64 %rd2, dyn;
        add.u64 %rd2, %rd2, %rd1;
        add.u32 %r3, %r1, 1;
        atom.shared.add.u32 %r4, [%rd2], %r3;
        atom.shared.add.u32 %r4, [st], 1;
        bar.sync 0;
        setp.ne.u32 %p1, %r1, 0;
        @%p1 bra END;
        ld.shared.v4.u32 {%r5, %r6, %r7, %r8}, [dyn];
        st.global.v4.u32 [%out], {%r5, %r6, %r7, %r8};
        ld.shared.u32 %r9, [st];
        st.global.u32 [%out+16], %r9;
        mov.u32 %r10, %dynamic_smem_size;
        st.global.u32 [%out+20], %r10;
        END:";
    let d = Dims {
        shared: 16,
        ..dims(1, 8)
    };
    let out = run_src(&module(body, extra), d, 6, 0).unwrap();
    assert_eq!(out, [1 + 5, 2 + 6, 3 + 7, 4 + 8, 8, 16]);
    fault(
        body,
        extra,
        dims(1, 8),
        6,
        "dynamic shared memory is out of bounds (0 bytes)",
    );
    // A static array declared after the dynamic one still starts at 0.
    let swapped = ".extern .shared .align 16 .b8 dyn[];\n.shared .align 4 .b32 st[1];";
    let out = run_src(&module(body, swapped), d, 6, 0).unwrap();
    assert_eq!(out, [1 + 5, 2 + 6, 3 + 7, 4 + 8, 8, 16]);
}

/// Run a planted bug; the fault must mention `what`.
fn fault(body: &str, extra: &str, d: Dims, words: usize, what: &str) -> String {
    let e = run_src(&module(body, extra), d, words, 0).expect_err("the planted bug must be caught");
    assert!(e.contains(what), "expected {what:?} in: {e}");
    e
}

#[test]
fn out_of_bounds_and_misaligned_global_access() {
    let e = fault(
        "mov.u32 %r1, %tid.x; mul.wide.u32 %rd1, %r1, 4; add.u64 %rd1, %rd1, %out;
         st.global.u32 [%rd1], 1;",
        "",
        dims(1, 9),
        8,
        "out-of-bounds",
    );
    assert!(e.contains("thread [8, 0, 0]"), "{e}");
    assert!(e.starts_with("line 15 "), "the line of the store: {e}");
    fault(
        "st.global.u32 [%out+2], 1;",
        "",
        dims(1, 1),
        4,
        "misaligned",
    );
    fault(
        "ld.global.u32 %r1, [%out+16]; st.global.u32 [%out], %r1;",
        "",
        dims(1, 1),
        4,
        "out-of-bounds",
    );
}

#[test]
fn shared_out_of_bounds() {
    fault(
        ".shared .align 4 .b32 s[4]; st.shared.u32 [s+16], 1;",
        "",
        dims(1, 1),
        1,
        "out of bounds",
    );
}

#[test]
fn deadlocked_barrier() {
    fault(
        "mov.u32 %r1, %tid.x; setp.ne.u32 %p1, %r1, 0; @%p1 bra END; bar.sync 0; END:",
        "",
        dims(1, 4),
        1,
        "deadlock",
    );
}

#[test]
fn collectives_naming_exited_or_absent_lanes() {
    fault(
        "mov.u32 %r1, %tid.x; setp.ge.u32 %p1, %r1, 16; @%p1 bra END;
         shfl.sync.idx.b32 %r2, %r1, 0, 0x1f, 0xffffffff; END:",
        "",
        dims(1, 32),
        1,
        "exited",
    );
    fault(
        "mov.u32 %r1, %tid.x; vote.sync.ballot.b32 %r2, %p1, 0xffffffff;",
        "",
        dims(1, 16),
        1,
        "does not exist",
    );
}

#[test]
fn shared_memory_race() {
    fault(
        ".shared .align 4 .b32 s[2];
         mov.u32 %r1, %tid.x; setp.eq.u32 %p1, %r1, 0;
         @%p1 st.shared.u32 [s], 5;
         ld.shared.u32 %r2, [s];",
        "",
        dims(1, 2),
        1,
        "data race",
    );
}

#[test]
fn uninitialized_register_and_division_by_zero() {
    fault(
        "add.u32 %r1, %r2, 1; st.global.u32 [%out], %r1;",
        "",
        dims(1, 1),
        1,
        "before any write",
    );
    fault(
        "mov.u32 %r2, 0; div.u32 %r1, 1, %r2;",
        "",
        dims(1, 1),
        1,
        "division by zero",
    );
}

#[test]
fn unknown_instructions_and_modifiers_are_parse_errors() {
    let e = ptx::parse(&module("frobnicate.u32 %r1, 1;", "")).unwrap_err();
    assert!(e.what.contains("frobnicate") && e.line == 14, "{e}");
    let e = ptx::parse(&module("add.wrap.u32 %r1, 1, 2;", "")).unwrap_err();
    assert!(e.what.contains("wrap"), "{e}");
    let e = ptx::parse(&module("bra NOWHERE;", "")).unwrap_err();
    assert!(e.what.contains("NOWHERE"), "{e}");
    let e = ptx::parse(&module("mul.u32 %r1, 1, 2;", "")).unwrap_err();
    assert!(e.what.contains(".lo"), "{e}");
}

#[test]
fn every_kernel_module_parses() {
    for (name, _) in trainkern::sources::PTX_MODULES {
        let src = trainkern::sources::ptx(name).unwrap();
        let m = ptx::parse(&src).unwrap_or_else(|e| panic!("{name}.ptx: {e}"));
        assert!(m.funcs.iter().any(|f| f.entry), "{name}.ptx has no entry");
    }
}

#[test]
fn local_memory_generic_addressing_and_fences() {
    let body = ".local .align 8 .b32 l[4];
        .shared .align 4 .b32 s[2];
        st.local.u32 [l+4], 11;
        ld.local.u32 %r1, [l+4];
        st.global.u32 [%out], %r1;
        mov.u64 %rd1, s;
        cvta.shared.u64 %rd2, %rd1;
        st.u32 [%rd2+4], 22;
        membar.cta;
        fence.sc.gpu;
        ld.shared.u32 %r2, [s+4];
        st.global.u32 [%out+4], %r2;
        cvta.to.shared.u64 %rd3, %rd2;
        cvt.u32.u64 %r3, %rd3;
        st.global.u32 [%out+8], %r3;
        st.u32 [%out+12], 33;";
    let out = run_src(&module(body, ""), dims(1, 1), 4, 0).unwrap();
    assert_eq!(out, [11, 22, 0, 33]);
}

#[test]
fn sixty_four_bit_products_use_all_128_bits() {
    let out = one_thread(
        "mov.u64 %rd1, 0xFFFFFFFFFFFFFFFF;
         mul.hi.u64 %rd2, %rd1, %rd1;  st.global.u64 [%out], %rd2;
         mul.lo.u64 %rd2, %rd1, %rd1;  st.global.u64 [%out+8], %rd2;
         mul.hi.s64 %rd2, %rd1, %rd1;  st.global.u64 [%out+16], %rd2;",
        6,
    );
    let w64 = |i: usize| out[i] as u64 | (out[i + 1] as u64) << 32;
    assert_eq!(w64(0), u64::MAX - 1);
    assert_eq!(w64(2), 1);
    assert_eq!(w64(4), 0);
}
