//! Matrix-factorization planning: the known values of `design/mf.md`, every factorization
//! against its dense matrices, sensitivities against brute force over every allowed
//! participation pattern, calibration, bad input.

use trainkern::Error;
use trainkern::mf::calibrate;
use trainkern::mf::{Objective, Participation, Plan, Strategy, sensitivity};

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

const Z: [f64; 8] = [1.0, -1.0, 2.0, 0.5, -0.5, 3.0, 1.0, -2.0];

#[test]
fn known_values_of_the_design() {
    let x = Strategy::banded_sqrt(3).solve(&Z).unwrap();
    let want = [
        1.1792476415070754,
        -1.7688714622606132,
        2.800713148579304,
        -0.14740595518838442,
        -1.5661882738765844,
        4.376114294655163,
        -0.39960980457271633,
        -3.212890625,
    ];
    assert!(close(&x, &want, 1e-14), "{x:?}");

    let x = Strategy::bisr(3).solve(&Z).unwrap();
    assert!(close(
        &x,
        &[1.0, -1.5, 2.375, -0.375, -1.0, 3.1875, -0.4375, -2.875],
        1e-15
    ));

    let p = Participation::new(8, 4, 2).unwrap();
    let s = sensitivity(&Strategy::sqrt(8, 0.0), &p).unwrap();
    assert!(
        (s.squared - 12.758704423904419).abs() < 1e-12 && s.exact,
        "{s:?}"
    );

    // The square root's max error equals its single-participation sensitivity squared.
    let n = 500;
    let plan = Plan::new(
        Strategy::sqrt(n, 0.0),
        &Participation::new(n, 1, n).unwrap(),
        Objective::Max,
    )
    .unwrap();
    assert!((plan.max_error - plan.sensitivity.squared).abs() < 1e-10 * plan.max_error);
    let approx = ((n as f64).ln() + 0.5772 + 4.0 * 2f64.ln()) / std::f64::consts::PI;
    assert!(
        (plan.sensitivity.squared - approx).abs() < 0.01,
        "{}",
        plan.sensitivity.squared
    );
}

/// Every square strategy on small `n`: `C C^{-1} = I`, and the fast per-query errors equal the
/// row norms of the dense `A C^{-1}`.
fn strategies(n: usize) -> Vec<Strategy> {
    let mut c: Vec<f64> = (0..n).map(|j| 1.0 / (1.0 + j as f64)).collect();
    c[2.min(n - 1)] = -0.3; // a Toeplitz C with a negative coefficient
    let mut dense = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            dense[i * n + j] =
                1.0 + ((i * 7 + j * 3) % 5) as f64 / 10.0 - 0.2 * (i != j) as i32 as f64;
        }
    }
    vec![
        Strategy::sqrt(n, 0.0),
        Strategy::sqrt(n, 0.9),
        Strategy::Toeplitz(c),
        Strategy::banded_sqrt(3.min(n)),
        Strategy::Banded(vec![1.0, 0.8, -0.3]),
        Strategy::bisr(3.min(n)),
        Strategy::Blt {
            theta: vec![0.9, 0.3],
            omega: vec![0.2, 0.4],
        },
        Strategy::Dense { n, c: dense },
    ]
}

#[test]
fn fast_errors_equal_dense_row_norms() {
    let n = 9;
    for s in strategies(n) {
        let c = s.c_matrix(n);
        // C^{-1} column by column through solve.
        let mut inv = vec![0.0; n * n];
        for j in 0..n {
            let mut e = vec![0.0; n];
            e[j] = 1.0;
            let x = s.solve(&e).unwrap();
            for i in 0..n {
                inv[i * n + j] = x[i];
            }
        }
        for i in 0..n {
            for j in 0..n {
                let v: f64 = (0..n).map(|m| c[i * n + m] * inv[m * n + j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!(
                    (v - want).abs() < 1e-12,
                    "{}: (C C^-1)[{i},{j}] = {v}",
                    s.name()
                );
            }
        }
        let dense: Vec<f64> = (0..n)
            .map(|t| {
                (0..n)
                    .map(|j| (0..=t).map(|i| inv[i * n + j]).sum::<f64>().powi(2))
                    .sum()
            })
            .collect();
        assert!(
            close(&s.errors(n), &dense, 1e-12),
            "{}: {:?} vs {dense:?}",
            s.name(),
            s.errors(n)
        );
    }
    // Fourier: B C = A is its unit test; its errors are B's row norms.
    let n = 6;
    let b = trainkern::mf::fourier::b_matrix(n);
    let big = trainkern::mf::fourier::size(n);
    let want: Vec<f64> = (0..n)
        .map(|t| (0..big).map(|j| b[t * big + j].powi(2)).sum())
        .collect();
    assert!(close(&Strategy::Fourier.errors(n), &want, 1e-12));
}

/// `max over allowed P and signs s of s^T X[P, P] s` by enumeration.
fn brute_force(x: &[f64], n: usize, k: usize, b: usize) -> f64 {
    fn sets(
        n: usize,
        k: usize,
        b: usize,
        from: usize,
        cur: &mut Vec<usize>,
        out: &mut Vec<Vec<usize>>,
    ) {
        if !cur.is_empty() {
            out.push(cur.clone());
        }
        if cur.len() == k {
            return;
        }
        for i in from..n {
            cur.push(i);
            sets(n, k, b, i + b, cur, out);
            cur.pop();
        }
    }
    let mut all = Vec::new();
    sets(n, k, b, 0, &mut Vec::new(), &mut all);
    let mut best = 0.0f64;
    for p in all {
        for signs in 0..(1u32 << p.len()) {
            let s = |a: usize| if signs >> a & 1 == 1 { -1.0 } else { 1.0 };
            let mut v = 0.0;
            for (a, &i) in p.iter().enumerate() {
                for (bb, &j) in p.iter().enumerate() {
                    v += s(a) * s(bb) * x[i * n + j];
                }
            }
            best = best.max(v);
        }
    }
    best
}

#[test]
fn sensitivities_against_brute_force() {
    for n in [6, 9] {
        let mut all = strategies(n);
        all.push(Strategy::Fourier);
        for s in all {
            let c = s.c_matrix(n);
            let rows = c.len() / n;
            let mut x = vec![0.0; n * n];
            for i in 0..n {
                for j in 0..n {
                    x[i * n + j] = (0..rows).map(|m| c[m * n + i] * c[m * n + j]).sum();
                }
            }
            for (k, b) in [(1, 1), (2, 1), (2, 3), (3, 2), (3, 3), (9, 1)] {
                let p = Participation::new(n, k, b).unwrap();
                let got = sensitivity(&s, &p).unwrap();
                let want = brute_force(&x, n, k, b);
                let what = format!(
                    "{} n={n} k={k} b={b}: {got:?} vs brute force {want}",
                    s.name()
                );
                if std::env::var("MF_VERBOSE").is_ok() {
                    eprintln!("{what}");
                }
                if got.exact {
                    assert!((got.squared - want).abs() <= 1e-10 * want, "{what}");
                } else {
                    assert!(got.squared >= want * (1.0 - 1e-12), "{what}");
                }
            }
        }
    }
}

/// Fixed epochs: the only patterns are `q, q + b, ...`, every sign.
#[test]
fn fixed_epoch_sensitivities_against_brute_force() {
    let mut all = strategies(9);
    all.push(Strategy::Fourier);
    for s in all {
        for (k, b) in [(3, 3), (9, 1), (1, 9)] {
            let n = k * b;
            let c = s.c_matrix(n);
            let rows = c.len() / n;
            let x =
                |i: usize, j: usize| (0..rows).map(|m| c[m * n + i] * c[m * n + j]).sum::<f64>();
            let mut want = 0.0f64;
            for q in 0..b {
                let p: Vec<usize> = (q..n).step_by(b).collect();
                for signs in 0..(1u32 << p.len()) {
                    let sg = |a: usize| if signs >> a & 1 == 1 { -1.0 } else { 1.0 };
                    let mut v = 0.0;
                    for (a, &i) in p.iter().enumerate() {
                        for (bb, &j) in p.iter().enumerate() {
                            v += sg(a) * sg(bb) * x(i, j);
                        }
                    }
                    want = want.max(v);
                }
            }
            let got = sensitivity(&s, &Participation::fixed_epochs(k, b).unwrap()).unwrap();
            let what = format!("{} k={k} b={b}: {got:?} vs {want}", s.name());
            if got.exact {
                assert!((got.squared - want).abs() <= 1e-10 * want, "{what}");
            } else {
                assert!(got.squared >= want * (1.0 - 1e-12), "{what}");
            }
        }
    }
}

#[test]
fn plans_compare_with_dpsgd_and_the_square_root() {
    let p = Participation::new(512, 4, 128).unwrap();
    let sqrt = Plan::new(Strategy::sqrt(512, 0.0), &p, Objective::Mean).unwrap();
    assert!((sqrt.ratio_to_sqrt - 1.0).abs() < 1e-12);
    assert!(sqrt.ratio_to_dpsgd < 0.5, "{}", sqrt.ratio_to_dpsgd);
    let band = Plan::new(Strategy::banded_sqrt(64), &p, Objective::Mean).unwrap();
    assert_eq!(band.sensitivity.squared, 4.0);
    assert!(band.ratio_to_dpsgd < 1.0);
    let json = band.to_json();
    for key in [
        "\"strategy\": \"bandmf\"",
        "\"sensitivity_exact\": true",
        "\"coefficients\": [",
        "\"noise_multiplier\": null",
    ] {
        assert!(json.contains(key), "{key} missing from {json}");
    }
}

/// Under SGD with momentum the square root's errors are those of the momentum workload: its
/// `A C^{-1} = C` (since `C^2 = A`), so `e_t` is the sum of the first `t + 1` squared
/// coefficients of `C`.
#[test]
fn momentum_workload_errors() {
    let n = 300;
    let p = Participation::new(n, 1, n).unwrap();
    let s = Strategy::sqrt(n, 0.9);
    let plan = Plan::with_momentum(s.clone(), &p, Objective::Max, 0.9).unwrap();
    let c = s.toeplitz_column(n).unwrap();
    let mut want = 0.0;
    for (t, e) in plan.errors.iter().enumerate() {
        want += c[t] * c[t];
        assert!((e - want).abs() <= 1e-10 * want, "{t}: {e} vs {want}");
    }
    assert!((plan.ratio_to_sqrt - 1.0).abs() < 1e-12);
    assert!(plan.ratio_to_dpsgd < 1.0);
    // BandMF's errors are for the prefix sum only.
    assert!(Plan::with_momentum(Strategy::banded_sqrt(4), &p, Objective::Max, 0.9).is_err());
}

/// The dense optimum is at most any feasible strategy's loss: the square root for single
/// participation, optimized BandMF (banded within b, unit columns) under b-min-sep, and its
/// sensitivity is exact by construction.
#[test]
fn dense_optimum_beats_the_structured_strategies() {
    use trainkern::mf::{dense, optimize};
    let p = Participation::new(32, 1, 32).unwrap();
    let (s, _) = dense::optimize(&p, 500).unwrap();
    let plan = Plan::new(s, &p, Objective::Mean).unwrap();
    let sqrt = Plan::new(Strategy::sqrt(32, 0.0), &p, Objective::Mean).unwrap();
    assert!(plan.sensitivity.exact);
    assert!(
        plan.loss <= sqrt.loss * (1.0 + 1e-9),
        "{} vs {}",
        plan.loss,
        sqrt.loss
    );

    let p = Participation::new(48, 3, 16).unwrap();
    let (s, _) = dense::optimize(&p, 500).unwrap();
    let plan = Plan::new(s, &p, Objective::Mean).unwrap();
    assert!(plan.sensitivity.exact, "{:?}", plan.sensitivity);
    assert!((plan.sensitivity.squared - 3.0).abs() < 1e-9);
    let (b, _) = optimize::bandmf(&p, 16, Objective::Mean).unwrap();
    let band = Plan::new(b, &p, Objective::Mean).unwrap();
    assert!(
        plan.loss <= band.loss * (1.0 + 1e-6),
        "{} vs {}",
        plan.loss,
        band.loss
    );

    let p = Participation::fixed_epochs(4, 12).unwrap();
    let (s, _) = dense::optimize(&p, 500).unwrap();
    let plan = Plan::new(s, &p, Objective::Mean).unwrap();
    assert!(plan.sensitivity.exact && (plan.sensitivity.squared - 1.0).abs() < 1e-9);
}

#[test]
fn calibration_round_trips() {
    let p = Participation::new(100, 1, 100).unwrap();
    let mut plan = Plan::new(Strategy::sqrt(100, 0.0), &p, Objective::Mean).unwrap();
    let z = plan.calibrate(2.0, 1e-6).unwrap();
    assert!((calibrate::epsilon(z, 1e-6).unwrap() - 2.0).abs() < 1e-9);
    // The classical Gaussian mechanism's z = sqrt(2 ln(1.25/delta)) / eps is valid for
    // eps < 1 and never smaller than the analytic one.
    let classic = (2.0 * (1.25f64 / 1e-5).ln()).sqrt() / 0.5;
    assert!(calibrate::noise_multiplier(0.5, 1e-5).unwrap() <= classic);

    let p = Participation::new(1000, 10, 100).unwrap();
    let mut band = Plan::new(Strategy::banded_sqrt(50), &p, Objective::Mean).unwrap();
    let z = band.calibrate_amplified(1.0, 1e-5, 0.05).unwrap();
    let z_amp = z * band.sensitivity.squared.sqrt();
    let e = calibrate::amplified_epsilon(z_amp, 0.05, 10, 1e-5).unwrap();
    assert!(e <= 1.0 && e > 0.999, "{e}");
    // Amplification needs BandMF with p <= b.
    let mut sq = Plan::new(Strategy::sqrt(1000, 0.0), &p, Objective::Mean).unwrap();
    assert!(sq.calibrate_amplified(1.0, 1e-5, 0.05).is_err());
}

/// TensorFlow Privacy's published RDP values of the Poisson-subsampled Gaussian
/// (rdp_accountant_test.py: `compute_rdp(q, sigma, steps, orders)`), at the integer orders.
#[test]
fn rdp_matches_tensorflow_privacy_values() {
    let got = 10.0 * calibrate::subsampled_rdp(0.1, 2.0, 5);
    assert!((got - 0.07737).abs() < 5e-6, "{got}");
    for (alpha, want) in [(5, 0.00218075), (50, 0.023846), (100, 167.416307)] {
        let got = 50.0 * calibrate::subsampled_rdp(0.01, 2.5, alpha);
        assert!((got - want).abs() < 1e-5, "order {alpha}: {got} vs {want}");
    }
}

/// Plans read back exactly what was written, for every strategy; files that do not parse or do
/// not match their strategy are errors.
#[test]
fn plan_files_round_trip_and_refuse_mismatches() {
    use trainkern::mf::read_plan;
    let n = 12;
    let mut all = strategies(n);
    all.push(Strategy::Fourier);
    for (i, s) in all.into_iter().enumerate() {
        let part = if i % 2 == 0 {
            Participation::new(n, 2, 4).unwrap()
        } else {
            Participation::fixed_epochs(3, 4).unwrap()
        };
        let mut plan = Plan::new(s.clone(), &part, Objective::Max).unwrap();
        plan.noise_multiplier = Some(1.25);
        let back = read_plan(&plan.to_json()).unwrap();
        let same = match (&s, &back.strategy) {
            // The square root is written as its Toeplitz coefficients.
            (Strategy::Toeplitz(a), Strategy::Toeplitz(b)) => a == b,
            (a, b) => a == b,
        };
        assert!(same, "{}: {:?}", s.name(), back.strategy);
        assert_eq!(back.participation, part);
        assert_eq!(back.objective, Objective::Max);
        assert_eq!(back.noise_multiplier, Some(1.25));
        assert_eq!(back.sensitivity_squared, plan.sensitivity.squared);
    }
    let good = Plan::new(
        Strategy::banded_sqrt(3),
        &Participation::new(8, 2, 4).unwrap(),
        Objective::Mean,
    )
    .unwrap()
    .to_json();
    for (text, what) in [
        ("not json".to_string(), "expected '{'"),
        (
            good.replace("\"bands\": 3", "\"bands\": 4"),
            "bands 4 but 3 coefficients",
        ),
        (good.replace("\"bandmf\"", "\"spiral\""), "unknown strategy"),
        (good.replace("\"k\": 2,", ""), "\"k\""),
        (good.replace("\"n\": 8", "\"n\": 2"), "exceed n"),
        (good.replace("[0.", "[nope, 0."), "expected a number"),
    ] {
        let e = read_plan(&text).unwrap_err().to_string();
        assert!(e.contains(what), "{what}: {e}");
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let msg = |e: Error| e.to_string();
    assert!(msg(Participation::new(0, 1, 1).unwrap_err()).contains("n (steps)"));
    assert!(msg(Participation::new(5, 0, 1).unwrap_err()).contains("k (epochs)"));
    assert!(msg(Participation::new(5, 1, 0).unwrap_err()).contains("min separation"));
    let p = Participation::new(4, 1, 1).unwrap();
    let e = sensitivity(&Strategy::banded_sqrt(5), &p).unwrap_err();
    assert!(msg(e).contains("exceed n"));
    let e = sensitivity(&Strategy::Toeplitz(vec![1.0, f64::NAN]), &p).unwrap_err();
    assert!(msg(e).contains("finite"));
    let blt = Strategy::Blt {
        theta: vec![1.5],
        omega: vec![0.1],
    };
    assert!(msg(sensitivity(&blt, &p).unwrap_err()).contains("theta"));
    assert!(calibrate::noise_multiplier(1.0, 1.5).is_err());
    assert!(calibrate::noise_multiplier(-1.0, 1e-5).is_err());
    assert!(calibrate::amplified_epsilon(1.0, 0.0, 10, 1e-5).is_err());
}
