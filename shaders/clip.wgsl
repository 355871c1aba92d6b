// clip.wgsl: per-example clipping, ghost norms and the adaptive clip norm (src/ops/clip,
// design/clip.md). The same math as kernels/clip.ptx, cut into binding windows: the host binds
// a window of each large buffer at a 256-element boundary and passes the element `skip` of the
// window's first element within the binding.
//
// Entry points (workgroups of 256, 2D grid, workgroup w = wg.x + wg.y * nwg.x):
//   clip_sumsq    workgroup (row, tile) of the window, rows p.r0 .. p.r0 + p.rows and tiles
//                 p.t0 .. p.t0 + p.ntw: partials[row][tile] = sum of squares of the tile's
//                 columns of the row. Reads each gradient once.
//   clip_factors  one invocation per row of the window: norms, factors and counts from the
//                 partials (group g's tiles added in order); row 0 writes sigma to stats.
//   clip_sum      one invocation per column k of the window: sum[k] (+)= sum over the window's
//                 rows of c * g (fma, rows with c = 0 skipped); flag FIRST starts from 0, flag
//                 LAST adds sigma z(index + k) as add_gaussian does and multiplies by scale.
//   clip_ghost    workgroup per example of the window: out = max(0, weight term) (+ bias term)
//   clip_adapt    one invocation: the adaptive clip-norm update
// Bindings: 0 Params; 1 g (or activations); 2 table; 3 partials; 4 bounds; 5 norms;
// 6 factors; 7 stats = [clipped, nonfinite, bad bound flag, sigma bits]; 8 sum (or ghost out);
// 9 ghost output gradients. 16-bit elements sit two to a u32 word.
// WGSL lets implementations ignore NaN and infinity in float operations, so every finiteness
// test here looks at the bits.

struct Params {
    d: u32,          // columns of the gradient matrix
    batch: u32,      // rows of the whole batch
    r0: u32,         // first row (or example) of the window
    rows: u32,       // rows (or examples) in the window
    a0: u32,         // first column of the window
    cols: u32,       // columns in the window
    t0: u32,         // first tile of the window
    ntw: u32,        // tiles in the window
    ntiles: u32,     // tiles per row
    groups: u32,
    groups_at: u32,  // table index of the per-group section
    offsets_at: u32, // table index of the offsets
    gskip: u32,      // window skips, in elements of each binding
    pskip: u32,
    fskip: u32,
    sskip: u32,
    bskip: u32,      // ghost output gradients
    dtype: u32,
    rule: u32,       // 0 exact, 1 opacus
    flags: u32,      // FIRST, LAST, NOISE, BIAS / LINEAR
    method: u32,     // ghost: 0 Gram, 1 direct
    seed_lo: u32,
    seed_hi: u32,
    stream_lo: u32,
    stream_hi: u32,
    index_lo: u32,   // RNG index of column 0 (adapt: of the step)
    index_hi: u32,
    scale: f32,
    mult: f32,       // noise multiplier
    gamma: f32,
    eta: f32,
    sigma_b: f32,
    lo: f32,
    hi: f32,
    positions: u32,
    inputs: u32,
    outputs: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

const FIRST: u32 = 1u;
const LAST: u32 = 2u;
const NOISE: u32 = 4u;
const BIAS: u32 = 8u;
const LINEAR: u32 = 8u;

const F32_INF: u32 = 0x7f800000u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;
@group(0) @binding(4) var<storage, read_write> bounds: array<f32>;
@group(0) @binding(5) var<storage, read_write> norms: array<f32>;
@group(0) @binding(6) var<storage, read_write> factors: array<f32>;
@group(0) @binding(7) var<storage, read_write> stats: array<atomic<u32>>;
@group(0) @binding(8) var<storage, read_write> sum: array<f32>;
@group(0) @binding(9) var<storage, read> gb: array<u32>;

var<workgroup> red: array<f32, 256>;

fn load_g(i: u32) -> f32 {
    if (p.dtype == DT_F32) {
        return bitcast<f32>(g[i]);
    }
    return half_to_f32((g[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu, p.dtype);
}

fn load_gb(i: u32) -> f32 {
    if (p.dtype == DT_F32) {
        return bitcast<f32>(gb[i]);
    }
    return half_to_f32((gb[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu, p.dtype);
}

fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) < F32_INF;
}

// The sum of v over the workgroup, in a fixed tree; called by every invocation.
fn block_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var h = 128u; h > 0u; h = h >> 1u) {
        if (lid < h) {
            red[lid] = red[lid] + red[lid + h];
        }
        workgroupBarrier();
    }
    let s = red[0];
    workgroupBarrier();
    return s;
}

fn workgroup_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x;
}

@compute @workgroup_size(256)
fn clip_sumsq(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let w = workgroup_index(wg, nwg);
    if (w >= p.ntw * p.rows) {
        return;
    }
    let tile = p.t0 + w % p.ntw;
    let row = w / p.ntw;               // within the window
    let start = table[4u * tile];
    let count = table[4u * tile + 1u];
    let base = row * p.d + (start - p.a0) + p.gskip;
    var acc = 0.0;
    for (var j = lid; j < count; j = j + 256u) {
        let x = load_g(base + j);
        acc = fma(x, x, acc);
    }
    let s = block_sum(acc, lid);
    if (lid == 0u) {
        partials[row * p.ntiles + (tile - p.t0) + p.pskip] = s;
    }
}

fn bad_bound(c: f32) -> bool {
    let b = bitcast<u32>(c);
    let nan = (b & 0x7fffffffu) > F32_INF;
    let negative = (b >> 31u) != 0u && (b & 0x7fffffffu) != 0u;
    return nan || negative;
}

fn factor(n: f32, c: f32) -> f32 {
    let cb = bitcast<u32>(c);
    if (cb == F32_INF) {
        return 1.0;
    }
    if ((cb & 0x7fffffffu) == 0u) {
        return 0.0;
    }
    if (n == 0.0) {
        return 1.0;
    }
    var den = n;
    if (p.rule == 1u) {
        den = n + 1e-6;
    }
    return min(1.0, c / den);
}

@compute @workgroup_size(256)
fn clip_factors(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = gid.x + gid.y * nwg.x * 256u;   // within the window
    if (r >= p.rows) {
        return;
    }
    var badb = false;
    var csq = 0.0;
    for (var l = 0u; l < p.groups; l++) {
        let c = bounds[l];
        badb = badb || bad_bound(c);
        csq = fma(c, c, csq);
    }
    var badrow = false;
    let prow = r * p.ntiles + p.pskip;
    let cell = r * p.groups + p.fskip;
    for (var l = 0u; l < p.groups; l++) {
        let first = table[p.groups_at + 2u * l];
        let n = table[p.groups_at + 2u * l + 1u];
        var s = 0.0;
        for (var t = first; t < first + n; t++) {
            s = s + partials[prow + t];
        }
        let norm = sqrt(s);
        badrow = badrow || !finite(norm);
        norms[cell + l] = norm;
    }
    var clipped = false;
    for (var l = 0u; l < p.groups; l++) {
        var f = factor(norms[cell + l], bounds[l]);
        if (badrow || badb) {
            f = 0.0;
        }
        clipped = clipped || f < 1.0;
        factors[cell + l] = f;
    }
    if (clipped) {
        atomicAdd(&stats[0], 1u);
    }
    if (badrow) {
        atomicAdd(&stats[1], 1u);
    }
    if (p.r0 + r == 0u) {
        var total = sqrt(csq);
        if (p.groups == 1u) {
            total = bounds[0];
        }
        atomicStore(&stats[3], bitcast<u32>(p.mult * total));
        if (badb) {
            atomicStore(&stats[2], 1u);
        }
    }
}

@compute @workgroup_size(256)
fn clip_sum(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = gid.x + gid.y * nwg.x * 256u;   // column within the window
    if (j >= p.cols) {
        return;
    }
    let k = p.a0 + j;
    // The group of column k: the last l with o[l] <= k.
    var lo = 0u;
    var hi = p.groups;
    while (hi - lo > 1u) {
        let mid = (lo + hi) >> 1u;
        if (table[p.offsets_at + mid] <= k) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    var acc = 0.0;
    if ((p.flags & FIRST) == 0u) {
        acc = sum[j + p.sskip];
    }
    for (var r = 0u; r < p.rows; r++) {
        let c = factors[r * p.groups + lo + p.fskip];
        if (c != 0.0) {
            acc = fma(c, load_g(r * p.d + j + p.gskip), acc);
        }
    }
    if ((p.flags & LAST) != 0u) {
        if ((p.flags & NOISE) != 0u) {
            let sigma = bitcast<f32>(atomicLoad(&stats[3]));
            let i = philox_add64(vec2<u32>(p.index_lo, p.index_hi), k);
            let z = philox_gaussians(philox_block(philox_block_of(i),
                vec2<u32>(p.stream_lo, p.stream_hi), vec2<u32>(p.seed_lo, p.seed_hi)));
            let v = z[i.x & 3u] * sigma;
            acc = acc + v;
        }
        if (atomicLoad(&stats[2]) != 0u) {
            acc = bitcast<f32>(0x7fc00000u);
        }
        acc = acc * p.scale;
    }
    sum[j + p.sskip] = acc;
}

@compute @workgroup_size(256)
fn clip_ghost(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let e = workgroup_index(wg, nwg);   // example within the window
    if (e >= p.rows) {
        return;
    }
    let t = p.positions;
    let pp = p.inputs;
    let q = p.outputs;
    let abase = e * t * pp + p.gskip;
    let gbase = e * t * q + p.bskip;
    var acc = 0.0;
    if (p.method == 0u) {
        for (var item = lid; item < t * t; item = item + 256u) {
            let s = item / t;
            let u = item % t;
            var da = 0.0;
            for (var c = 0u; c < pp; c++) {
                da = fma(load_g(abase + s * pp + c), load_g(abase + u * pp + c), da);
            }
            var dg = 0.0;
            for (var r = 0u; r < q; r++) {
                dg = fma(load_gb(gbase + s * q + r), load_gb(gbase + u * q + r), dg);
            }
            acc = fma(da, dg, acc);
        }
    } else {
        for (var item = lid; item < q * pp; item = item + 256u) {
            let r = item / pp;
            let c = item % pp;
            var m = 0.0;
            for (var s = 0u; s < t; s++) {
                m = fma(load_gb(gbase + s * q + r), load_g(abase + s * pp + c), m);
            }
            acc = fma(m, m, acc);
        }
    }
    // Rounding can make the Gram form's sum slightly negative; the norm is not.
    let wsum = max(block_sum(acc, lid), 0.0);
    var bacc = 0.0;
    if ((p.flags & BIAS) != 0u) {
        for (var r = lid; r < q; r = r + 256u) {
            var m = 0.0;
            for (var s = 0u; s < t; s++) {
                m = m + load_gb(gbase + s * q + r);
            }
            bacc = fma(m, m, bacc);
        }
    }
    let bsum = block_sum(bacc, lid);
    if (lid == 0u) {
        sum[e + p.sskip] = wsum + bsum;
    }
}

@compute @workgroup_size(256)
fn clip_adapt(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x != 0u || gid.y != 0u) {
        return;
    }
    // A poisoned clip leaves the bound as it is (and the error with the stats).
    if (atomicLoad(&stats[2]) != 0u) {
        return;
    }
    let unclipped = p.batch - atomicLoad(&stats[0]);
    let i = vec2<u32>(p.index_lo, p.index_hi);
    let z = philox_gaussians(philox_block(philox_block_of(i),
        vec2<u32>(p.stream_lo, p.stream_hi), vec2<u32>(p.seed_lo, p.seed_hi)))[i.x & 3u];
    let b = (f32(unclipped) + p.sigma_b * z) / f32(p.batch) - p.gamma;
    var c = bounds[0];
    if ((p.flags & LINEAR) != 0u) {
        c = c - p.eta * b;
    } else {
        c = c * exp(-(p.eta * b));
    }
    bounds[0] = min(max(c, p.lo), p.hi);
}
