// philox.wgsl: Philox4x32-10, the uniform and the portable f32 Box-Muller of src/rng.rs,
// transcribed operation for operation (see that file for the definition and the error bounds).
// WGSL has no 32x32->64 multiply, so the high word is built from 16-bit halves.

fn philox_mulhilo(a: u32, b: u32) -> vec2<u32> {
    let al = a & 0xffffu;
    let ah = a >> 16u;
    let bl = b & 0xffffu;
    let bh = b >> 16u;
    let ll = al * bl;
    let lh = al * bh;
    let hl = ah * bl;
    let hh = ah * bh;
    // Each term below is < 2^16 + 2^16 + 2^16, so the middle column cannot overflow.
    let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox4x32_10(ctr: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = ctr;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        if (round > 0u) {
            k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
        }
        let p0 = philox_mulhilo(0xD2511F53u, c.x);
        let p1 = philox_mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

// (u_lo, u_hi) of a 64-bit value plus a u32, with carry.
fn philox_add64(v: vec2<u32>, x: u32) -> vec2<u32> {
    let lo = v.x + x;
    return vec2<u32>(lo, v.y + select(0u, 1u, lo < x));
}

// The words of block `blk` (a 64-bit block index) of stream `strm` under key `key`.
fn philox_block(blk: vec2<u32>, strm: vec2<u32>, key: vec2<u32>) -> vec4<u32> {
    return philox4x32_10(vec4<u32>(blk.x, blk.y, strm.x, strm.y), key);
}

// The 64-bit block index (global element index / 4) of global element index `i`.
fn philox_block_of(i: vec2<u32>) -> vec2<u32> {
    return vec2<u32>((i.x >> 2u) | (i.y << 30u), i.y >> 2u);
}

fn philox_uniform(x: u32) -> f32 {
    return (f32(x >> 9u) + 0.5) * (1.0 / 8388608.0);
}

// ln(x) for x in (0, 1): Cephes logf, as rng::ln_f32.
fn philox_ln(x: f32) -> f32 {
    let bits = bitcast<u32>(x);
    let e0 = i32(bits >> 23u) - 127;
    let m0 = bitcast<f32>((bits & 0x007fffffu) | 0x3f800000u);
    let big = m0 > 1.4142135;
    let m = select(m0, m0 * 0.5, big);
    let e = f32(select(e0, e0 + 1, big));
    let f = m - 1.0;
    let f2 = f * f;
    var p = 7.0376836e-2;
    p = p * f - 1.1514610e-1;
    p = p * f + 1.1676999e-1;
    p = p * f - 1.2420141e-1;
    p = p * f + 1.4249323e-1;
    p = p * f - 1.6668058e-1;
    p = p * f + 2.0000715e-1;
    p = p * f - 2.4999994e-1;
    p = p * f + 3.3333331e-1;
    var y = f * f2 * p;
    y = y + e * -2.1219444e-4;
    y = y + -0.5 * f2;
    let z = f + y;
    return z + e * 0.693359375;
}

// (sin(pi t), cos(pi t)) for t in (-1, 1), as rng::sincospi_f32.
fn philox_sincospi(t: f32) -> vec2<f32> {
    let qi = i32(t * 2.0 + 2.5) - 2;
    let y = t - f32(qi) * 0.5;
    let a = y * 3.1415927;
    let a2 = a * a;
    var s = -2.5052108e-8;
    s = s * a2 + 2.7557319e-6;
    s = s * a2 - 1.984127e-4;
    s = s * a2 + 8.333333e-3;
    s = s * a2 - 1.6666667e-1;
    let sn = a + a * a2 * s;
    var c = -2.7557319e-7;
    c = c * a2 + 2.4801587e-5;
    c = c * a2 - 1.3888889e-3;
    c = c * a2 + 4.1666666e-2;
    c = c * a2 - 0.5;
    let cs = 1.0 + a2 * c;
    let q = qi & 3;
    let swap = (q & 1) == 1;
    let s1 = select(sn, cs, swap);
    let c1 = select(cs, sn, swap);
    return vec2<f32>(select(s1, -s1, q >= 2), select(c1, -c1, q == 1 || q == 2));
}

// The four standard Gaussians of one block.
fn philox_gaussians(w: vec4<u32>) -> vec4<f32> {
    let ra = sqrt(-2.0 * philox_ln(philox_uniform(w.x)));
    let sa = philox_sincospi(2.0 * philox_uniform(w.y) - 1.0);
    let rb = sqrt(-2.0 * philox_ln(philox_uniform(w.z)));
    let sb = philox_sincospi(2.0 * philox_uniform(w.w) - 1.0);
    return vec4<f32>(ra * sa.y, ra * sa.x, rb * sb.y, rb * sb.x);
}

// Elements first .. first + 3 (64-bit global indices) of stream `strm`: element i uses word
// i % 4 of block i / 4, so with phase = first % 4 the four straddle two blocks unless phase is 0.
fn philox_words_at(first: vec2<u32>, strm: vec2<u32>, key: vec2<u32>) -> vec4<u32> {
    let blk = philox_block_of(first);
    let w0 = philox_block(blk, strm, key);
    let phase = first.x & 3u;
    if (phase == 0u) {
        return w0;
    }
    let w1 = philox_block(philox_add64(blk, 1u), strm, key);
    var out: vec4<u32>;
    for (var k = 0u; k < 4u; k++) {
        let at = phase + k;
        out[k] = select(w1[at & 3u], w0[at & 3u], at < 4u);
    }
    return out;
}

// The Gaussians of elements first .. first + 3, pairs formed within each block as the RNG
// defines them.
fn philox_gaussians_at(first: vec2<u32>, strm: vec2<u32>, key: vec2<u32>) -> vec4<f32> {
    let blk = philox_block_of(first);
    let z0 = philox_gaussians(philox_block(blk, strm, key));
    let phase = first.x & 3u;
    if (phase == 0u) {
        return z0;
    }
    let z1 = philox_gaussians(philox_block(philox_add64(blk, 1u), strm, key));
    var out: vec4<f32>;
    for (var k = 0u; k < 4u; k++) {
        let at = phase + k;
        out[k] = select(z1[at & 3u], z0[at & 3u], at < 4u);
    }
    return out;
}
