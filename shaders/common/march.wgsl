// march.wgsl: where a ray's samples lie and which grid cells a point reads, shared by render.wgsl
// and splat.wgsl (design/triplane.md, "Grids" and "Rays and samples"; src/ops/render/grid.rs is
// the f64 original). Everything comes in as arguments, so any module's bindings can feed it.

const MARCH_CONTRACT: u32 = 1u;
const MARCH_MASK: u32 = 2u;

// The corners of one axis of n cells at coordinate x: lower index (as f32) and the upper weight.
fn march_axis(n: u32, x: f32) -> vec2<f32> {
    if (n == 1u) {
        return vec2<f32>(0.0, 0.0);
    }
    let ix = ((x + 1.0) * 0.5) * f32(n) - 0.5;
    let fl = floor(ix);
    // Far outside both corners are outside; the clamp keeps the index conversion defined.
    return vec2<f32>(clamp(fl, -2.0, f32(n) + 1.0), ix - fl);
}

struct Corner {
    cell: u32,
    w: f32,
}

// Corner k (bits x, y, z) of a D x H x W grid at point q: its flat cell index (z H + y) W + x
// and weight; (0, 0) if outside.
fn march_corner(d: u32, h: u32, w: u32, q: vec3<f32>, k: u32) -> Corner {
    let ax = march_axis(w, q.x);
    let ay = march_axis(h, q.y);
    let az = march_axis(d, q.z);
    let hx = (k & 1u) != 0u;
    let hy = (k & 2u) != 0u;
    let hz = (k & 4u) != 0u;
    let ix = i32(ax.x) + select(0, 1, hx);
    let iy = i32(ay.x) + select(0, 1, hy);
    let iz = i32(az.x) + select(0, 1, hz);
    let wt = select(1.0 - ax.y, ax.y, hx) * select(1.0 - ay.y, ay.y, hy) * select(1.0 - az.y, az.y, hz);
    let inside = ix >= 0 && ix < i32(w) && iy >= 0 && iy < i32(h) && iz >= 0 && iz < i32(d);
    if (!inside || wt == 0.0) {
        return Corner(0u, 0.0);
    }
    return Corner((u32(iz) * h + u32(iy)) * w + u32(ix), wt);
}

struct SamplePos {
    t: f32,
    delta: f32,
    q: vec3<f32>,
    inside: bool,
}

// Sample j of the ray o + t d over [nr, fr] (`samples` from near to far, then `samples_inf` in
// inverse depth down to disparity `dai`), contracted and masked as `flags` says.
fn march_sample(o: vec3<f32>, d: vec3<f32>, nr: f32, fr: f32, j: u32, samples: u32,
                samples_inf: u32, dai: f32, flags: u32) -> SamplePos {
    var s: SamplePos;
    if (j < samples) {
        s.delta = (fr - nr) / f32(samples - 1u);
        s.t = nr + (fr - nr) * f32(j) / f32(samples - 1u);
    } else {
        // far / ((d - 1) (k + 1) / m + 1) with the denominator summed from positive terms (the
        // literal form cancels three digits in f32 at d = 1e-5).
        let k = j - samples;
        let m = f32(samples_inf);
        s.t = fr * m / (f32(samples_inf - k - 1u) + dai * f32(k + 1u));
        var prev = fr;
        if (k > 0u) {
            prev = fr * m / (f32(samples_inf - k) + dai * f32(k));
        }
        s.delta = s.t - prev;
    }
    var q = o + s.t * d;
    if ((flags & MARCH_CONTRACT) != 0u) {
        let m = max(abs(q.x), max(abs(q.y), abs(q.z)));
        if (m > 1.0) {
            var c: vec3<f32>;
            for (var a = 0u; a < 3u; a++) {
                let x = q[a];
                c[a] = select(x / m, (2.0 - 1.0 / abs(x)) * sign(x), abs(x) == m);
            }
            q = c;
        }
        q = 0.5 * q;
    }
    s.q = q;
    s.inside = (flags & MARCH_MASK) == 0u || all(abs(q) <= vec3<f32>(1.0));
    return s;
}

// Whether a ray's numbers can be marched: finite origin, direction, near and far, near <= far.
fn march_ray_ok(o: vec3<f32>, d: vec3<f32>, nr: f32, fr: f32) -> bool {
    var fin = nr == nr && fr == fr && abs(nr) <= 3.4e38 && abs(fr) <= 3.4e38;
    for (var a = 0u; a < 3u; a++) {
        fin = fin && o[a] == o[a] && d[a] == d[a] && abs(o[a]) <= 3.4e38 && abs(d[a]) <= 3.4e38;
    }
    return fin && nr <= fr;
}
