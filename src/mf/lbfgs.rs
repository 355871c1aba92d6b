//! L-BFGS (Nocedal & Wright, Algorithm 7.4) with a backtracking line search on the Armijo
//! condition, in f64. Deterministic: the same function and start give the same iterates.

/// The result of a minimization.
#[derive(Clone, Debug)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    pub iterations: usize,
    /// Function evaluations, line-search trials included.
    pub evaluations: usize,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimize `f` from `x0`. `f(x, true)` returns the value and the gradient; `f(x, false)` may
/// leave the gradient empty (the line search's trials need only values). Stops when the gradient's
/// max norm falls below `gtol` times `max(1, |f|)`, when a step no longer lowers `f` by a
/// relative 1e-15, or after `max_iter` iterations. Non-finite values count as "too far" in the
/// line search.
pub fn minimize(
    f: impl FnMut(&[f64], bool) -> (f64, Vec<f64>),
    x0: &[f64],
    max_iter: usize,
    gtol: f64,
) -> Minimum {
    minimize_with_progress(f, x0, max_iter, gtol, &mut |_, _| {})
}

/// [`minimize`], telling `progress` the iteration and the value after each step.
pub fn minimize_with_progress(
    mut f: impl FnMut(&[f64], bool) -> (f64, Vec<f64>),
    x0: &[f64],
    max_iter: usize,
    gtol: f64,
    progress: &mut dyn FnMut(usize, f64),
) -> Minimum {
    const HISTORY: usize = 10;
    let mut x = x0.to_vec();
    let (mut fx, mut g) = f(&x, true);
    let mut evaluations = 1;
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut iterations = 0;
    while iterations < max_iter {
        let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if !fx.is_finite() || gmax <= gtol * fx.abs().max(1.0) {
            break;
        }
        // Two-loop recursion: d = -H g.
        let mut q = g.clone();
        let mut alpha = vec![0.0; s_hist.len()];
        for i in (0..s_hist.len()).rev() {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            alpha[i] = rho * dot(&s_hist[i], &q);
            for (qj, yj) in q.iter_mut().zip(&y_hist[i]) {
                *qj -= alpha[i] * yj;
            }
        }
        let gamma = match (s_hist.last(), y_hist.last()) {
            (Some(s), Some(y)) => dot(s, y) / dot(y, y),
            _ => 1.0 / gmax.max(1e-300),
        };
        for qj in q.iter_mut() {
            *qj *= gamma;
        }
        for i in 0..s_hist.len() {
            let rho = 1.0 / dot(&y_hist[i], &s_hist[i]);
            let beta = rho * dot(&y_hist[i], &q);
            for (qj, sj) in q.iter_mut().zip(&s_hist[i]) {
                *qj += (alpha[i] - beta) * sj;
            }
        }
        let mut d: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            // Not a descent direction (curvature lost): restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            d = g.iter().map(|v| -v / gmax).collect();
            slope = dot(&g, &d);
        }
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..60 {
            let xn: Vec<f64> = x.iter().zip(&d).map(|(a, b)| a + step * b).collect();
            let (fn_, _) = f(&xn, false);
            evaluations += 1;
            if fn_.is_finite() && fn_ <= fx + 1e-4 * step * slope {
                let (fn_, gn) = f(&xn, true);
                evaluations += 1;
                accepted = Some((xn, fn_, gn));
                break;
            }
            step *= 0.5;
        }
        let Some((xn, fn_, gn)) = accepted else {
            // The quasi-Newton direction failed: retry once from steepest descent.
            if s_hist.is_empty() {
                break;
            }
            s_hist.clear();
            y_hist.clear();
            continue;
        };
        iterations += 1;
        let s: Vec<f64> = xn.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gn.iter().zip(&g).map(|(a, b)| a - b).collect();
        let small = fx - fn_ <= 1e-15 * fx.abs();
        if dot(&s, &y) > 1e-300 {
            s_hist.push(s);
            y_hist.push(y);
            if s_hist.len() > HISTORY {
                s_hist.remove(0);
                y_hist.remove(0);
            }
        }
        x = xn;
        fx = fn_;
        g = gn;
        progress(iterations, fx);
        if small {
            break;
        }
    }
    Minimum {
        x,
        value: fx,
        iterations,
        evaluations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_rosenbrock_minimum() {
        let rosen = |x: &[f64], _: bool| {
            let (a, b) = (x[0], x[1]);
            let f = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
            let g = vec![
                -2.0 * (1.0 - a) - 400.0 * a * (b - a * a),
                200.0 * (b - a * a),
            ];
            (f, g)
        };
        let m = minimize(rosen, &[-1.2, 1.0], 500, 1e-10);
        assert!(
            (m.x[0] - 1.0).abs() < 1e-6 && (m.x[1] - 1.0).abs() < 1e-6,
            "{m:?}"
        );
    }
}
