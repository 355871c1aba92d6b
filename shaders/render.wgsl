// render.wgsl: triplane/voxel rendering, forward and backward (src/ops/render,
// design/triplane.md); the same marches as the CPU reference, in f32.
//
// Entry points (workgroups of 256 invocations in a 2D grid; `slots` = invocations launched):
//   render_fw   bindings 1 grid table, 2 grids, 3 color grids, 4 mlp_params, 5-10 rays (origins,
//               directions, near, far, batch, encoding), 11 scratch, 12 status, 13 features,
//               14 ray_length, 15 lambda. Invocation s marches samples j0 .. j1 of ray
//               ray0 + s, carrying the march in its three outputs from one dispatch to the
//               next; more rays than slots, or more samples than one dispatch's share, is
//               several dispatches.
// A sample's activations live in `scratch` (element k of slot s at k * slots + s), a buffer
// sized by the invocations launched, never by rays or samples. A ray with a batch index out of
// range, or non-finite or reversed near/far, sets bit 1 or 2 of `status` and gets NaN outputs;
// the host turns the bits into an error.
// Bytes per ray and sample: 8 corners x C channels x grids read (2 or 4 bytes each); the
// decoder's weights are read by every invocation at the same address (cached).
//
// llvmpipe (lavapipe) ends every loop of an invocation once the iterations of all its loops add
// up to 65 535 (gallivm's LP_MAX_TGSI_LOOP_ITERATIONS), silently: hence one ray per invocation,
// only as many samples per dispatch as the host counts to fit (wgpu.rs, LOOP_BUDGET), and a
// sample past it split over dispatches by its steps (see "Steps" below).
//
//   render_bw   bindings 1-12, 16-18 incoming gradients, 19 grid gradient, 20 color grid
//               gradient, 21 partials, 22 encoding gradient, 24 per-ray state. Pass 0 sums the
//               ray's Lambda forward over samples j0 .. j1; pass 1 marches back over them
//               (triplane.md), the dispatches in reverse sample order. Grid gradients by
//               compare-and-swap adds on atomic<u32> (WGSL has no portable float atomics);
//               decoder gradients by the same adds into a slice of `partials` shared by
//               SHARE = 32 neighbouring invocations (ceil(slots / 32) x params: 17 KiB per 32
//               invocations for Lightplane's decoder, where a slice per invocation cost that
//               per invocation and bounded how many ran; 32, not a workgroup's 256, because
//               one f32 word summing the samples of 256 rays loses digits: 5e-5 relative on
//               1001 rays, against 1e-4 allowed); the encoding gradient summed in place per ray.
//   render_sum  bindings 21 partials, 23 params gradient: sums the slices in order.
//
// Lambda in the backward march is a 64-bit fixed-point number (integer and 2^-32 fraction
// words): subtracting tau_j undoes adding it exactly, so the foreground's Lambda comes back
// exact even when background samples at disparity 1e-5 make Lambda_last 1e5 or more (an f32
// reverse march loses the foreground's transmittances there). Taus below 2^-32 count as zero
// and above 4e9 as 4e9 in it (the transmittance is then 0 either way).

struct Params {
    rays: u32,
    samples: u32,
    samples_inf: u32,
    flags: u32,      // 1 contract, 2 mask, 4 noise, 8 color grid, 16 encoding
    gain: f32,
    dai: f32,
    sigma: f32,
    dtype: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream_lo: u32,
    stream_hi: u32,
    ngrids: u32,
    ncolor: u32,
    c: u32,
    cc: u32,
    batch: u32,
    k: u32,          // color channels rendered
    e: u32,          // encoding width (the color head's input)
    slots: u32,
    ps_t: u32,       // where each MLP's parameters start in mlp_params
    ps_o: u32,
    ps_c: u32,
    plen: u32,       // length of mlp_params
    lt: u32,         // layer counts
    lo: u32,
    lc: u32,
    sc_f: u32,       // scratch offsets: f, f_color, gradient vectors a, b, head, colors, encoding
    sc_fc: u32,
    sc_ga: u32,
    sc_gb: u32,
    sc_gh: u32,
    sc_c: u32,
    sc_enc: u32,
    unused0: u32,    // (word 34 is kept so render.ptx's offsets stay put)
    sc_go: u32,      // the gradient of o_raw, between split dispatches
    ab_t: u32,       // where each MLP's activations start in scratch
    ab_o: u32,
    ab_c: u32,
    hidden: u32,
    cout: u32,       // the color head's outputs (K, or 16 when padded the Lightplane way)
    ray0: u32,       // the first ray of this dispatch
    j0: u32,         // the samples this dispatch marches: j0 .. j1
    j1: u32,
    pass_: u32,      // render_bw: 0 sums Lambda forward, 1 marches back
    d0: u32,         // the steps of each sample this dispatch runs: d0 .. d1 (see "Steps")
    d1: u32,
    pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// tables: [D, H, W, offset] per grid (the color list after the grid list).
@group(0) @binding(1) var<storage, read> tables: array<u32>;
@group(0) @binding(2) var<storage, read> grids: array<u32>;
@group(0) @binding(3) var<storage, read> cgrids: array<u32>;
@group(0) @binding(4) var<storage, read> mlp: array<f32>;
@group(0) @binding(5) var<storage, read> origins: array<f32>;
@group(0) @binding(6) var<storage, read> dirs: array<f32>;
@group(0) @binding(7) var<storage, read> near: array<f32>;
@group(0) @binding(8) var<storage, read> far: array<f32>;
@group(0) @binding(9) var<storage, read> batch: array<u32>;
@group(0) @binding(10) var<storage, read> enc: array<f32>;
@group(0) @binding(11) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(12) var<storage, read_write> status: array<atomic<u32>>;
@group(0) @binding(13) var<storage, read_write> out_feat: array<f32>;
@group(0) @binding(14) var<storage, read_write> out_len: array<f32>;
@group(0) @binding(15) var<storage, read_write> lambda: array<f32>;
@group(0) @binding(16) var<storage, read> g_feat: array<f32>;
@group(0) @binding(17) var<storage, read> g_len: array<f32>;
@group(0) @binding(18) var<storage, read> g_lam: array<f32>;
@group(0) @binding(19) var<storage, read_write> g_grid: array<atomic<u32>>;
@group(0) @binding(20) var<storage, read_write> g_cgrid: array<atomic<u32>>;
@group(0) @binding(21) var<storage, read_write> partials: array<atomic<u32>>;
@group(0) @binding(22) var<storage, read_write> g_enc: array<f32>;
@group(0) @binding(23) var<storage, read_write> g_params: array<f32>;
// Per ray between backward dispatches: Lambda (fixed point, two words), S_{j+1}, p_{j+1}.
@group(0) @binding(24) var<storage, read_write> bstate: array<u32>;

const F_NOISE: u32 = 4u;
const F_COLOR: u32 = 8u;
const F_ENC: u32 = 16u;
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

fn elem(list: u32, i: u32) -> f32 {
    var w: u32;
    if (list == 0u) {
        w = grids[select(i >> 1u, i, p.dtype == DT_F32)];
    } else {
        w = cgrids[select(i >> 1u, i, p.dtype == DT_F32)];
    }
    if (p.dtype == DT_F32) {
        return bitcast<f32>(w);
    }
    return half_to_f32((w >> ((i & 1u) * 16u)) & 0xffffu, p.dtype);
}

// Corner k of grid g at point q (common/march.wgsl).
fn corner(g: u32, q: vec3<f32>, k: u32) -> Corner {
    return march_corner(tables[4u * g], tables[4u * g + 1u], tables[4u * g + 2u], q, k);
}

// The element offset of a cell of batch b in grid g (whose list has nch channels).
fn cell_at(g: u32, b: u32, cell: u32, nch: u32) -> u32 {
    let dhw = tables[4u * g] * tables[4u * g + 1u] * tables[4u * g + 2u];
    return tables[4u * g + 3u] + (b * dhw + cell) * nch;
}

// scratch[dst ..] = sum of the list's samples at q (list 0: grids, 1: color grids).
fn sample_list(list: u32, b: u32, q: vec3<f32>, dst: u32) {
    let nch = select(p.c, p.cc, list == 1u);
    let first = select(0u, p.ngrids, list == 1u);
    let count = select(p.ngrids, p.ncolor, list == 1u);
    for (var ch = 0u; ch < nch; ch++) {
        sc_set(dst + ch, 0.0);
    }
    for (var g = first; g < first + count; g++) {
        for (var k = 0u; k < 8u; k++) {
            let cw = corner(g, q, k);
            if (cw.w != 0.0) {
                let at = cell_at(g, b, cw.cell, nch);
                for (var ch = 0u; ch < nch; ch++) {
                    sc_set(dst + ch, sc(dst + ch) + cw.w * elem(list, at + ch));
                }
            }
        }
    }
}

// The MLPs are numbered 0 trunk, 1 opacity, 2 color. Every width and offset follows from the
// uniform parameters (Lightplane's layout; src/ops/render/decoder.rs), so every loop bound is
// uniform.
fn mlp_layers(m: u32) -> u32 {
    return select(select(p.lc, p.lo, m == 1u), p.lt, m == 0u);
}

fn mlp_in(m: u32) -> u32 {
    if (m == 0u) {
        return p.c;
    }
    if ((p.flags & F_COLOR) != 0u) {
        return select(p.cc, p.c, m == 1u);
    }
    return p.hidden;
}

fn mlp_out(m: u32) -> u32 {
    return select(select(p.cout, 1u, m == 1u), p.hidden, m == 0u);
}

// Field f of layer l of MLP m: 0 n_in, 1 n_out, 2 weight offset, 3 bias offset, 4 input slot,
// 5 output slot (scratch offsets).
fn layer(m: u32, l: u32, f: u32) -> u32 {
    let nl = mlp_layers(m);
    let i0 = mlp_in(m);
    let o1 = mlp_out(m);
    let h = p.hidden;
    let start = select(select(p.ps_c, p.ps_o, m == 1u), p.ps_t, m == 0u);
    let base = select(select(p.ab_c, p.ab_o, m == 1u), p.ab_t, m == 0u);
    switch f {
        case 0u: {
            return select(h, i0, l == 0u);
        }
        case 1u: {
            return select(h, o1, l + 1u == nl);
        }
        case 2u: {
            return select(start + i0 * h + (l - 1u) * h * h, start, l == 0u);
        }
        case 3u: {
            let weights = select(i0 * h + (nl - 2u) * h * h + h * o1, i0 * o1, nl == 1u);
            return start + weights + l * h;
        }
        case 4u: {
            return select(base + i0 + (l - 1u) * h, base, l == 0u);
        }
        default: {
            return base + i0 + l * h;
        }
    }
}

// Layer l of MLP m: its widths, parameter offsets, activation slots, and whether a ReLU
// follows it (every layer's but, unless relu_last, the last's).
struct Layer {
    n_in: u32,
    n_out: u32,
    w_off: u32,
    b_off: u32,
    x: u32,
    y: u32,
    relu: bool,
}

fn layer_of(m: u32, l: u32, relu_last: bool) -> Layer {
    let relu = l + 1u < mlp_layers(m) || relu_last;
    return Layer(layer(m, l, 0u), layer(m, l, 1u), layer(m, l, 2u), layer(m, l, 3u),
                 layer(m, l, 4u), layer(m, l, 5u), relu);
}

// Layer l of MLP m from its input activations.
fn mlp_fw(m: u32, l: u32, relu_last: bool) {
    let ly = layer_of(m, l, relu_last);
    for (var o = 0u; o < ly.n_out; o++) {
        var acc = mlp[ly.b_off + o];
        for (var i = 0u; i < ly.n_in; i++) {
            acc = fma(sc(ly.x + i), mlp[ly.w_off + i * ly.n_out + o], acc);
        }
        if (ly.relu) {
            acc = max(acc, 0.0);
        }
        sc_set(ly.y + o, acc);
    }
}

// max(x, 0) + log1p(exp(-|x|)), with log1p(u) = 2 atanh(s), s = u / (2 + u) in [0, 1/3]: the
// odd series to s^15 is within 2^-28. log(1 + u) would lose the digits of a small u (1 + u
// rounds to a multiple of 2^-23), and WGSL's log is only absolutely accurate near 1.
fn softplus(x: f32) -> f32 {
    let u = exp(-abs(x));
    let s = u / (2.0 + u);
    let s2 = s * s;
    var q = 1.0 / 15.0;
    q = fma(q, s2, 1.0 / 13.0);
    q = fma(q, s2, 1.0 / 11.0);
    q = fma(q, s2, 1.0 / 9.0);
    q = fma(q, s2, 1.0 / 7.0);
    q = fma(q, s2, 1.0 / 5.0);
    q = fma(q, s2, 1.0 / 3.0);
    q = fma(q, s2, 1.0);
    return max(x, 0.0) + 2.0 * s * q;
}

// 1 - exp(-t) for t >= 0: a sample's weight T_{j-1} - T_j is T_{j-1} (1 - exp(-tau_j)), and the
// difference of two transmittances near 1 keeps none of the digits of a small tau. Below 0.35
// the nested Taylor form t (1 - t/2 (1 - t/3 (... (1 - t/8)))) is within 2^-26.
fn one_minus_exp_neg(t: f32) -> f32 {
    if (t >= 0.35) {
        return 1.0 - exp(-t);
    }
    var q = 1.0 - t * (1.0 / 8.0);
    q = 1.0 - t * (1.0 / 7.0) * q;
    q = 1.0 - t * (1.0 / 6.0) * q;
    q = 1.0 - t * (1.0 / 5.0) * q;
    q = 1.0 - t * (1.0 / 4.0) * q;
    q = 1.0 - t * (1.0 / 3.0) * q;
    q = 1.0 - t * (1.0 / 2.0) * q;
    return t * q;
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

fn sample_pos(r: u32, j: u32) -> SamplePos {
    let o = vec3<f32>(origins[3u * r], origins[3u * r + 1u], origins[3u * r + 2u]);
    let d = vec3<f32>(dirs[3u * r], dirs[3u * r + 1u], dirs[3u * r + 2u]);
    return march_sample(o, d, near[r], far[r], j, p.samples, p.samples_inf, p.dai, p.flags);
}

fn noise(r: u32, j: u32) -> f32 {
    if ((p.flags & F_NOISE) == 0u) {
        return 0.0;
    }
    // i = r * total + j as a 64-bit index.
    let total = p.samples + p.samples_inf;
    let lo = r * total;
    let hi = philox_mulhilo(r, total).x;
    let i = philox_add64(vec2<u32>(lo, hi), j);
    let key = vec2<u32>(p.seed_lo, p.seed_hi);
    let strm = vec2<u32>(p.stream_lo, p.stream_hi);
    let z = philox_gaussians(philox_block(philox_block_of(i), strm, key));
    return p.sigma * z[i.x & 3u];
}

// Steps. A sample's work is a sequence of steps that split dispatches can share out (wgpu.rs:
// one sample past llvmpipe's loop limit is several dispatches, the scratch carrying it between
// them). With L = lt + lo + lc, one step per decoder layer:
//   0 .. L        the decoder forward: trunk, opacity head, color head (step 0 also samples
//                 the grids, step lt also hands the trunk's output and the encoding on);
//   L             the forward's last: the colors and o_raw + noise, then the sample's place in
//                 the march (compositing, or Lambda, or the reverse march's state and the
//                 gradients of the heads' outputs);
//   L + 1 .. 2L + 1  (reverse march only) one step per layer backward: color head, opacity
//                 head, trunk (the first of each also hands the gradients on);
//   2L + 1        the grids' gradients at the sample.
// A dispatch runs steps d0 .. d1 of every sample in its window; a window of several samples
// always runs every step.

fn decoder_steps() -> u32 {
    return p.lt + p.lo + p.lc;
}

// Decoder steps d0 .. d1 (of decoder_steps()) at sample s of ray r (batch b).
fn decode_steps(r: u32, b: u32, s: SamplePos, d0: u32, d1: u32) {
    let t_in = layer(0u, 0u, 4u);
    let o_in = layer(1u, 0u, 4u);
    let c_in = layer(2u, 0u, 4u);
    for (var d = d0; d < d1; d++) {
        if (d == 0u) {
            if (s.inside) {
                sample_list(0u, b, s.q, p.sc_f);
            } else {
                for (var ch = 0u; ch < p.c; ch++) {
                    sc_set(p.sc_f + ch, 0.0);
                }
            }
            if ((p.flags & F_COLOR) == 0u) {
                for (var ch = 0u; ch < p.c; ch++) {
                    sc_set(t_in + ch, sc(p.sc_f + ch));
                }
            } else {
                if (s.inside) {
                    sample_list(1u, b, s.q, p.sc_fc);
                } else {
                    for (var ch = 0u; ch < p.cc; ch++) {
                        sc_set(p.sc_fc + ch, 0.0);
                    }
                }
                for (var ch = 0u; ch < p.c; ch++) {
                    sc_set(o_in + ch, max(sc(p.sc_f + ch), 0.0));
                }
                for (var ch = 0u; ch < p.cc; ch++) {
                    sc_set(c_in + ch, max(sc(p.sc_fc + ch), 0.0));
                }
            }
        }
        if (d == p.lt) {
            if ((p.flags & F_COLOR) == 0u) {
                let h = layer(0u, p.lt - 1u, 5u);
                for (var i = 0u; i < p.e; i++) {
                    sc_set(o_in + i, sc(h + i));
                    sc_set(c_in + i, sc(h + i));
                }
            }
            if ((p.flags & F_ENC) != 0u) {
                for (var i = 0u; i < p.e; i++) {
                    sc_set(c_in + i, sc(c_in + i) + enc[r * p.e + i]);
                }
            }
        }
        if (d < p.lt) {
            mlp_fw(0u, d, true);
        } else if (d < p.lt + p.lo) {
            mlp_fw(1u, d - p.lt, false);
        } else {
            mlp_fw(2u, d - p.lt - p.lo, false);
        }
    }
}

// After the decoder steps of sample j of ray r: the colors into scratch, and o_raw + noise.
fn decoded(r: u32, j: u32) -> f32 {
    let logits = layer(2u, p.lc - 1u, 5u);
    for (var o = 0u; o < p.k; o++) {
        sc_set(p.sc_c + o, sigmoid(sc(logits + o)));
    }
    return sc(layer(1u, p.lo - 1u, 5u)) + noise(r, j);
}

// Decoder steps p.d0 .. L at sample j of ray r, then decoded(): the whole decoder in a window
// of several samples, its last steps in a split one.
fn decode(r: u32, j: u32, b: u32, s: SamplePos) -> f32 {
    decode_steps(r, b, s, min(p.d0, decoder_steps()), decoder_steps());
    return decoded(r, j);
}

// A split dispatch that stops before step L runs only decoder steps, of its one sample j0.
fn decode_only(r: u32) -> bool {
    if (p.d1 > decoder_steps()) {
        return false;
    }
    decode_steps(r, batch[r], sample_pos(r, p.j0), p.d0, p.d1);
    return true;
}

// Whether ray r can be marched; if not, raise its status bit.
fn ray_ok(r: u32) -> bool {
    var ok = true;
    if (batch[r] >= p.batch) {
        atomicOr(&status[0], 1u);
        ok = false;
    }
    let o = vec3<f32>(origins[3u * r], origins[3u * r + 1u], origins[3u * r + 2u]);
    let d = vec3<f32>(dirs[3u * r], dirs[3u * r + 1u], dirs[3u * r + 2u]);
    if (!march_ray_ok(o, d, near[r], far[r])) {
        atomicOr(&status[0], 2u);
        ok = false;
    }
    return ok;
}

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// The forward march of ray r into its three outputs.
fn atomic_add_grid(i: u32, x: f32) {
    var old = atomicLoad(&g_grid[i]);
    loop {
        let r = atomicCompareExchangeWeak(&g_grid[i], old, bitcast<u32>(bitcast<f32>(old) + x));
        if (r.exchanged) {
            break;
        }
        old = r.old_value;
    }
}

fn atomic_add_cgrid(i: u32, x: f32) {
    var old = atomicLoad(&g_cgrid[i]);
    loop {
        let r = atomicCompareExchangeWeak(&g_cgrid[i], old, bitcast<u32>(bitcast<f32>(old) + x));
        if (r.exchanged) {
            break;
        }
        old = r.old_value;
    }
}

// partials[i] += x, SHARE invocations adding to the same slice. One such loop per buffer, as
// for the grids: a WGSL function cannot take a pointer to storage (without the
// unrestricted_pointer_parameters extension, which not every implementation has).
fn atomic_add_partial(i: u32, x: f32) {
    var old = atomicLoad(&partials[i]);
    loop {
        let r = atomicCompareExchangeWeak(&partials[i], old, bitcast<u32>(bitcast<f32>(old) + x));
        if (r.exchanged) {
            break;
        }
        old = r.old_value;
    }
}

// The adjoint of sample_list: every corner of every grid of the list gets weight x scratch[src ..].
fn scatter_list(list: u32, b: u32, q: vec3<f32>, src: u32) {
    let nch = select(p.c, p.cc, list == 1u);
    let first = select(0u, p.ngrids, list == 1u);
    let count = select(p.ngrids, p.ncolor, list == 1u);
    for (var g = first; g < first + count; g++) {
        for (var k = 0u; k < 8u; k++) {
            let cw = corner(g, q, k);
            if (cw.w != 0.0) {
                let at = cell_at(g, b, cw.cell, nch);
                for (var ch = 0u; ch < nch; ch++) {
                    let v = cw.w * sc(src + ch);
                    if (v != 0.0 && list == 0u) {
                        atomic_add_grid(at + ch, v);
                    }
                    if (v != 0.0 && list == 1u) {
                        atomic_add_cgrid(at + ch, v);
                    }
                }
            }
        }
    }
}

// Back through layer l of MLP m from the gradient of its output in scratch[sc_ga ..], leaving
// the gradient of its input there and adding the parameter gradients to the shared
// partials[slice ..]. Each invocation starts its bias and input loops at its lane, so that
// neighbouring invocations add to different words rather than all retrying on one; the input
// gradient's sum over outputs keeps its order.
fn mlp_bw(m: u32, l: u32, relu_last: bool, slice: u32) {
    let lane = slot % SHARE;
    let ly = layer_of(m, l, relu_last);
    for (var oo = 0u; oo < ly.n_out; oo++) {
        let o = (oo + lane) % ly.n_out;
        if (ly.relu && sc(ly.y + o) <= 0.0) {
            sc_set(p.sc_ga + o, 0.0);
        }
        atomic_add_partial(slice + ly.b_off + o, sc(p.sc_ga + o));
    }
    for (var ii = 0u; ii < ly.n_in; ii++) {
        let i = (ii + lane) % ly.n_in;
        let xi = sc(ly.x + i);
        var acc = 0.0;
        for (var o = 0u; o < ly.n_out; o++) {
            let g = sc(p.sc_ga + o);
            atomic_add_partial(slice + ly.w_off + i * ly.n_out + o, xi * g);
            acc = fma(mlp[ly.w_off + i * ly.n_out + o], g, acc);
        }
        sc_set(p.sc_gb + i, acc);
    }
    for (var i = 0u; i < ly.n_in; i++) {
        sc_set(p.sc_ga + i, sc(p.sc_gb + i));
    }
}

// The reverse march's steps L + 1 + q for q in q0 .. q1 (see "Steps") at sample s of ray r:
// back through the color head, the opacity head and the trunk, then the grids' gradients.
fn backward_steps(r: u32, b: u32, s: SamplePos, slice: u32, q0: u32, q1: u32) {
    for (var q = q0; q < q1; q++) {
        if (q < p.lc) {
            mlp_bw(2u, p.lc - 1u - q, false, slice);
        } else if (q < p.lc + p.lo) {
            if (q == p.lc) {
                // The color head's input gradient is the encoding's (and, below, the trunk's).
                for (var i = 0u; i < p.e; i++) {
                    let g = sc(p.sc_ga + i);
                    sc_set(p.sc_gh + i, g);
                    g_enc[r * p.e + i] += g;
                }
                sc_set(p.sc_ga, sc(p.sc_go));
            }
            mlp_bw(1u, p.lo - 1u - (q - p.lc), false, slice);
        } else if (q < decoder_steps()) {
            if (q == p.lc + p.lo) {
                // The trunk's parameters learn even where the mask zeroes the feature.
                for (var i = 0u; i < p.e; i++) {
                    sc_set(p.sc_ga + i, sc(p.sc_ga + i) + sc(p.sc_gh + i));
                }
            }
            mlp_bw(0u, p.lt - 1u - (q - p.lc - p.lo), true, slice);
        } else if ((p.flags & F_COLOR) == 0u) {
            if (s.inside) {
                scatter_list(0u, b, s.q, p.sc_ga);
            }
        } else if (s.inside) {
            for (var ch = 0u; ch < p.c; ch++) {
                if (sc(p.sc_f + ch) <= 0.0) {
                    sc_set(p.sc_ga + ch, 0.0);
                }
            }
            scatter_list(0u, b, s.q, p.sc_ga);
            for (var ch = 0u; ch < p.cc; ch++) {
                if (sc(p.sc_fc + ch) <= 0.0) {
                    sc_set(p.sc_gh + ch, 0.0);
                }
            }
            scatter_list(1u, b, s.q, p.sc_gh);
        }
    }
}

// tau as 64-bit fixed point: (integer part, fraction in units of 2^-32).
fn fixed(tau: f32) -> vec2<u32> {
    let t = min(tau, 4.0e9);
    let whole = floor(t);
    return vec2<u32>(u32(whole), u32((t - whole) * 4294967296.0));
}

fn fixed_add(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.y + b.y;
    return vec2<u32>(a.x + b.x + select(0u, 1u, lo < a.y), lo);
}

fn fixed_sub(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    return vec2<u32>(a.x - b.x - select(0u, 1u, a.y < b.y), a.y - b.y);
}

fn fixed_f32(a: vec2<u32>) -> f32 {
    return f32(a.x) + f32(a.y) * 2.3283064e-10;
}


// The backward pass's first march, samples j0 .. j1 of ray r: Lambda summed in fixed point.
fn sum_lambda(r: u32) {
    if (decode_only(r)) {
        return;
    }
    let b = batch[r];
    var lam = vec2<u32>(0u, 0u);
    if (p.j0 == 0u) {
        for (var i = 0u; i < p.e; i++) {
            g_enc[r * p.e + i] = 0.0;
        }
    } else {
        lam = vec2<u32>(bstate[4u * r], bstate[4u * r + 1u]);
    }
    for (var j = p.j0; j < p.j1; j++) {
        let s = sample_pos(r, j);
        let x = decode(r, j, b, s);
        lam = fixed_add(lam, fixed(p.gain * s.delta * softplus(x)));
    }
    bstate[4u * r] = lam.x;
    bstate[4u * r + 1u] = lam.y;
}

// triplane.md's reverse march over samples j1 - 1 down to j0 of ray r: gradients into the grids,
// partials[slice ..] and the ray's encoding. Only a dispatch that runs step L moves the march's
// state; one after it runs the backward steps of its one sample from the scratch.
fn march_back(r: u32, slice: u32) {
    let total = p.samples + p.samples_inf;
    let nd = decoder_steps();
    let b = batch[r];
    if (p.d0 > nd) {
        backward_steps(r, b, sample_pos(r, p.j0), slice, p.d0 - nd - 1u, p.d1 - nd - 1u);
        return;
    }
    if (decode_only(r)) {
        return;
    }
    var lam = vec2<u32>(bstate[4u * r], bstate[4u * r + 1u]);
    var s_next = 0.0;
    var p_next = 0.0;
    if (p.j1 < total) {
        s_next = bitcast<f32>(bstate[4u * r + 2u]);
        p_next = bitcast<f32>(bstate[4u * r + 3u]);
    }
    let n_logits = layer(2u, p.lc - 1u, 1u);
    let logits = layer(2u, p.lc - 1u, 5u);
    for (var jj = p.j0; jj < p.j1; jj++) {
        let j = p.j1 - 1u - (jj - p.j0);
        let s = sample_pos(r, j);
        let x = decode(r, j, b, s);
        let t_now = exp(-fixed_f32(lam));
        let tau = p.gain * s.delta * softplus(x);
        lam = fixed_sub(lam, fixed(tau));
        let w = exp(-fixed_f32(lam)) * one_minus_exp_neg(tau);
        var p_now = s.t * g_len[r];
        for (var o = 0u; o < p.k; o++) {
            p_now = fma(sc(p.sc_c + o), g_feat[r * p.k + o], p_now);
        }
        let s_now = s_next + t_now * (p_now - p_next);
        sc_set(p.sc_go, p.gain * s.delta * (s_now + g_lam[r]) * sigmoid(x));
        s_next = s_now;
        p_next = p_now;
        for (var o = 0u; o < n_logits; o++) {
            var g = 0.0;
            if (o < p.k) {
                // c (1 - c) as c sigmoid(-logit): 1 - c would keep none of the digits of a
                // saturated color's small complement.
                let c = sc(p.sc_c + o);
                g = w * g_feat[r * p.k + o] * c * sigmoid(-sc(logits + o));
            }
            sc_set(p.sc_ga + o, g);
        }
        backward_steps(r, b, s, slice, 0u, min(p.d1 - nd - 1u, nd + 1u));
    }
    bstate[4u * r] = lam.x;
    bstate[4u * r + 1u] = lam.y;
    bstate[4u * r + 2u] = bitcast<u32>(s_next);
    bstate[4u * r + 3u] = bitcast<u32>(p_next);
}

// The outputs carry the march between dispatches: T_{j0 - 1} = exp(-Lambda) is exactly the
// value the uncut loop would hold.
fn march(r: u32) {
    if (decode_only(r)) {
        return;
    }
    let b = batch[r];
    var lam = 0.0;
    var ray_len = 0.0;
    if (p.j0 == 0u) {
        for (var o = 0u; o < p.k; o++) {
            out_feat[r * p.k + o] = 0.0;
        }
    } else {
        lam = lambda[r];
        ray_len = out_len[r];
    }
    var t_prev = exp(-lam);
    for (var j = p.j0; j < p.j1; j++) {
        let s = sample_pos(r, j);
        let x = decode(r, j, b, s);
        let tau = p.gain * s.delta * softplus(x);
        let w = t_prev * one_minus_exp_neg(tau);
        lam += tau;
        let t_now = exp(-lam);
        for (var o = 0u; o < p.k; o++) {
            out_feat[r * p.k + o] = fma(w, sc(p.sc_c + o), out_feat[r * p.k + o]);
        }
        ray_len = fma(w, s.t, ray_len);
        t_prev = t_now;
    }
    out_len[r] = ray_len;
    lambda[r] = lam;
}

@compute @workgroup_size(256)
fn render_fw(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    slot = flat_index(wid, nwg, lid);
    if (slot >= p.slots) {
        return;
    }
    // One ray per invocation and dispatch (see the header on llvmpipe's loop limit).
    let r = p.ray0 + slot;
    if (r >= p.rays) {
        return;
    }
    if (ray_ok(r)) {
        march(r);
    } else {
        let nan = bitcast<f32>(0x7fc00000u);
        for (var o = 0u; o < p.k; o++) {
            out_feat[r * p.k + o] = nan;
        }
        out_len[r] = nan;
        lambda[r] = nan;
    }
}



@compute @workgroup_size(256)
fn render_bw(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    slot = flat_index(wid, nwg, lid);
    if (slot >= p.slots) {
        return;
    }
    let r = p.ray0 + slot;
    if (r >= p.rays || !ray_ok(r)) {
        return;
    }
    if (p.pass_ == 0u) {
        sum_lambda(r);
    } else {
        march_back(r, (slot / SHARE) * p.plen);
    }
}

@compute @workgroup_size(256)
fn render_sum(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = flat_index(wid, nwg, lid);
    if (e >= p.plen) {
        return;
    }
    var acc = 0.0;
    let groups = (p.slots + SHARE - 1u) / SHARE;
    for (var gr = 0u; gr < groups; gr++) {
        acc += bitcast<f32>(atomicLoad(&partials[gr * p.plen + e]));
    }
    g_params[e] = acc;
}
