// fft.wgsl: one radix-2 stage of a batched Stockham FFT (src/ops/fft), the same math as
// kernels/fft.ptx, complex f32 stored as (re, im) pairs.
//
// Entry point fft_stage (workgroups of 256, 2D grid, one invocation per butterfly, batch * half
// invocations). n = 2 half points per signal, stride s = 2^log_s. Butterfly i < half of signal
// b, with q = i mod s and base = i - q:
//   a = src[i], c = src[i + half]
//   dst[2 base + q]     = a + c
//   dst[2 base + q + s] = (a - c) w,   w = tw[base] = exp(-2 pi i base / n), conjugated when
//                                      inverse != 0 (unnormalized, as rustfft)
// Point k of signal b sits at b n + k (interleaved = 0) or k batch + b (interleaved = 1).
// Bindings: 0 Params; 1 src; 2 dst; 3 tw (n / 2 twiddles, computed in f64 on the host). The
// host binds whole buffers (the op refuses data larger than one binding), so indices fit u32.
// Bytes per butterfly: 16 read, 16 written, 8 of twiddle read.

struct Params {
    log_half: u32,
    log_s: u32,
    batch: u32,
    interleaved: u32,
    inverse: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> tw: array<vec2<f32>>;

@compute @workgroup_size(256)
fn fft_stage(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = gid.x + gid.y * nwg.x * 256u;
    let half = 1u << p.log_half;
    if (g >= p.batch * half) {
        return;
    }
    let s = 1u << p.log_s;
    var b: u32;
    var i: u32;
    var bs: u32;
    var ks: u32;
    if (p.interleaved != 0u) {
        b = g % p.batch;
        i = g / p.batch;
        bs = 1u;
        ks = p.batch;
    } else {
        b = g >> p.log_half;
        i = g & (half - 1u);
        bs = 2u * half;
        ks = 1u;
    }
    let q = i & (s - 1u);
    let base = i - q;
    let first = b * bs;
    let a = src[first + i * ks];
    let c = src[first + (i + half) * ks];
    var w = tw[base];
    if (p.inverse != 0u) {
        w.y = -w.y;
    }
    let d = a - c;
    let prod = vec2<f32>(fma(d.x, w.x, -(d.y * w.y)), fma(d.x, w.y, d.y * w.x));
    let k = 2u * base + q;
    dst[first + k * ks] = a + c;
    dst[first + (k + s) * ks] = prod;
}
