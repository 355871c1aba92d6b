// splat.wgsl: splatting ray features into triplanes and voxel grids, forward and backward
// (src/ops/splat, design/triplane.md "Splat"); the same sums as the CPU reference, in f32.
//
// Entry points (workgroups of 256 invocations in a 2D grid):
//   splat_fw    bindings 1 tables, 2-7 rays (origins, directions, near, far, batch, encoding),
//               8 status, 9 out, 10 weights, 13 input grids, 14 mlp, 15 scratch. Invocation i
//               < count takes item item0 + i: sample item % total of ray item / total, and adds
//               w and w * v into every corner of every grid (flag 4: the weights only). v is the
//               ray's encoding, or (flag 8) the MLP of the encoding plus the input grids' sample,
//               its activations in `scratch` (element k of invocation i at k * slots + i).
//               Float adds are compare-and-swap loops on atomic<u32> (WGSL has no portable
//               float atomics).
//   splat_vmax  bindings 7, 20: the largest |encoding| (items item0 .. item0 + count).
//   splat_norm  bindings 9 out, 10 weights (with flag 32 also 19, 20): out[i] /= max(weights[i /
//               C], 1e-5), i < len.
//   splat_wconv bindings 10, 21: the weights' fixed-point sums to f32, in place.
// The weights (always) and the plain splat's values (flag 32) are summed exactly: 64-bit fixed
// point scaled by the number of terms (and for values the largest |encoding|), two u32 atomic
// adds with a carry (bindings 10 and 21, 9 and 19), so the results do not depend on the order
// of the adds: two runs agree to the bit, and cancelling sums of thousands of terms lose nothing.
// The MLP splatter's values are not known before the pass, so it adds them in f32 by
// compare-and-swap.
//   splat_bw    bindings 1-6, 8, 10 weights, 11 grad_out, 12 grad_encoding. Invocation i sums
//               channel i % C of ray ray0 + i / C over samples j0 .. j0 + nj: every corner's
//               grad_out / max(weight, 1e-5), weighted as in the splat (a gather: no atomics).
//               The first window of a ray writes its sum, later ones add to it.
//   splat_mlp_bw  bindings 1-8, 10, 11, 12 (here R x C_in), 13-16 partials, 17 input grid
//               gradient. Invocation i marches samples j0 .. j0 + nj of ray ray0 + i: the MLP
//               again, the gathered grad_out / max(weight, 1e-5) as the output's gradient, back
//               through the MLP into a slice of `partials` shared by SHARE = 32 neighbouring
//               invocations (ceil(slots / 32) x params, compare-and-swap adds, each invocation
//               starting its loops at its lane, as in render.wgsl), the encoding gradient and,
//               by compare-and-swap adds, the input grids' gradient.
// Steps: with L the MLP's layers, a forward item is steps 0 .. L (one per layer, step 0 also
// sampling the input grids) and then L (the splat); a backward sample is steps 0 .. L, then L
// (the gathered gradient), L + 1 .. 2L + 1 (one per layer backward, the last first) and
// 2L + 1 (the input's gradients). A dispatch runs steps d0 .. d1 of its items or samples: all
// of them unless one would pass llvmpipe's loop limit, and then the scratch carries an item
// or a sample from one dispatch to the next (wgpu.rs splits them).
//   splat_mlp_sum bindings 16 partials, 18 params gradient: sums the slices in order.
// tables: the output grids [D, H, W, element offset, cell offset] from 0, the input grids [D,
// H, W, element offset] from gin_at, the MLP's layers [n_in, n_out, weight offset, bias offset,
// input slot, output slot] from lt_at.
// A ray with a batch index out of range, or non-finite or reversed near/far, sets bit 1 or 2 of
// `status` and splats nothing; the host turns the bits into an error.
// Bytes per ray and sample: forward 8 corners x grids x (C + 1) read-modify-writes of 4 bytes;
// backward 8 corners x grids x (C + 1) reads of 4 bytes. llvmpipe's 65 535 loop iterations per
// invocation bound what one invocation does (src/ops/splat/wgpu.rs counts them).

struct Params {
    rays: u32,
    samples: u32,
    samples_inf: u32,
    flags: u32,      // 1 contract, 2 mask (common/march.wgsl), 4 weights only
    dai: f32,
    ngrids: u32,
    c: u32,
    batch: u32,
    ray0: u32,       // this dispatch's rays ray0 .. ray0 + nr and samples j0 .. j0 + nj
    nr: u32,
    j0: u32,
    nj: u32,
    len: u32,        // splat_norm: elements of out
    first: u32,      // splat_bw, splat_mlp_bw: 1 in a ray's first window of samples
    item0: u32,      // splat_fw: this dispatch's items item0 .. item0 + count
    count: u32,
    slots: u32,      // invocations sharing the scratch (its stride)
    cin: u32,        // the MLP splatter: input channels, input grids, their storage type,
    ngin: u32,       // layers, parameters, the scratch offsets of the output and of two
    dtype: u32,      // gradient vectors, where the input grids' and layers' tables start
    layers: u32,
    plen: u32,
    act_out: u32,
    sc_ga: u32,
    sc_gb: u32,
    gin_at: u32,
    lt_at: u32,
    log_terms: u32,  // plain splat: ceil(log2(rays x samples + 1)), the fixed point's headroom
    d0: u32,         // splat_fw, splat_mlp_bw: the steps d0 .. d1 this dispatch runs
    d1: u32,
    pad1: u32,
    pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// tables: [D, H, W, element offset, cell offset] per grid.
@group(0) @binding(1) var<storage, read> tables: array<u32>;
@group(0) @binding(2) var<storage, read> origins: array<f32>;
@group(0) @binding(3) var<storage, read> dirs: array<f32>;
@group(0) @binding(4) var<storage, read> near: array<f32>;
@group(0) @binding(5) var<storage, read> far: array<f32>;
@group(0) @binding(6) var<storage, read> batch: array<u32>;
@group(0) @binding(7) var<storage, read> enc: array<f32>;
@group(0) @binding(8) var<storage, read_write> status: array<atomic<u32>>;
@group(0) @binding(9) var<storage, read_write> out_grid: array<atomic<u32>>;
@group(0) @binding(10) var<storage, read_write> weights: array<atomic<u32>>;
@group(0) @binding(11) var<storage, read> grad_out: array<f32>;
@group(0) @binding(12) var<storage, read_write> g_enc: array<f32>;
@group(0) @binding(13) var<storage, read> input: array<u32>;
@group(0) @binding(14) var<storage, read> mlp: array<f32>;
@group(0) @binding(15) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(16) var<storage, read_write> partials: array<atomic<u32>>;
@group(0) @binding(17) var<storage, read_write> g_input: array<atomic<u32>>;
@group(0) @binding(18) var<storage, read_write> g_params: array<f32>;
// The plain splat's exact sums: 64-bit fixed point, low words in out_grid, high words here.
@group(0) @binding(19) var<storage, read_write> hi_words: array<atomic<u32>>;
// The largest |encoding| as f32 bits (non-negative floats order like their bits).
@group(0) @binding(20) var<storage, read_write> vmax: array<atomic<u32>>;
// The weights' fixed-point high words (their low words in `weights` until splat_wconv).
@group(0) @binding(21) var<storage, read_write> whi: array<atomic<u32>>;

const WEIGHTS_ONLY: u32 = 4u;
const F_MLP: u32 = 8u;
const F_ENC: u32 = 16u;
const F_FIXED: u32 = 32u;
const FLOOR: f32 = 1e-5;
const WG: u32 = 256u;
// Invocations that share one slice of `partials` (see the header).
const SHARE: u32 = 32u;

var<private> slot: u32;

fn sc(k: u32) -> f32 {
    return scratch[k * p.slots + slot];
}

fn sc_set(k: u32, v: f32) {
    scratch[k * p.slots + slot] = v;
}

fn input_at(i: u32) -> f32 {
    let w = input[select(i >> 1u, i, p.dtype == DT_F32)];
    if (p.dtype == DT_F32) {
        return bitcast<f32>(w);
    }
    return half_to_f32((w >> ((i & 1u) * 16u)) & 0xffffu, p.dtype);
}

// Field f of layer l: 0 n_in, 1 n_out, 2 weight offset, 3 bias offset, 4 input slot, 5 output
// slot.
fn layer(l: u32, f: u32) -> u32 {
    return tables[p.lt_at + 6u * l + f];
}

// A grid corner's first element and its factor (0: the corner is outside the grid).
struct Gathered {
    at: u32,
    scale: f32,
}

// Corner k of input grid g at point q of batch b: its first element and its corner weight.
fn input_corner(g: u32, b: u32, q: vec3<f32>, k: u32) -> Gathered {
    let t = p.gin_at + 4u * g;
    let dd = tables[t];
    let hh = tables[t + 1u];
    let ww = tables[t + 2u];
    let cw = march_corner(dd, hh, ww, q, k);
    return Gathered(tables[t + 3u] + (b * dd * hh * ww + cw.cell) * p.cin, cw.w);
}

// MLP steps d0 .. d1 at point q of ray r (batch b): step 0 puts the input grids' sample at q
// (plus the ray's encoding) in scratch[0 .. cin], and step l runs layer l.
fn mlp_steps(r: u32, b: u32, q: vec3<f32>, d0: u32, d1: u32) {
    for (var l = d0; l < d1; l++) {
        if (l == 0u) {
            for (var ch = 0u; ch < p.cin; ch++) {
                var e = 0.0;
                if ((p.flags & F_ENC) != 0u) {
                    e = enc[r * p.cin + ch];
                }
                sc_set(ch, e);
            }
            for (var g = 0u; g < p.ngin; g++) {
                for (var k = 0u; k < 8u; k++) {
                    let ic = input_corner(g, b, q, k);
                    if (ic.scale != 0.0) {
                        for (var ch = 0u; ch < p.cin; ch++) {
                            sc_set(ch, fma(ic.scale, input_at(ic.at + ch), sc(ch)));
                        }
                    }
                }
            }
        }
        let n_in = layer(l, 0u);
        let n_out = layer(l, 1u);
        let w_off = layer(l, 2u);
        let b_off = layer(l, 3u);
        let x = layer(l, 4u);
        let y = layer(l, 5u);
        for (var o = 0u; o < n_out; o++) {
            var acc = mlp[b_off + o];
            for (var i = 0u; i < n_in; i++) {
                acc = fma(sc(x + i), mlp[w_off + i * n_out + o], acc);
            }
            if (l + 1u < p.layers) {
                acc = max(acc, 0.0);
            }
            sc_set(y + o, acc);
        }
    }
}

// partials[i] += x, SHARE invocations adding to the same slice (one such loop per buffer: a
// WGSL function cannot take a pointer to storage).
fn add_partial(i: u32, x: f32) {
    var old = atomicLoad(&partials[i]);
    loop {
        let r = atomicCompareExchangeWeak(&partials[i], old, bitcast<u32>(bitcast<f32>(old) + x));
        if (r.exchanged) {
            break;
        }
        old = r.old_value;
    }
}

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

fn atomic_add_out(i: u32, x: f32) {
    var old = atomicLoad(&out_grid[i]);
    loop {
        let r = atomicCompareExchangeWeak(&out_grid[i], old, bitcast<u32>(bitcast<f32>(old) + x));
        if (r.exchanged) {
            break;
        }
        old = r.old_value;
    }
}

// Sample j of ray r, or none (inside false) if the ray is bad (status raised) or the sample is
// masked.
fn ray_sample(r: u32, j: u32) -> SamplePos {
    let o = vec3<f32>(origins[3u * r], origins[3u * r + 1u], origins[3u * r + 2u]);
    let d = vec3<f32>(dirs[3u * r], dirs[3u * r + 1u], dirs[3u * r + 2u]);
    var ok = true;
    if (batch[r] >= p.batch) {
        atomicOr(&status[0], 1u);
        ok = false;
    }
    if (!march_ray_ok(o, d, near[r], far[r])) {
        atomicOr(&status[0], 2u);
        ok = false;
    }
    var s = march_sample(o, d, near[r], far[r], j, p.samples, p.samples_inf, p.dai, p.flags);
    s.inside = s.inside && ok;
    return s;
}

// 2^s for the plain splat's fixed point: with |v| < 2^(e+1) and at most 2^log_terms terms per
// cell, every partial sum stays below 2^61 in magnitude; one unit is 2^-s (far below an f32 ulp
// of any term), and integer sums do not depend on their order.
fn fixed_scale() -> f32 {
    let bits = atomicLoad(&vmax[0]);
    let e = i32((bits >> 23u) & 0xffu) - 127;
    let s = clamp(61 - (e + 1) - i32(p.log_terms), -120, 120);
    return ldexp(1.0, s);
}

// x as a two's-complement 64-bit integer: the low word and the high word.
fn fixed_words(x: f32) -> vec2<u32> {
    let hf = floor(x * 2.3283064e-10);
    return vec2<u32>(u32(x - hf * 4294967296.0), bitcast<u32>(i32(hf)));
}

// out_grid[i] (low word) and hi_words[i] += x: two atomic adds and the carry between them,
// exact in any order.
fn fixed_add(i: u32, x: f32) {
    let q = fixed_words(x);
    let old = atomicAdd(&out_grid[i], q.x);
    atomicAdd(&hi_words[i], q.y + select(0u, 1u, old > 0xffffffffu - q.x));
}

// The same for the weights (low words in `weights`, high words in `whi`).
fn fixed_add_weight(i: u32, x: f32) {
    let q = fixed_words(x);
    let old = atomicAdd(&weights[i], q.x);
    atomicAdd(&whi[i], q.y + select(0u, 1u, old > 0xffffffffu - q.x));
}

// A fixed-point pair back to f32, divided by its scale.
fn fixed_value(lo: u32, hi: u32, scale: f32) -> f32 {
    return (f32(bitcast<i32>(hi)) * 4294967296.0 + f32(lo)) / scale;
}

// The weights' scale: each term is at most 1, at most 2^log_terms of them per cell.
fn weight_scale() -> f32 {
    return ldexp(1.0, 61 - i32(p.log_terms));
}

// Converts the fixed-point weight sums to f32 in place: cells i < len / C.
@compute @workgroup_size(256)
fn splat_wconv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len / p.c) {
        return;
    }
    let w = fixed_value(atomicLoad(&weights[i]), atomicLoad(&whi[i]), weight_scale());
    atomicStore(&weights[i], bitcast<u32>(w));
}

@compute @workgroup_size(256)
fn splat_vmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.count) {
        return;
    }
    atomicMax(&vmax[0], bitcast<u32>(abs(enc[p.item0 + i])));
}

@compute @workgroup_size(256)
fn splat_fw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.count) {
        return;
    }
    let item = p.item0 + i;
    let total = p.samples + p.samples_inf;
    let r = item / total;
    let s = ray_sample(r, item % total);
    if (!s.inside) {
        return;
    }
    let b = batch[r];
    let values = (p.flags & WEIGHTS_ONLY) == 0u;
    let with_mlp = values && (p.flags & F_MLP) != 0u;
    let fixed = (p.flags & F_FIXED) != 0u;
    var scale = 1.0;
    if (fixed) {
        scale = fixed_scale();
    }
    let wscale = weight_scale();
    if (with_mlp) {
        slot = i;
        mlp_steps(r, b, s.q, p.d0, min(p.d1, p.layers));
        if (p.d1 <= p.layers) {
            return;
        }
    }
    for (var g = 0u; g < p.ngrids; g++) {
        let dd = tables[5u * g];
        let hh = tables[5u * g + 1u];
        let ww = tables[5u * g + 2u];
        let cell0 = tables[5u * g + 4u] + b * dd * hh * ww;
        for (var k = 0u; k < 8u; k++) {
            let cw = march_corner(dd, hh, ww, s.q, k);
            if (cw.w != 0.0) {
                fixed_add_weight(cell0 + cw.cell, cw.w * wscale);
                if (values) {
                    let at = tables[5u * g + 3u] + (b * dd * hh * ww + cw.cell) * p.c;
                    for (var ch = 0u; ch < p.c; ch++) {
                        var v: f32;
                        if (with_mlp) {
                            v = cw.w * sc(p.act_out + ch);
                        } else {
                            v = cw.w * enc[r * p.c + ch];
                        }
                        if (v != 0.0) {
                            if (fixed) {
                                fixed_add(at + ch, v * scale);
                            } else {
                                atomic_add_out(at + ch, v);
                            }
                        }
                    }
                }
            }
        }
    }
}

@compute @workgroup_size(256)
fn splat_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let w = bitcast<f32>(atomicLoad(&weights[i / p.c]));
    var x: f32;
    if ((p.flags & F_FIXED) != 0u) {
        x = fixed_value(atomicLoad(&out_grid[i]), atomicLoad(&hi_words[i]), fixed_scale());
    } else {
        x = bitcast<f32>(atomicLoad(&out_grid[i]));
    }
    atomicStore(&out_grid[i], bitcast<u32>(x / max(w, FLOOR)));
}

// Corner k of output grid g at point q of batch b, for the backward gathers: grad_out's offset
// of the corner's cell and the corner weight over the cell's splatted weight (0 if outside).
fn gather_corner(g: u32, b: u32, q: vec3<f32>, k: u32) -> Gathered {
    let dd = tables[5u * g];
    let hh = tables[5u * g + 1u];
    let ww = tables[5u * g + 2u];
    let cw = march_corner(dd, hh, ww, q, k);
    if (cw.w == 0.0) {
        return Gathered(0u, 0.0);
    }
    let cell = b * dd * hh * ww + cw.cell;
    let w = bitcast<f32>(atomicLoad(&weights[tables[5u * g + 4u] + cell]));
    return Gathered(tables[5u * g + 3u] + cell * p.c, cw.w / max(w, FLOOR));
}

@compute @workgroup_size(256)
fn splat_bw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.nr * p.c) {
        return;
    }
    let r = p.ray0 + i / p.c;
    let ch = i % p.c;
    var acc = 0.0;
    for (var j = p.j0; j < p.j0 + p.nj; j++) {
        let s = ray_sample(r, j);
        if (s.inside) {
            let b = batch[r];
            for (var g = 0u; g < p.ngrids; g++) {
                for (var k = 0u; k < 8u; k++) {
                    let gc = gather_corner(g, b, s.q, k);
                    if (gc.scale != 0.0) {
                        acc = fma(gc.scale, grad_out[gc.at + ch], acc);
                    }
                }
            }
        }
    }
    let at = r * p.c + ch;
    if (p.first == 1u) {
        g_enc[at] = acc;
    } else {
        g_enc[at] = g_enc[at] + acc;
    }
}

fn atomic_add_input(i: u32, x: f32) {
    var old = atomicLoad(&g_input[i]);
    loop {
        let r = atomicCompareExchangeWeak(&g_input[i], old, bitcast<u32>(bitcast<f32>(old) + x));
        if (r.exchanged) {
            break;
        }
        old = r.old_value;
    }
}

@compute @workgroup_size(256)
fn splat_mlp_bw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.nr) {
        return;
    }
    slot = i;
    let r = p.ray0 + i;
    let slice = (i / SHARE) * p.plen;
    let lane = i % SHARE;
    if (p.first == 1u) {
        for (var ch = 0u; ch < p.cin; ch++) {
            g_enc[r * p.cin + ch] = 0.0;
        }
    }
    for (var j = p.j0; j < p.j0 + p.nj; j++) {
        let s = ray_sample(r, j);
        if (!s.inside) {
            continue;
        }
        let b = batch[r];
        let nd = p.layers;
        mlp_steps(r, b, s.q, p.d0, min(p.d1, nd));
        if (p.d0 <= nd && nd < p.d1) {
            // The output's gradient: grad_out / max(weight, 1e-5) gathered at the sample.
            for (var ch = 0u; ch < p.c; ch++) {
                sc_set(p.sc_ga + ch, 0.0);
            }
            for (var g = 0u; g < p.ngrids; g++) {
                for (var k = 0u; k < 8u; k++) {
                    let gc = gather_corner(g, b, s.q, k);
                    if (gc.scale != 0.0) {
                        for (var ch = 0u; ch < p.c; ch++) {
                            sc_set(p.sc_ga + ch, fma(gc.scale, grad_out[gc.at + ch], sc(p.sc_ga + ch)));
                        }
                    }
                }
            }
        }
        // Back through the layers (ReLU on all but the last).
        for (var d = max(p.d0, nd + 1u); d < min(p.d1, 2u * nd + 1u); d++) {
            let l = 2u * nd - d;
            let n_in = layer(l, 0u);
            let n_out = layer(l, 1u);
            let w_off = layer(l, 2u);
            let b_off = layer(l, 3u);
            let x = layer(l, 4u);
            let y = layer(l, 5u);
            for (var oo = 0u; oo < n_out; oo++) {
                let o = (oo + lane) % n_out;
                if (l + 1u < p.layers && sc(y + o) <= 0.0) {
                    sc_set(p.sc_ga + o, 0.0);
                }
                add_partial(slice + b_off + o, sc(p.sc_ga + o));
            }
            // The input gradient's sum over outputs keeps its order; the rows start at the lane.
            for (var iii = 0u; iii < n_in; iii++) {
                let ii = (iii + lane) % n_in;
                let xi = sc(x + ii);
                var acc = 0.0;
                for (var o = 0u; o < n_out; o++) {
                    let go = sc(p.sc_ga + o);
                    add_partial(slice + w_off + ii * n_out + o, xi * go);
                    acc = fma(mlp[w_off + ii * n_out + o], go, acc);
                }
                sc_set(p.sc_gb + ii, acc);
            }
            for (var ii = 0u; ii < n_in; ii++) {
                sc_set(p.sc_ga + ii, sc(p.sc_gb + ii));
            }
        }
        if (p.d1 <= 2u * nd + 1u) {
            continue;
        }
        // The input's gradient: the encoding's, and the input grids' at the sample's corners.
        for (var ch = 0u; ch < p.cin; ch++) {
            g_enc[r * p.cin + ch] += sc(p.sc_ga + ch);
        }
        for (var g = 0u; g < p.ngin; g++) {
            for (var k = 0u; k < 8u; k++) {
                let ic = input_corner(g, b, s.q, k);
                if (ic.scale != 0.0) {
                    for (var ch = 0u; ch < p.cin; ch++) {
                        let v = ic.scale * sc(p.sc_ga + ch);
                        if (v != 0.0) {
                            atomic_add_input(ic.at + ch, v);
                        }
                    }
                }
            }
        }
    }
}

@compute @workgroup_size(256)
fn splat_mlp_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let e = flat_index(wid, nwg, lid);
    if (e >= p.plen) {
        return;
    }
    var acc = 0.0;
    let slices = (p.slots + SHARE - 1u) / SHARE;
    for (var s = 0u; s < slices; s++) {
        acc += bitcast<f32>(atomicLoad(&partials[s * p.plen + e]));
    }
    g_params[e] = acc;
}
