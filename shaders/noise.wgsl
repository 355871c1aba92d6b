// noise.wgsl: plain Gaussian noise and raw RNG words (src/ops/noise, design/clip.md).
//
// Entry points:
//   gaussian   data[j] = std * z(index + j), or data[j] += std * z(index + j) when p.add != 0,
//              for p.dtype 0 (f32), 1 (f16), 2 (bf16)
//   bits_u32   data[j] = word(index + j)
// Bindings: 0 = Params (uniform), 1 = data: array<u32>, the chunk (16-bit elements two a word).
// Launch: one invocation per 4 elements of the chunk (`(len + 3) / 4`), workgroups of 256 in a
// 2D grid (x <= 65535); the host splits buffers larger than one binding into chunks whose
// element 0 is word aligned. Bytes per element: fill writes 4 (f32, u32) or 2; add reads and
// writes them. A 16-bit tail word whose upper half lies past `len` is read and kept.

struct Params {
    index_lo: u32,  // global RNG index of the chunk's element 0
    index_hi: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream_lo: u32,
    stream_hi: u32,
    len: u32,       // elements in the chunk
    sigma: f32,     // the standard deviation
    dtype: u32,
    add: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> data: array<u32>;

fn invocation(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

fn first_index(id: u32) -> vec2<u32> {
    return philox_add64(vec2<u32>(p.index_lo, p.index_hi), 4u * id);
}

fn key() -> vec2<u32> {
    return vec2<u32>(p.seed_lo, p.seed_hi);
}

fn strm() -> vec2<u32> {
    return vec2<u32>(p.stream_lo, p.stream_hi);
}

@compute @workgroup_size(256)
fn gaussian(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = invocation(gid, nwg);
    let j0 = 4u * id;
    if (j0 >= p.len) {
        return;
    }
    let z = philox_gaussians_at(first_index(id), strm(), key()) * p.sigma;
    let add = p.add != 0u;
    if (p.dtype == DT_F32) {
        for (var k = 0u; k < 4u; k++) {
            let j = j0 + k;
            if (j < p.len) {
                var v = z[k];
                if (add) {
                    v = bitcast<f32>(data[j]) + v;
                }
                data[j] = bitcast<u32>(v);
            }
        }
        return;
    }
    for (var w = 0u; w < 2u; w++) {
        let j = j0 + 2u * w;
        if (j < p.len) {
            let wi = j >> 1u;
            let has_hi = j + 1u < p.len;
            var old = 0u;
            if (add || !has_hi) {
                old = data[wi];
            }
            var lo = z[2u * w];
            var hi = z[2u * w + 1u];
            if (add) {
                lo = half_to_f32(old & 0xffffu, p.dtype) + lo;
                hi = half_to_f32(old >> 16u, p.dtype) + hi;
            }
            let hi_bits = select(old >> 16u, f32_to_half(hi, p.dtype), has_hi);
            data[wi] = f32_to_half(lo, p.dtype) | (hi_bits << 16u);
        }
    }
}

@compute @workgroup_size(256)
fn bits_u32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let id = invocation(gid, nwg);
    let j0 = 4u * id;
    if (j0 >= p.len) {
        return;
    }
    let w = philox_words_at(first_index(id), strm(), key());
    for (var k = 0u; k < 4u; k++) {
        if (j0 + k < p.len) {
            data[j0 + k] = w[k];
        }
    }
}
