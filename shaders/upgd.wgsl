// upgd.wgsl: UPGD optimizer step for a whole model in two dispatches (src/ops/upgd,
// design/upgd.md); the same algorithm as kernels/upgd.ptx (see its header for the chunk table,
// the double-buffered accumulators and the bytes moved).
//
// Entry points (one workgroup of 256 invocations per chunk; workgroups in a 2D grid):
//   trace    bindings 0 params, 1 w, 2 g, 3 h, 4 u, 5 chunks, 6 state, 7 rowsq, 8 m, 9 v
//            (with flag 4 it also updates w, the one-pass mode, and update is not dispatched)
//   update   bindings 0 params, 1 w, 2 g, 4 u, 5 chunks, 6 state, 7 rowsq, 8 m, 9 v
// Accumulators rotate over three slots: reduce into p.cur, scale by p.scale, reset p.next.
// A model larger than one binding runs as several dispatches, each binding a window of the flat
// buffers from element p.base (a multiple of 256) over chunks p.chunk0 ..; element i of the model
// is at index i - p.base of the bindings, and draws the noise of global index i.
// w, u, m and v are atomic<u32> because two invocations may share a word of 16-bit values; each
// changes only its own half (atomicAnd then atomicOr). A trace is rounded to its storage type
// when stored and every later use reads the stored value. Float sums use compare-and-swap loops, since
// WGSL has no portable float atomics. state = [eta key slots 0, 1, 2, non-finite count].

struct Params {
    seed_lo: u32,
    seed_hi: u32,
    stream_lo: u32,
    stream_hi: u32,
    bc: f32,
    decay: f32,
    neg_lr: f32,
    sigma: f32,
    b1: f32,
    omb1: f32,
    b2: f32,
    omb2: f32,
    eps: f32,
    bc1: f32,
    sqrt_bc2: f32,
    beta: f32,
    omb: f32,
    wtype: u32,
    gtype: u32,
    flags: u32,     // trace: 1 second order, 2 local, 4 fused; update: as uflags
    cur: u32,       // the slot this step reduces into
    rows: u32,
    nchunks: u32,
    scale: u32,     // the slot this step scales by (cur, or the previous step's when fused)
    next: u32,      // the slot reset for the next step
    uflags: u32,    // update: 1 non-protecting, 2 local, 4 adaptive
    utype: u32,     // the traces' storage type (u, m, v): DT_F32 or DT_BF16
    base: u32,      // the element of the model at index 0 of this dispatch's bindings
    chunk0: u32,    // this dispatch's first chunk (nchunks counts this dispatch's chunks)
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read> g: array<u32>;
@group(0) @binding(3) var<storage, read> h: array<u32>;
@group(0) @binding(4) var<storage, read_write> u: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read> chunks: array<u32>;
@group(0) @binding(6) var<storage, read_write> state: array<atomic<u32>>;
@group(0) @binding(7) var<storage, read_write> rowsq: array<atomic<u32>>;
@group(0) @binding(8) var<storage, read_write> m: array<atomic<u32>>;
@group(0) @binding(9) var<storage, read_write> v: array<atomic<u32>>;

var<workgroup> sred: array<atomic<u32>, 256>;

const KEY_NEG_INF: u32 = 0x007fffffu;

// One entry of the chunk table (8 u32; kind 0 weight-level, 1 gated, 2 plain SGD, 3 gate).
struct Chunk {
    start: u32,
    count: u32,
    row_base: u32,
    last_dim: u32,
    row_first: u32,
    gate_offset: u32,
    gate_row: u32,
    kind: u32,
}

fn chunk_at(c: u32) -> Chunk {
    let e = 8u * c;
    return Chunk(
        chunks[e], chunks[e + 1u], chunks[e + 2u], chunks[e + 3u],
        chunks[e + 4u], chunks[e + 5u], chunks[e + 6u], chunks[e + 7u],
    );
}

fn half_of(word: u32, i: u32, dt: u32) -> f32 {
    return half_to_f32((word >> ((i & 1u) * 16u)) & 0xffffu, dt);
}

fn load_g(i: u32) -> f32 {
    if (p.gtype == DT_F32) {
        return bitcast<f32>(g[i]);
    }
    return half_of(g[i >> 1u], i, p.gtype);
}

fn load_h(i: u32) -> f32 {
    if (p.gtype == DT_F32) {
        return bitcast<f32>(h[i]);
    }
    return half_of(h[i >> 1u], i, p.gtype);
}

fn load_w(i: u32) -> f32 {
    if (p.wtype == DT_F32) {
        return bitcast<f32>(atomicLoad(&w[i]));
    }
    return half_of(atomicLoad(&w[i >> 1u]), i, p.wtype);
}

fn store_w(i: u32, x: f32) {
    if (p.wtype == DT_F32) {
        atomicStore(&w[i], bitcast<u32>(x));
        return;
    }
    let shift = (i & 1u) * 16u;
    atomicAnd(&w[i >> 1u], ~(0xffffu << shift));
    atomicOr(&w[i >> 1u], f32_to_half(x, p.wtype) << shift);
}

// x rounded to dtype and widened back: what a store of x would leave.
fn round_to(x: f32, dt: u32) -> f32 {
    if (dt == DT_F32) {
        return x;
    }
    return half_to_f32(f32_to_half(x, dt), dt);
}

// One load and one store per trace buffer: a function cannot take a storage pointer without
// the unrestricted_pointer_parameters extension, which naga 30 does not implement.
fn load_u(i: u32) -> f32 {
    if (p.utype == DT_F32) {
        return bitcast<f32>(atomicLoad(&u[i]));
    }
    return half_of(atomicLoad(&u[i >> 1u]), i, p.utype);
}

fn store_u(i: u32, x: f32) {
    if (p.utype == DT_F32) {
        atomicStore(&u[i], bitcast<u32>(x));
        return;
    }
    let shift = (i & 1u) * 16u;
    atomicAnd(&u[i >> 1u], ~(0xffffu << shift));
    atomicOr(&u[i >> 1u], f32_to_half(x, p.utype) << shift);
}

fn load_m(i: u32) -> f32 {
    if (p.utype == DT_F32) {
        return bitcast<f32>(atomicLoad(&m[i]));
    }
    return half_of(atomicLoad(&m[i >> 1u]), i, p.utype);
}

fn store_m(i: u32, x: f32) {
    if (p.utype == DT_F32) {
        atomicStore(&m[i], bitcast<u32>(x));
        return;
    }
    let shift = (i & 1u) * 16u;
    atomicAnd(&m[i >> 1u], ~(0xffffu << shift));
    atomicOr(&m[i >> 1u], f32_to_half(x, p.utype) << shift);
}

fn load_v(i: u32) -> f32 {
    if (p.utype == DT_F32) {
        return bitcast<f32>(atomicLoad(&v[i]));
    }
    return half_of(atomicLoad(&v[i >> 1u]), i, p.utype);
}

fn store_v(i: u32, x: f32) {
    if (p.utype == DT_F32) {
        atomicStore(&v[i], bitcast<u32>(x));
        return;
    }
    let shift = (i & 1u) * 16u;
    atomicAnd(&v[i >> 1u], ~(0xffffu << shift));
    atomicOr(&v[i >> 1u], f32_to_half(x, p.utype) << shift);
}

fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) < 0x7f800000u;
}

// Order-preserving key of an f32 (NaN maps to 0, below every number).
fn key_of(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return 0u;
    }
    if ((b >> 31u) == 1u) {
        return ~b;
    }
    return b | 0x80000000u;
}

fn unkey(k: u32) -> f32 {
    if ((k >> 31u) == 1u) {
        return bitcast<f32>(k & 0x7fffffffu);
    }
    return bitcast<f32>(~k);
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

fn rowsq_add(i: u32, x: f32) {
    var old = atomicLoad(&rowsq[i]);
    loop {
        let r = atomicCompareExchangeWeak(&rowsq[i], old, bitcast<u32>(bitcast<f32>(old) + x));
        if (r.exchanged) {
            break;
        }
        old = r.old_value;
    }
}

fn sred_add(i: u32, x: f32) {
    var old = atomicLoad(&sred[i]);
    loop {
        let r = atomicCompareExchangeWeak(&sred[i], old, bitcast<u32>(bitcast<f32>(old) + x));
        if (r.exchanged) {
            break;
        }
        old = r.old_value;
    }
}

// Reset next step's accumulators: the maximum once, this chunk's rows here.
fn reset_next(c: u32, tx: u32, ch: Chunk, local: bool) {
    if (c == 0u && tx == 0u) {
        atomicStore(&state[p.next], KEY_NEG_INF);
    }
    if (local && tx < (ch.row_first + ch.count - 1u) / ch.last_dim + 1u) {
        atomicStore(&rowsq[p.next * p.rows + ch.row_base + tx], 0u);
    }
}

// One weight's update given 1 - s: noise drawn in registers, d by the rule in p.uflags
// (protecting, non-protecting, adaptive with its moments), then w = w*decay + neg_lr*d.
fn apply(i: u32, li: u32, oms: f32) {
    let blk = philox_block_of(vec2<u32>(i, 0u));
    let z = philox_gaussians(philox_block(blk, vec2<u32>(p.stream_lo, p.stream_hi), vec2<u32>(p.seed_lo, p.seed_hi)));
    let noise = z[i & 3u] * p.sigma;
    let gi = load_g(li);
    var d: f32;
    if ((p.uflags & 4u) != 0u) {
        let mi = round_to(load_m(li) * p.b1 + p.omb1 * gi, p.utype);
        let vi = round_to(load_v(li) * p.b2 + p.omb2 * (gi * gi), p.utype);
        store_m(li, mi);
        store_v(li, vi);
        let denom = sqrt(vi) / p.sqrt_bc2 + p.eps;
        d = (mi / denom / p.bc1 + noise) * oms;
    } else if ((p.uflags & 1u) != 0u) {
        d = gi + noise * oms;
    } else {
        d = (gi + noise) * oms;
    }
    store_w(li, load_w(li) * p.decay + p.neg_lr * d);
}

// s from the trace x = u / bc and the scale slot: global by the maximum (0.5 where it is 0),
// local by the norm of row `row` of the slot.
fn scaled(x: f32, local: bool, row: u32) -> f32 {
    if (!local) {
        let eta = unkey(atomicLoad(&state[p.scale]));
        if (eta == 0.0) {
            return 0.5;
        }
        return sigmoid(x / eta);
    }
    let norm = max(sqrt(bitcast<f32>(atomicLoad(&rowsq[p.scale * p.rows + row]))), 1e-12);
    return sigmoid(x / norm);
}

@compute @workgroup_size(256)
fn trace(
    @builtin(local_invocation_index) tx: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let c = p.chunk0 + wid.x + wid.y * nwg.x;
    if (c >= p.chunk0 + p.nchunks) {
        return;
    }
    let ch = chunk_at(c);
    let fused = (p.flags & 4u) != 0u;
    if (fused) {
        reset_next(c, tx, ch, (p.flags & 2u) != 0u);
    }
    // Only weight-level tensors and gates are traced.
    let tracing = ch.kind == 0u || ch.kind == 3u;
    let live = tracing && tx < ch.count;
    var key = 0u;
    var ui = 0.0;
    if (live) {
        let i = ch.start + tx;
        let li = i - p.base;
        let gi = load_g(li);
        let wi = load_w(li);
        var big_u = -(gi * wi);
        var bad = u32(!is_finite(gi));
        if ((p.flags & 1u) != 0u) {
            let hi = load_h(li);
            bad += u32(!is_finite(hi));
            big_u = (0.5 * hi) * (wi * wi) - gi * wi;
        }
        if (bad != 0u) {
            atomicAdd(&state[3], bad);
        }
        ui = round_to(load_u(li) * p.beta + p.omb * big_u, p.utype);
        store_u(li, ui);
        key = key_of(ui);
        if (fused) {
            // One pass: scaled by the previous step's reductions, the weight updated now.
            let row = ch.row_base + (ch.row_first + tx) / ch.last_dim;
            apply(i, li, 1.0 - scaled(ui / p.bc, (p.flags & 2u) != 0u, row));
        }
    }
    if ((p.flags & 2u) == 0u) {
        atomicStore(&sred[tx], key);
        workgroupBarrier();
        for (var s = 128u; s > 0u; s = s >> 1u) {
            if (tx < s) {
                atomicMax(&sred[tx], atomicLoad(&sred[tx + s]));
            }
            workgroupBarrier();
        }
        if (tx == 0u) {
            atomicMax(&state[p.cur], atomicLoad(&sred[0]));
        }
    } else {
        atomicStore(&sred[tx], 0u);
        workgroupBarrier();
        if (live) {
            let x = ui / p.bc;
            sred_add((ch.row_first + tx) / ch.last_dim, x * x);
        }
        workgroupBarrier();
        let nrows = (ch.row_first + ch.count - 1u) / ch.last_dim + 1u;
        if (tracing && tx < nrows) {
            rowsq_add(p.cur * p.rows + ch.row_base + tx, bitcast<f32>(atomicLoad(&sred[tx])));
        }
    }
}

@compute @workgroup_size(256)
fn update(
    @builtin(local_invocation_index) tx: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let c = p.chunk0 + wid.x + wid.y * nwg.x;
    if (c >= p.chunk0 + p.nchunks) {
        return;
    }
    let ch = chunk_at(c);
    let local = (p.uflags & 2u) != 0u;
    reset_next(c, tx, ch, local);
    if (tx >= ch.count || ch.kind == 3u) {
        return;
    }
    let i = ch.start + tx;
    let li = i - p.base;
    if (ch.kind == 2u) {
        // No gate after this tensor: plain SGD with weight decay, no noise.
        store_w(li, load_w(li) * p.decay + p.neg_lr * load_g(li));
        return;
    }
    let gated = ch.kind == 1u;
    let unit = (ch.row_first + tx) / ch.last_dim;
    let x = load_u(select(li, ch.gate_offset + unit - p.base, gated)) / p.bc;
    let s = scaled(x, local, select(ch.row_base + unit, ch.gate_row, gated));
    apply(i, li, 1.0 - s);
}
