//! Fit a linear map with UPGD on the best device: the trainer computes gradients on the host,
//! the optimizer state and the update live on the device, and the weights come back only to
//! evaluate the loss.
//!
//! cargo run --release --example upgd_linear

use trainkern::upgd::{Hyper, TensorSpec, Upgd, Variant};
use trainkern::{Device, Result, rng};

const IN: usize = 16;
const OUT: usize = 8;

fn main() -> Result<()> {
    let dev = Device::best()?;
    println!("device: {dev}");
    // The model: a weight (OUT x IN, one row per output unit) and a bias, one flat buffer.
    let tensors = [
        TensorSpec {
            offset: 0,
            len: OUT * IN,
            last_dim: IN,
        },
        TensorSpec {
            offset: OUT * IN,
            len: OUT,
            last_dim: OUT,
        },
    ];
    let n = OUT * IN + OUT;
    let hyper = Hyper {
        lr: 0.05,
        weight_decay: 1e-4,
        beta_utility: 0.99,
        sigma: 1e-3,
    };
    let mut opt = Upgd::new(
        &dev,
        Variant::parse("first-global-protect")?,
        hyper,
        &tensors,
        n,
        7,
    )?;
    let mut w = dev.upload(&vec![0.0f32; n])?;

    // A target map to learn, and inputs, from the crate's RNG.
    let mut target = vec![0.0f32; n];
    rng::gaussians_into(1, 0, 0, &mut target);
    let batch = 64;
    for step in 0..=300 {
        let wh = w.download()?;
        let mut x = vec![0.0f32; batch * IN];
        rng::gaussians_into(2, step, 0, &mut x);
        // Mean squared error of (W x + b) against (T x + c), and its gradient.
        let mut grad = vec![0.0f32; n];
        let mut loss = 0.0f64;
        for xb in x.chunks(IN) {
            for o in 0..OUT {
                let row = o * IN..(o + 1) * IN;
                let dot = |m: &[f32]| {
                    m[row.clone()]
                        .iter()
                        .zip(xb)
                        .map(|(a, b)| a * b)
                        .sum::<f32>()
                };
                let err = dot(&wh) + wh[OUT * IN + o] - dot(&target) - target[OUT * IN + o];
                loss += f64::from(err * err);
                for (k, xi) in xb.iter().enumerate() {
                    grad[o * IN + k] += 2.0 * err * xi / batch as f32;
                }
                grad[OUT * IN + o] += 2.0 * err / batch as f32;
            }
        }
        if step % 50 == 0 {
            println!("step {step:>3}: loss {:.5}", loss / (batch * OUT) as f64);
        }
        opt.step(&mut w, &dev.upload(&grad)?, None)?;
    }
    Ok(())
}
