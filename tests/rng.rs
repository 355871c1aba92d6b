//! The RNG reference against facts no code here produced: Random123's known answers, exhaustive
//! accuracy of the f32 transcendental pieces against f64, and the statistics of the Gaussians.

use trainkern::rng;

#[test]
fn philox_known_answers() {
    // Random123's kat_vectors for philox4x32_10.
    let cases: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
        (
            [0, 0, 0, 0],
            [0, 0],
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
        ),
        (
            [0xffffffff; 4],
            [0xffffffff; 2],
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
        ),
        (
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
        ),
    ];
    for (ctr, key, want) in cases {
        assert_eq!(
            rng::philox4x32_10(ctr, key),
            want,
            "counter {ctr:08x?} key {key:08x?}"
        );
    }
}

#[test]
fn counter_layout() {
    // Element i of stream s: block (lo(i/4), hi(i/4), lo(s), hi(s)), key (lo(seed), hi(seed)).
    let (seed, stream) = (0x0123_4567_89ab_cdef_u64, 0xfedc_ba98_7654_3210_u64);
    let i = 0x1_0000_0007_u64 * 4 + 3;
    let blk = rng::philox4x32_10(
        [0x0000_0007, 0x0000_0001, 0x7654_3210, 0xfedc_ba98],
        [0x89ab_cdef, 0x0123_4567],
    );
    assert_eq!(rng::word(seed, stream, i), blk[3]);
    let mut w = [0u32; 6];
    rng::words_into(seed, stream, i - 1, &mut w);
    assert_eq!(w[1], blk[3]);
    assert_eq!(w[0], blk[2]);
    assert_eq!(w[2], rng::word(seed, stream, i + 1));
}

#[test]
fn uniform_is_exact_and_open() {
    assert_eq!(rng::uniform(0), 0.5 / 8_388_608.0);
    assert_eq!(rng::uniform(u32::MAX), 1.0 - 0.5 / 8_388_608.0);
    for x in [0u32, 511, 512, 1 << 31, u32::MAX] {
        let u = rng::uniform(x);
        assert!(u > 0.0 && u < 1.0);
        assert_eq!(f64::from(u), ((x >> 9) as f64 + 0.5) / 8_388_608.0);
    }
}

/// Every possible uniform value: 2^23 of them.
fn all_uniforms() -> impl Iterator<Item = f32> {
    (0u32..1 << 23).map(|k| rng::uniform(k << 9))
}

#[test]
fn ln_f32_is_within_two_ulp_everywhere() {
    // Relative error against f64 over every uniform the generator can produce, including the
    // neighbourhood of 1 where ln u is tiny and a naive ln loses all relative precision.
    let mut worst = 0.0f64;
    for u in all_uniforms() {
        let want = f64::from(u).ln();
        let got = f64::from(rng::ln_f32(u));
        let rel = ((got - want) / want).abs();
        worst = worst.max(rel);
    }
    println!("ln_f32 worst relative error {worst:.3e}");
    assert!(worst <= 2.0 * f64::from(f32::EPSILON), "worst {worst:e}");
}

#[test]
fn sincospi_f32_is_within_3e7_everywhere() {
    let mut worst = 0.0f64;
    for u in all_uniforms() {
        let t = 2.0 * u - 1.0;
        let (s, c) = rng::sincospi_f32(t);
        let phi = std::f64::consts::PI * f64::from(t);
        worst = worst
            .max((f64::from(s) - phi.sin()).abs())
            .max((f64::from(c) - phi.cos()).abs());
    }
    println!("sincospi_f32 worst absolute error {worst:.3e}");
    assert!(worst <= 3e-7, "worst {worst:e}");
}

#[test]
fn gaussians_f32_meet_the_rng_tolerance() {
    // testing.md: |got - ref| <= 1e-5 + 1e-5 |ref| against the f64 evaluation of the same bits.
    // Sweep every u_a with a scattered u_b and every u_b with a scattered u_a.
    let mut worst = 0.0f64;
    for k in 0u32..1 << 23 {
        let xa = k << 9;
        let xb = k.wrapping_mul(0x9E37_79B9);
        for w in [[xa, xb, xb, xa], [xb ^ 0x5555_5555, xa, xa, xb]] {
            let got = rng::gaussians_f32(w);
            let want = rng::gaussians_f64(w);
            for (g, r) in got.iter().zip(want) {
                let err = (f64::from(*g) - r).abs() / (1.0 + r.abs());
                worst = worst.max(err);
            }
        }
    }
    println!("gaussians_f32 worst |err| / (1 + |ref|) = {worst:.3e}");
    assert!(worst <= 1e-5, "worst {worst:e}");
}

#[test]
fn gaussian_statistics() {
    // N = 2^24 samples of one stream. Under a correct N(0, 1) generator each statistic below is
    // approximately standard normal; the test fails when any exceeds 6 in absolute value. The
    // false-alarm rate is P(|N(0,1)| > 6) = 2.0e-9 per statistic, under 2e-8 for the 8 together.
    const N: usize = 1 << 24;
    let mut z = vec![0.0f32; N];
    rng::gaussians_into(2024, 11, 0, &mut z);
    let n = N as f64;
    let mean = z.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let m2 = z.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / n;
    let m4 = z.iter().map(|&x| f64::from(x).powi(4)).sum::<f64>() / n;
    let lag1 = z
        .windows(2)
        .map(|w| f64::from(w[0]) * f64::from(w[1]))
        .sum::<f64>()
        / (n - 1.0);
    let tail = |t: f32| z.iter().filter(|x| x.abs() > t).count() as f64;
    // P(|Z| > t) for t = 2, 3, 4: erfc(t / sqrt 2).
    let p = [
        (2.0, 4.550_026_389_635_842e-2),
        (3.0, 2.699_796_063_260_186_6e-3),
        (4.0, 6.334_248_366_623_996e-5),
    ];
    let mut stats = vec![
        ("mean", mean * n.sqrt()),
        // Var(Z^2) = 2.
        ("second moment", (m2 - 1.0) / (2.0 / n).sqrt()),
        // E Z^4 = 3, Var(Z^4) = 105 - 9 = 96.
        ("fourth moment", (m4 - 3.0) / (96.0 / n).sqrt()),
        ("lag-1 correlation", lag1 * (n - 1.0).sqrt()),
    ];
    for (t, pt) in p {
        let c = tail(t);
        stats.push((
            ["tail |z|>2", "tail |z|>3", "tail |z|>4"][t as usize - 2],
            (c - n * pt) / (n * pt * (1.0 - pt)).sqrt(),
        ));
    }
    // Pairs share a radius: z_a^2 + z_b^2 = -2 ln u_a is Exp(1/2), whose mean 2 and variance 4.
    let pair_r2 = z
        .chunks_exact(2)
        .map(|p| f64::from(p[0]).powi(2) + f64::from(p[1]).powi(2))
        .sum::<f64>()
        / (n / 2.0);
    stats.push(("pair radius", (pair_r2 - 2.0) / (4.0 / (n / 2.0)).sqrt()));
    for (name, s) in &stats {
        println!("{name:>18}: {s:+.3} standard errors");
        assert!(s.abs() < 6.0, "{name} is {s} standard errors from theory");
    }
}
