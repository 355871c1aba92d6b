// splat.wgsl: splatting ray features into triplanes and voxel grids, forward and backward
// (src/ops/splat, design/triplane.md "Splat"); the same sums as the CPU reference, in f32.
//
// Entry points (workgroups of 256 invocations in a 2D grid):
//   splat_fw    bindings 1 grid table, 2-7 rays (origins, directions, near, far, batch,
//               encoding), 8 status, 9 out, 10 weights. Invocation i takes sample j0 + i % nj of
//               ray ray0 + i / nj and adds w and w * v into every corner of every grid (flag 4:
//               the weights only). Float adds are compare-and-swap loops on atomic<u32> (WGSL
//               has no portable float atomics).
//   splat_norm  bindings 9 out, 10 weights: out[i] /= max(weights[i / C], 1e-5), i < len.
//   splat_bw    bindings 1-6, 8, 10 weights, 11 grad_out, 12 grad_encoding. Invocation i sums
//               channel i % C of ray ray0 + i / C over samples j0 .. j0 + nj: every corner's
//               grad_out / max(weight, 1e-5), weighted as in the splat (a gather: no atomics).
//               The first window of a ray writes its sum, later ones add to it.
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
    first: u32,      // splat_bw: 1 in a ray's first window of samples
    pad0: u32,
    pad1: u32,
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

const WEIGHTS_ONLY: u32 = 4u;
const FLOOR: f32 = 1e-5;
const WG: u32 = 256u;

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

fn atomic_add_weight(i: u32, x: f32) {
    var old = atomicLoad(&weights[i]);
    loop {
        let r = atomicCompareExchangeWeak(&weights[i], old, bitcast<u32>(bitcast<f32>(old) + x));
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

@compute @workgroup_size(256)
fn splat_fw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.nr * p.nj) {
        return;
    }
    let r = p.ray0 + i / p.nj;
    let s = ray_sample(r, p.j0 + i % p.nj);
    if (!s.inside) {
        return;
    }
    let b = batch[r];
    let values = (p.flags & WEIGHTS_ONLY) == 0u;
    for (var g = 0u; g < p.ngrids; g++) {
        let dd = tables[5u * g];
        let hh = tables[5u * g + 1u];
        let ww = tables[5u * g + 2u];
        let cell0 = tables[5u * g + 4u] + b * dd * hh * ww;
        for (var k = 0u; k < 8u; k++) {
            let cw = march_corner(dd, hh, ww, s.q, k);
            if (cw.w != 0.0) {
                atomic_add_weight(cell0 + cw.cell, cw.w);
                if (values) {
                    let at = tables[5u * g + 3u] + (b * dd * hh * ww + cw.cell) * p.c;
                    for (var ch = 0u; ch < p.c; ch++) {
                        let v = cw.w * enc[r * p.c + ch];
                        if (v != 0.0) {
                            atomic_add_out(at + ch, v);
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
    let x = bitcast<f32>(atomicLoad(&out_grid[i]));
    atomicStore(&out_grid[i], bitcast<u32>(x / max(w, FLOOR)));
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
                let dd = tables[5u * g];
                let hh = tables[5u * g + 1u];
                let ww = tables[5u * g + 2u];
                let cell0 = b * dd * hh * ww;
                for (var k = 0u; k < 8u; k++) {
                    let cw = march_corner(dd, hh, ww, s.q, k);
                    if (cw.w != 0.0) {
                        let w = bitcast<f32>(atomicLoad(&weights[tables[5u * g + 4u] + cell0 + cw.cell]));
                        let go = grad_out[tables[5u * g + 3u] + (cell0 + cw.cell) * p.c + ch];
                        acc += cw.w * (go / max(w, FLOOR));
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
