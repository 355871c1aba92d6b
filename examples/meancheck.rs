use trainkern::{Device, noise};
fn main() {
    let dev = Device::cpu();
    let n = 1usize << 26;
    let mut b = dev.zeros::<f32>(n).unwrap();
    let g = noise::Gaussian { std: 1.0, seed: 1, stream: 2, offset: 0 };
    for _ in 0..2 { noise::fill_gaussian(&dev, &mut b, &g).unwrap(); }
    let t = std::time::Instant::now();
    for _ in 0..5 { noise::fill_gaussian(&dev, &mut b, &g).unwrap(); }
    let s = t.elapsed().as_secs_f64() / 5.0;
    println!("fill_gaussian f32: {:.1} M/s", n as f64 / s / 1e6);
    let mut w = dev.zeros::<u32>(n).unwrap();
    let t = std::time::Instant::now();
    for _ in 0..5 { noise::fill_bits(&dev, &mut w, 1, 2, 0).unwrap(); }
    let s = t.elapsed().as_secs_f64() / 5.0;
    println!("fill_bits: {:.1} M/s", n as f64 / s / 1e6);
}
