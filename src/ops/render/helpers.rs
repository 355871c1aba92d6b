//! What Lightplane's renderer module does around its kernel, for a user who renders a scene
//! in a few lines: the harmonic embedding of ray directions, and the background composite.

/// The length of [`harmonic_embedding`]'s output per ray: `6 n + 3`.
pub fn harmonic_dim(n_harmonics: usize) -> usize {
    6 * n_harmonics + 3
}

/// NeRF's harmonic embedding of each ray's unit direction `u = d / |d|` (`directions` is `R x
/// 3`), in Lightplane's order: `sin(2^f u_k)` for `k` in x, y, z and `f` in `0..n`, then
/// `cos(2^f u_k)` in the same order, then `u` itself. A zero direction embeds as zeros and
/// ones (its unit vector is taken as zero). Project the result to the renderer's
/// [`super::Renderer::encoding_len`] with a learned linear layer, as Lightplane does.
pub fn harmonic_embedding(directions: &[f32], n_harmonics: usize) -> Vec<f32> {
    let dim = harmonic_dim(n_harmonics);
    let mut out = Vec::with_capacity(directions.len() / 3 * dim);
    for d in directions.chunks_exact(3) {
        let norm = d.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        let u = d
            .iter()
            .map(|&x| if norm > 0.0 { f64::from(x) / norm } else { 0.0 })
            .collect::<Vec<_>>();
        for phase in [0.0, std::f64::consts::FRAC_PI_2] {
            for &uk in &u {
                for f in 0..n_harmonics {
                    out.push((uk * 2f64.powi(f as i32) + phase).sin() as f32);
                }
            }
        }
        out.extend(u.iter().map(|&x| x as f32));
    }
    out
}

/// The background composite of Lightplane's module: `color = features + exp(-Lambda) * bg` per
/// ray and `alpha = 1 - exp(-Lambda)`. `features` is `R x K`, `bg` has `K` values.
pub fn composite_background(features: &[f32], lambda: &[f32], bg: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let k = bg.len();
    let mut color = features.to_vec();
    let mut alpha = Vec::with_capacity(lambda.len());
    for (row, &l) in color.chunks_exact_mut(k.max(1)).zip(lambda) {
        let transmittance = (-l).exp();
        for (c, &b) in row.iter_mut().zip(bg) {
            *c += transmittance * b;
        }
        alpha.push(1.0 - transmittance);
    }
    (color, alpha)
}
