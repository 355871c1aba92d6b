// storage.wgsl: element conversions for buffers bound as array<u32>. 16-bit elements sit two to
// a word, the lower index in the low half. Conversions are exact bit manipulations (round to
// nearest even), because WGSL's pack2x16float leaves out-of-range results indeterminate.

const DT_F32: u32 = 0u;
const DT_F16: u32 = 1u;
const DT_BF16: u32 = 2u;

fn f16_bits_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        // zero or subnormal: m * 2^-24, exact
        let v = f32(m) * 5.9604645e-8;
        return bitcast<f32>(bitcast<u32>(v) | sign);
    }
    if (e == 31u) {
        return bitcast<f32>(sign | 0x7f800000u | (m << 13u));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

fn f32_to_f16_bits(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    let sign = (b >> 16u) & 0x8000u;
    let a = b & 0x7fffffffu;
    if (a > 0x7f800000u) {
        return sign | 0x7e00u | ((a >> 13u) & 0x3ffu);
    }
    if (a >= 0x477ff000u) {
        // 65520 and above round to infinity
        return sign | 0x7c00u;
    }
    if (a >= 0x38800000u) {
        let r = a - 0x38000000u;
        return sign | ((r + 0xfffu + ((r >> 13u) & 1u)) >> 13u);
    }
    let e = a >> 23u;
    if (e < 102u) {
        return sign;
    }
    let mant = (a & 0x7fffffu) | 0x800000u;
    let shift = 126u - e;
    let half_ulp = 1u << (shift - 1u);
    return sign | ((mant + half_ulp - 1u + ((mant >> shift) & 1u)) >> shift);
}

fn bf16_bits_to_f32(h: u32) -> f32 {
    return bitcast<f32>(h << 16u);
}

fn f32_to_bf16_bits(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return (b >> 16u) | 0x40u;
    }
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

fn half_to_f32(h: u32, dt: u32) -> f32 {
    if (dt == DT_F16) {
        return f16_bits_to_f32(h);
    }
    return bf16_bits_to_f32(h);
}

fn f32_to_half(x: f32, dt: u32) -> u32 {
    if (dt == DT_F16) {
        return f32_to_f16_bits(x);
    }
    return f32_to_bf16_bits(x);
}
