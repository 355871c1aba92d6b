//! Add DP noise to a gradient split across two shards, each on the best device, and show that
//! the shards together equal the noise of the whole (the global `offset` is what makes it so).
//!
//! cargo run --release --example sharded_noise

use trainkern::noise::{self, Gaussian};
use trainkern::{Device, Result};

fn main() -> Result<()> {
    let dev = Device::best()?;
    println!("device: {dev}");
    let d = 1_000_003;
    let grad: Vec<f32> = (0..d).map(|i| (i as f32 * 1e-3).sin()).collect();
    let g = Gaussian {
        std: 1.1,
        seed: trainkern::rng::entropy_seed()?,
        stream: 42, // e.g. the training step
        offset: 0,
    };

    // The whole gradient at once.
    let mut whole = dev.upload(&grad)?;
    noise::add_gaussian(&dev, &mut whole, &g)?;
    let whole = whole.download()?;

    // Two shards, as two data-parallel workers would hold them.
    let cut = d / 3;
    let mut shards = Vec::new();
    for (start, part) in [(0, &grad[..cut]), (cut, &grad[cut..])] {
        let mut b = dev.upload(part)?;
        noise::add_gaussian(
            &dev,
            &mut b,
            &Gaussian {
                offset: start as u64,
                ..g
            },
        )?;
        shards.extend(b.download()?);
    }
    let same = whole
        .iter()
        .zip(&shards)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    println!(
        "seed {}: shards equal the whole bit for bit: {same}",
        g.seed
    );
    let var = whole
        .iter()
        .zip(&grad)
        .map(|(n, x)| f64::from(n - x).powi(2))
        .sum::<f64>()
        / d as f64;
    println!("noise std {:.4} (asked for {})", var.sqrt(), g.std);
    Ok(())
}
