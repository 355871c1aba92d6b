// mf_noise.wgsl: one step of the MF noise generators (src/ops/mf_noise, design/mf.md "Noise
// generation"), the same math as kernels/mf_noise.ptx: grad[i] += sigma * x_t[i].
//
// z_s[i] is the Gaussian of global index `index + i` in stream (s, tag_hi) under the seed.
// Entry point mfn_step (workgroups of 256, 2D grid; one invocation per u32 word of grad, so one
// f32 or two bf16 coordinates, and no two invocations share a word), by p.kind:
//   0 FIR   x = sum_{q < taps} coef[row + q] z_{t-q}
//   1 band  y = (z_t - sum_{r=1}^{min(p-1, t)} coef[r] y_{t-r}) / coef[0], ring slot
//           s mod (p-1) of state (slot-major), y_t stored in slot t mod (p-1); x = nu y
//   2 BLT   x = z_t - sum_k coef[m + k] S_k; S_k = coef[k] S_k + x
//   3 table x = vector t of the state: the Fourier table, one vector per step (taps = n)
// Bindings: 0 Params; 1 grad (array<u32>); 2 state (f32 or bf16 words, see state_get); 3 coef. The host dispatches one
// window of whole state blocks at a time: grad and state are bound from the window's first
// coordinate (a multiple of the block), `index` is that coordinate's global index, and vector v
// of window coordinate i sits at state[((i / block) V + v) block + i % block].
//
// Building the Fourier table, one chunk of coordinates at a time; spec holds N x len complex
// values, time-major (binding 4), column c holding two coordinates, 2c in the real part and
// 2c + 1 in the imaginary (the circulant root S is real: S (z + i z') = S z + i S z'); taps = N,
// index = the chunk's first global coordinate. One invocation per element:
//   mfn_fourier_z     spec[j len + c] = (z_j[e + 2c], z_j[e + 2c + 1]), e = index rounded down
//                     to even: the RNG's global pairs, so a coordinate's noise has the same
//                     bits in any shard or chunk
//   mfn_fourier_root  spec[j len + c] *= root[j] (binding 5: the circulant's square root, 1 / N
//                     folded in)
//   mfn_fourier_diff  for t < p.t (= n), c < row (<= 2 len - index % 2), e = c + index % 2,
//                     y_t the part e % 2 of spec[t len + e / 2]: state[t block + col0 + c] =
//                     y_t - y_{t-1} (y_{-1} = 0); state bound at the block

struct Params {
    len: u32,
    taps: u32,     // fir: taps; band: p; blt: m
    row: u32,      // fir: first weight of the step; table: the skip to the window's first word
    dtype: u32,
    index_lo: u32,
    index_hi: u32,
    seed_lo: u32,
    seed_hi: u32,
    tag_hi: u32,   // the stream's high word; the low word is the step
    t: u32,
    nu: f32,
    sigma: f32,
    kind: u32,     // 0 FIR, 1 band, 2 BLT
    block: u32,    // coordinates per state block
    col0: u32,     // Fourier diff: the chunk's first column in its block
    sdtype: u32,   // the state's type: 0 f32, 2 bf16 (BandMF and the table only)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> grad: array<u32>;
@group(0) @binding(2) var<storage, read_write> state: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read> coef: array<f32>;
@group(0) @binding(4) var<storage, read_write> spec: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read> root: array<vec2<f32>>;

fn z(i: u32, s: u32) -> f32 {
    let gi = philox_add64(vec2<u32>(p.index_lo, p.index_hi), i);
    let w = philox_block(philox_block_of(gi), vec2<u32>(s, p.tag_hi), vec2<u32>(p.seed_lo, p.seed_hi));
    return philox_gaussians(w)[gi.x & 3u];
}

// State element e: an f32 word, or (sdtype bf16) the half e % 2 of word e / 2. Atomics, because
// with f32 gradients the two halves of a bf16 word belong to two invocations; each changes only
// its own half.
fn state_get(e: u32) -> f32 {
    if (p.sdtype == DT_BF16) {
        return bf16_bits_to_f32((atomicLoad(&state[e >> 1u]) >> (16u * (e & 1u))) & 0xffffu);
    }
    return bitcast<f32>(atomicLoad(&state[e]));
}

fn state_set(e: u32, v: f32) {
    if (p.sdtype == DT_BF16) {
        let shift = 16u * (e & 1u);
        atomicAnd(&state[e >> 1u], ~(0xffffu << shift));
        atomicOr(&state[e >> 1u], f32_to_bf16_bits(v) << shift);
        return;
    }
    atomicStore(&state[e], bitcast<u32>(v));
}

fn x_fir(i: u32) -> f32 {
    var x = 0.0;
    for (var q = 0u; q < p.taps; q++) {
        x = fma(coef[p.row + q], z(i, p.t - q), x);
    }
    return x;
}

// Index of vector v of coordinate i among `vectors` per block.
fn sat(i: u32, v: u32, vectors: u32) -> u32 {
    return ((i / p.block) * vectors + v) * p.block + i % p.block;
}

fn x_band(i: u32) -> f32 {
    var y = z(i, p.t);
    let slots = p.taps - 1u;
    let top = min(p.t, slots);
    for (var r = 1u; r <= top; r++) {
        let slot = (p.t - r) % slots;
        y = y - coef[r] * state_get(sat(i, slot, slots));
    }
    y = y / coef[0];
    if (slots > 0u) {
        state_set(sat(i, p.t % slots, slots), y);
    }
    return p.nu * y;
}

fn x_blt(i: u32) -> f32 {
    var x = z(i, p.t);
    let m = p.taps;
    for (var k = 0u; k < m; k++) {
        x = x - coef[m + k] * state_get(sat(i, k, m));
    }
    for (var k = 0u; k < m; k++) {
        let at = sat(i, k, m);
        state_set(at, fma(coef[k], state_get(at), x));
    }
    return x;
}

// grad[i] + sigma * x for the coordinates of word w, by the entry's rule.
fn word_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

fn add_f32(i: u32, x: f32) {
    grad[i] = bitcast<u32>(bitcast<f32>(grad[i]) + p.sigma * x);
}

fn add_bf16(w: u32, lo: f32, hi: f32, has_hi: bool) {
    let old = grad[w];
    let a = f32_to_bf16_bits(bf16_bits_to_f32(old & 0xffffu) + p.sigma * lo);
    var b = old >> 16u;
    if (has_hi) {
        b = f32_to_bf16_bits(bf16_bits_to_f32(old >> 16u) + p.sigma * hi);
    }
    grad[w] = a | (b << 16u);
}

// The step's noise for coordinate i, by mechanism (one entry point: WGSL has no function
// values, and one pipeline layout serves all three).
fn x_of(i: u32) -> f32 {
    switch p.kind {
        case 1u: {
            return x_band(i);
        }
        case 2u: {
            return x_blt(i);
        }
        case 3u: {
            return state_get(sat(i, p.t, p.taps));
        }
        default: {
            return x_fir(i);
        }
    }
}

@compute @workgroup_size(256)
fn mfn_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = word_index(gid, nwg);
    if (p.dtype == DT_F32) {
        if (w < p.len) {
            add_f32(w, x_of(w));
        }
        return;
    }
    let i = 2u * w;
    if (i < p.len) {
        let has_hi = i + 1u < p.len;
        var hi = 0.0;
        if (has_hi) {
            hi = x_of(i + 1u);
        }
        add_bf16(w, x_of(i), hi, has_hi);
    }
}

@compute @workgroup_size(256)
fn mfn_fourier_z(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = word_index(gid, nwg);
    if (g >= p.len * p.taps) {
        return;
    }
    // The global pair (2k, 2k + 1) from the even index at or below p.index: words 0-1 or 2-3
    // of one block, so one block's Box-Muller pair gives both.
    let gi = philox_add64(vec2<u32>(p.index_lo & ~1u, p.index_hi), 2u * (g % p.len));
    let w = philox_block(philox_block_of(gi), vec2<u32>(g / p.len, p.tag_hi), vec2<u32>(p.seed_lo, p.seed_hi));
    let zs = philox_gaussians(w);
    spec[g] = select(zs.xy, zs.zw, (gi.x & 2u) != 0u);
}

@compute @workgroup_size(256)
fn mfn_fourier_root(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = word_index(gid, nwg);
    if (g >= p.len * p.taps) {
        return;
    }
    let x = spec[g];
    let r = root[g / p.len];
    spec[g] = vec2<f32>(fma(x.x, r.x, -(x.y * r.y)), fma(x.x, r.y, x.y * r.x));
}

@compute @workgroup_size(256)
fn mfn_fourier_diff(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = word_index(gid, nwg);
    if (g >= p.t * p.row) {
        return;
    }
    let t = g / p.row;
    let c = g % p.row;
    // Spectrum part e: an odd index's chunk starts at the imaginary part of its first column.
    let e = c + (p.index_lo & 1u);
    let imag = (e & 1u) == 1u;
    var prev = 0.0;
    if (t > 0u) {
        let v = spec[(t - 1u) * p.len + e / 2u];
        prev = select(v.x, v.y, imag);
    }
    let v = spec[t * p.len + e / 2u];
    state_set(t * p.block + p.col0 + c, select(v.x, v.y, imag) - prev);
}
