//! The trainkern command-line tool: `info`, `check`, `bench` and `run`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

mod clip;
mod demo;
mod mf;
mod npy;
mod render;
mod splat;
mod upgd;

use clap::{Args, Parser, Subcommand};
use trainkern::noise::{self, Gaussian};
use trainkern::{Backend, DType, Device, Error, Float, Result};

#[derive(Parser)]
#[command(
    name = "trainkern",
    version,
    about = "Fused training-step kernels: CPU reference, PTX and WGSL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The backends found (adapter or GPU, driver, key limits) and why any is missing.
    Info,
    /// Every op on one backend against the CPU reference at every size class; exit 1 on a FAIL.
    Check {
        #[command(flatten)]
        backend: BackendArg,
        /// Only these op families (comma list of noise, clip, mf_noise, fft, upgd, render,
        /// splat; default: all).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Time every op; the plain device copy of the same run is the yardstick.
    Bench {
        #[command(flatten)]
        backend: BackendArg,
        /// Also write the rows as a JSON array to this file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        /// Sizes as base-2 logarithms, e.g. `16,20,24` (default: up to 28 on CUDA, 26 elsewhere).
        #[arg(long, value_delimiter = ',')]
        sizes: Option<Vec<u32>>,
        /// Only these op families (as for `check`; default: all).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Run one op on files, for comparing with your own code. These flags are stable.
    #[command(subcommand)]
    Run(RunCommand),
    /// Matrix-factorization (correlated noise) planning on the CPU, in f64.
    #[command(subcommand)]
    Mf(MfCommand),
    /// Render views of a small built-in scene, splat them into a triplane, fit the triplane and
    /// a decoder with the renderer's backward pass, and write PNGs of a held-out view (truth,
    /// before, after) with their PSNR.
    Demo {
        /// Directory for the PNGs (created if missing).
        #[arg(long, default_value = "demo")]
        out: std::path::PathBuf,
        /// Adam steps of 1024 rays each.
        #[arg(long, default_value_t = 400)]
        steps: usize,
        /// Seed of the decoder's initialization and the ray batches.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// cpu, wgpu or cuda (default: the CPU, the fastest here: lavapipe is slower than it).
        #[arg(long)]
        backend: Option<Backend>,
    },
}

#[derive(Subcommand)]
enum MfCommand {
    /// One strategy: a table (sensitivity and whether exact, loss, RMSE, ratio to DP-SGD, noise
    /// multiplier, state vectors per coordinate) and, with --json, the plan the noise kernels
    /// read.
    Plan {
        /// sqrt, bandmf, bisr, blt, dense or fourier.
        #[arg(long)]
        strategy: String,
        #[command(flatten)]
        setting: MfArgs,
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Several strategies for the same setting, side by side.
    Compare {
        /// Comma list of strategies.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "sqrt,bandmf,bisr,fourier"
        )]
        strategies: Vec<String>,
        #[command(flatten)]
        setting: MfArgs,
    },
}

#[derive(Args)]
struct MfArgs {
    /// n, the number of steps.
    #[arg(long)]
    steps: usize,
    /// k, the most participations of one example.
    #[arg(long)]
    epochs: usize,
    /// b, the fewest steps between two participations.
    #[arg(long)]
    min_sep: usize,
    /// Fixed epoch order (n = k b, participations at q, q + b, ...) instead of b-min-sep.
    #[arg(long)]
    fixed_epochs: bool,
    /// p, bands of BandMF and BISR (default: min(b, n)).
    #[arg(long)]
    bands: Option<usize>,
    /// m, BLT buffers (optimized; default 2), or the length of --theta and --omega.
    #[arg(long)]
    buffers: Option<usize>,
    /// BandMF from the truncated square root instead of optimized coefficients.
    #[arg(long)]
    truncated: bool,
    /// BLT decays, comma separated, each in (0, 1).
    #[arg(long, value_delimiter = ',')]
    theta: Option<Vec<f64>>,
    /// BLT scales, comma separated, each > 0.
    #[arg(long, value_delimiter = ',')]
    omega: Option<Vec<f64>>,
    /// Momentum of the SGD workload the square root factors (0: the prefix sum).
    #[arg(long, default_value_t = 0.0)]
    momentum: f64,
    /// mean or max error.
    #[arg(long, default_value = "mean")]
    objective: trainkern::mf::Objective,
    #[arg(long)]
    epsilon: Option<f64>,
    #[arg(long)]
    delta: Option<f64>,
    /// Use this noise multiplier instead of calibrating one (with --delta: report its epsilon).
    #[arg(long)]
    noise_multiplier: Option<f64>,
    /// Poisson sampling rate q: amplified BandMF (needs bands <= b).
    #[arg(long)]
    sample_rate: Option<f64>,
}

impl MfArgs {
    fn setting(&self) -> Result<mf::Setting> {
        if let (Some(m), Some(t)) = (self.buffers, &self.theta)
            && m != t.len()
        {
            return Err(Error::InvalidArgument {
                op: "mf",
                what: format!("--buffers {m} but --theta has {} values", t.len()),
            });
        }
        Ok(mf::Setting {
            steps: self.steps,
            epochs: self.epochs,
            min_sep: self.min_sep,
            fixed_epochs: self.fixed_epochs,
            bands: self.bands,
            buffers: self.buffers,
            truncated: self.truncated,
            theta: self.theta.clone(),
            omega: self.omega.clone(),
            momentum: self.momentum,
            objective: self.objective,
            epsilon: self.epsilon,
            delta: self.delta,
            noise_multiplier: self.noise_multiplier,
            sample_rate: self.sample_rate,
        })
    }
}

/// Where rendering and splatting sample each ray (design/triplane.md, "Rays and samples").
#[derive(Args)]
struct MarchArgs {
    /// Foreground samples per ray (>= 2, both ends included).
    #[arg(long)]
    samples: usize,
    /// Background samples beyond far.
    #[arg(long, default_value_t = 0)]
    samples_inf: usize,
    #[arg(long, default_value_t = 1e-5)]
    disparity_at_inf: f32,
    #[arg(long)]
    contract: bool,
    #[arg(long)]
    mask_oob: bool,
}

#[derive(Args)]
struct BackendArg {
    /// cpu, wgpu or cuda (default: TRAINKERN_BACKEND, else the best available).
    #[arg(long)]
    backend: Option<Backend>,
}

impl BackendArg {
    fn device(&self) -> Result<Device> {
        match self.backend {
            Some(b) => Device::from_backend(b),
            None => Device::best(),
        }
    }
}

#[derive(Subcommand)]
enum RunCommand {
    /// Gaussian noise `std * z(offset + j)` for j < len, written as a 1-D .npy
    /// (f32 as <f4, f16 as <f2, bf16 widened exactly to <f4 since .npy has no bf16).
    /// Prints {"seed": ..., "stream": ..., "offset": ..., "backend": ...} on stdout.
    Noise {
        /// Number of elements.
        #[arg(long)]
        len: usize,
        /// Standard deviation (finite, >= 0).
        #[arg(long, allow_negative_numbers = true)]
        std: f32,
        /// 64-bit seed (default: drawn from the operating system and printed).
        #[arg(long)]
        seed: Option<u64>,
        /// 64-bit stream id (independent streams under one seed).
        #[arg(long)]
        stream: u64,
        /// Global index of element 0, so shards reproduce a slice of the whole.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Element type: f32, f16 or bf16 (sampled in f32, rounded once).
        #[arg(long, default_value = "f32")]
        dtype: DType,
        #[command(flatten)]
        backend: BackendArg,
        /// The .npy file to write.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// UPGD steps over gradients in .npz files: w.npz has one array per tensor (its order is the
    /// flat layout), g.npz (and h.npz) the same names with a leading step axis (T, *shape), and
    /// the command runs T steps. A tensor's rows are its last axis unless --last-dims gives an
    /// integer per name. Writes the weights (and with --state-out the utility traces) as .npz
    /// with the parameters' names and shapes, and prints {"steps", "seed", "nonfinite", "backend"}.
    Upgd {
        /// {first,second}-{global,local}-{protect,noprotect} or adaptive.
        #[arg(long)]
        variant: String,
        /// Step scale of the adaptive variant (the authors' RL code uses 2).
        #[arg(long, default_value_t = 1.0)]
        k: f32,
        /// The one-pass mode: from step 2, scale by the previous step's maximum or row norms
        /// (a change of semantics, one fused launch per step).
        #[arg(long)]
        one_pass: bool,
        /// Store the traces (u, and m, v for adaptive) in bf16 instead of f32.
        #[arg(long)]
        bf16_traces: bool,
        /// Feature-level UPGD: tensors named "*gate*" are gates, gating the weight and biases
        /// before them (the public optimizers' naming rule); the rest take plain SGD.
        #[arg(long)]
        feature: bool,
        #[arg(long)]
        params: std::path::PathBuf,
        #[arg(long)]
        grads: std::path::PathBuf,
        #[arg(long)]
        hess: Option<std::path::PathBuf>,
        #[arg(long)]
        last_dims: Option<std::path::PathBuf>,
        #[arg(long)]
        lr: f32,
        #[arg(long, default_value_t = 0.0)]
        weight_decay: f32,
        #[arg(long, default_value_t = 0.0)]
        beta_utility: f32,
        #[arg(long, default_value_t = 1.0)]
        sigma: f32,
        /// 64-bit seed (default: drawn from the operating system and printed).
        #[arg(long)]
        seed: Option<u64>,
        #[command(flatten)]
        backend: BackendArg,
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long)]
        state_out: Option<std::path::PathBuf>,
    },
    /// Render rays through grids and a decoder (design/triplane.md): g.npz holds g0, g1, ...
    /// ([B, D, H, W, C] each; f16 files run in f16), p.npy the flat decoder parameters
    /// (Lightplane's layout, a padded color head accepted), r.npz origins (R, 3), directions
    /// (R, 3), near (R,), far (R,), batch (R,) and optionally encoding (R, E). Writes features
    /// (R, K), ray_length (R,) and neg_log_transmittance (R,) to --out; with --backward (an
    /// .npz of incoming gradients under the same three names) writes the gradients (g0, ...,
    /// c0, ..., params, encoding) to --grads-out. Prints a JSON summary.
    Render {
        #[arg(long)]
        grids: std::path::PathBuf,
        /// A separate color grid list (c0, c1, ...): no trunk (--layers 0,O,C).
        #[arg(long)]
        color_grids: Option<std::path::PathBuf>,
        #[arg(long)]
        params: std::path::PathBuf,
        #[arg(long)]
        rays: std::path::PathBuf,
        #[command(flatten)]
        march: MarchArgs,
        #[arg(long, default_value_t = 1.0)]
        gain: f32,
        /// Layers of the trunk, opacity and color MLPs.
        #[arg(long, default_value = "2,2,2")]
        layers: String,
        #[arg(long, default_value_t = 32)]
        hidden: usize,
        #[arg(long, default_value_t = 3)]
        color_channels: usize,
        /// Std of the opacity noise (with --seed and stream 0).
        #[arg(long)]
        noise_sigma: Option<f32>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        backend: BackendArg,
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long)]
        backward: Option<std::path::PathBuf>,
        #[arg(long)]
        grads_out: Option<std::path::PathBuf>,
    },
    /// Splat rays into grids (design/triplane.md, "Splat"): r.npz as for `run render`, its
    /// `encoding` (R, C) being what each ray splats (with the MLP splatter: added to the input
    /// grids' sample; optional). --grid-sizes gives the output shapes, e.g.
    /// "3,1,32,32,16;3,32,1,32,16;3,32,32,1,16". The MLP splatter takes --input-grids (i0, i1,
    /// ...) and --params (flat, Lightplane's layout). Writes g0, g1, ... to --out; with
    /// --backward (an .npz of g0, g1, ... incoming gradients) writes encoding (and i0, ...,
    /// params) to --grads-out. Prints a JSON summary.
    Splat {
        #[arg(long)]
        grid_sizes: String,
        #[arg(long)]
        rays: std::path::PathBuf,
        #[arg(long, requires = "params")]
        input_grids: Option<std::path::PathBuf>,
        #[arg(long, requires = "input_grids")]
        params: Option<std::path::PathBuf>,
        /// Layers of the MLP splatter.
        #[arg(long, default_value_t = 2)]
        layers: usize,
        #[arg(long, default_value_t = 32)]
        hidden: usize,
        #[command(flatten)]
        march: MarchArgs,
        #[command(flatten)]
        backend: BackendArg,
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long)]
        backward: Option<std::path::PathBuf>,
        #[arg(long)]
        grads_out: Option<std::path::PathBuf>,
    },
    /// Per-example clipping of g.npy (B rows; trailing axes flattened into d columns): writes
    /// the clipped (noised, scaled) sum as a (d,) .npy and the norms as (B,) or, with --groups,
    /// (B, L), both f32, and prints {"clipped": N, "nonfinite": M}. f16 files run in f16;
    /// --dtype bf16 rounds the gradients to bf16 first.
    Clip {
        #[arg(long)]
        grads: std::path::PathBuf,
        /// The bound C of every group (or give --group-norms).
        #[arg(long)]
        clip_norm: Option<f32>,
        /// exact (min(1, C/n), the default) or opacus (min(1, C/(n + 1e-6))).
        #[arg(long, default_value = "exact")]
        rule: trainkern::clip::ClipRule,
        /// Gaussian noise of std Z * C (grouped: Z * sqrt(sum C_l^2)); needs --seed.
        #[arg(long, requires = "seed")]
        noise_multiplier: Option<f32>,
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value_t = 0)]
        stream: u64,
        /// The final factor on the sum (e.g. 1 / expected batch size).
        #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
        scale: f32,
        /// Integer column offsets 0 = o[0] < ... < o[L] = d, one group per parameter tensor.
        #[arg(long)]
        groups: Option<std::path::PathBuf>,
        /// One bound per group (L floats).
        #[arg(long, requires = "groups")]
        group_norms: Option<std::path::PathBuf>,
        /// Storage type of the gradients: f32, f16 or bf16 (default: the file's).
        #[arg(long)]
        dtype: Option<DType>,
        #[command(flatten)]
        backend: BackendArg,
        #[arg(long)]
        out_sum: std::path::PathBuf,
        #[arg(long)]
        out_norms: std::path::PathBuf,
    },
    /// Correlated noise from a plan file (`trainkern mf plan --json`): the `T x D` matrix of
    /// `sigma * x_t` for steps `0 .. T` over coordinates `offset .. offset + D`, as f32 .npy.
    MfNoise {
        #[arg(long)]
        plan: std::path::PathBuf,
        /// D, the coordinates.
        #[arg(long)]
        dim: usize,
        /// T, the steps (at most the plan's n).
        #[arg(long)]
        steps: usize,
        #[arg(long)]
        seed: u64,
        #[arg(long, default_value_t = 1.0)]
        sigma: f32,
        /// The global index of the first coordinate.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Keep the generator's state in bf16 (BandMF and Fourier; BLT refuses).
        #[arg(long)]
        bf16_state: bool,
        #[command(flatten)]
        backend: BackendArg,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Per-example squared gradient norms of one linear layer from its activations a.npy
    /// (B, T, p) or (B, p) and output gradients g.npy (B, T, q) or (B, q), without building
    /// per-example gradients; writes (B,) f32 and prints the method used.
    GhostNorms {
        #[arg(long)]
        activations: std::path::PathBuf,
        #[arg(long)]
        output_grads: std::path::PathBuf,
        /// Add the bias gradient's squared norm.
        #[arg(long)]
        bias: bool,
        /// Storage type: f32, f16 or bf16 (default: the activations file's).
        #[arg(long)]
        dtype: Option<DType>,
        #[command(flatten)]
        backend: BackendArg,
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

/// Progress lines on stderr, overwritten in place, only when stderr is a terminal.
fn progress() -> impl FnMut(&str) {
    let tty = std::io::stderr().is_terminal();
    move |what: &str| {
        if tty {
            eprint!("\r\x1b[2K{what} ...");
            let _ = std::io::stderr().flush();
        }
    }
}

fn clear_progress() {
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K");
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            clear_progress();
            eprintln!("trainkern: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Info => {
            println!("trainkern {}", env!("CARGO_PKG_VERSION"));
            for p in trainkern::backend::probe() {
                match p.found {
                    Ok(devs) => {
                        for d in devs {
                            println!("{:<5} {d}", p.backend.name());
                        }
                    }
                    Err(why) => println!("{:<5} unavailable: {why}", p.backend.name()),
                }
            }
            match Device::best() {
                Ok(d) => println!("best: {d}"),
                Err(e) => println!("best: {e}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { backend, only } => {
            let dev = backend.device()?;
            println!("checking on {dev}");
            let rows = trainkern::check::run(&dev, &only, &mut progress())?;
            clear_progress();
            print!("{}", trainkern::check::format_table(&rows));
            Ok(if rows.iter().all(|r| r.pass) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Bench {
            backend,
            json,
            sizes,
            only,
        } => {
            let dev = backend.device()?;
            let sizes: Vec<usize> = match sizes {
                Some(s) => s
                    .iter()
                    .map(|&l| {
                        if l > 40 {
                            Err(Error::InvalidArgument {
                                op: "bench",
                                what: format!("--sizes takes log2 sizes up to 40, got {l}"),
                            })
                        } else {
                            Ok(1usize << l)
                        }
                    })
                    .collect::<Result<_>>()?,
                None => trainkern::bench::default_sizes(dev.backend()),
            };
            println!("bench on {dev}");
            let rows = trainkern::bench::run(&dev, &sizes, &only, &mut progress())?;
            clear_progress();
            print!("{}", trainkern::bench::format_table(&rows));
            if let Some(path) = json {
                let body: Vec<String> = rows.iter().map(|r| r.to_json()).collect();
                std::fs::write(&path, format!("[\n{}\n]\n", body.join(",\n"))).map_err(|e| {
                    Error::Io {
                        path: path.display().to_string(),
                        source: e,
                    }
                })?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            out,
            steps,
            seed,
            backend,
        } => {
            let dev = Device::from_backend(backend.unwrap_or(Backend::Cpu))?;
            demo::run(&dev, &demo::Demo { out, steps, seed })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(cmd @ RunCommand::Upgd { .. }) => run_upgd(cmd),
        Command::Mf(MfCommand::Plan {
            strategy,
            setting,
            json,
        }) => {
            print!(
                "{}",
                mf::run_plan(&strategy, &setting.setting()?, json.as_ref())?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Mf(MfCommand::Compare {
            strategies,
            setting,
        }) => {
            print!("{}", mf::run_compare(&strategies, &setting.setting()?)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(RunCommand::Render {
            grids,
            color_grids,
            params,
            rays,
            march,
            gain,
            layers,
            hidden,
            color_channels,
            noise_sigma,
            seed,
            backend,
            out,
            backward,
            grads_out,
        }) => {
            let dev = backend.device()?;
            let l: Vec<usize> = layers
                .split(',')
                .map(|x| x.trim().parse::<usize>())
                .collect::<std::result::Result<_, _>>()
                .ok()
                .filter(|v: &Vec<usize>| v.len() == 3)
                .ok_or_else(|| trainkern::Error::InvalidArgument {
                    op: "run render",
                    what: format!("--layers must be three counts T,O,C, got {layers:?}"),
                })?;
            let args = render::Args {
                grids,
                color_grids,
                params,
                rays,
                decoder: trainkern::render::Decoder {
                    trunk_layers: l[0],
                    opacity_layers: l[1],
                    color_layers: l[2],
                    hidden,
                    color_channels,
                },
                opts: trainkern::render::RenderOptions {
                    samples: march.samples,
                    samples_inf: march.samples_inf,
                    gain,
                    disparity_at_inf: march.disparity_at_inf,
                    contract: march.contract,
                    mask_out_of_bounds: march.mask_oob,
                    noise: noise_sigma.map(|sigma| trainkern::render::OpacityNoise {
                        sigma,
                        seed,
                        stream: 0,
                    }),
                },
                out,
                backward,
                grads_out,
            };
            println!("{}", render::run(&dev, &args)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(RunCommand::Splat {
            grid_sizes,
            rays,
            input_grids,
            params,
            layers,
            hidden,
            march,
            backend,
            out,
            backward,
            grads_out,
        }) => {
            let dev = backend.device()?;
            let args = splat::Args {
                grid_sizes,
                rays,
                input_grids,
                params,
                mlp: trainkern::splat::SplatMlp { layers, hidden },
                opts: trainkern::splat::SplatOptions {
                    samples: march.samples,
                    samples_inf: march.samples_inf,
                    disparity_at_inf: march.disparity_at_inf,
                    contract: march.contract,
                    mask_out_of_bounds: march.mask_oob,
                },
                out,
                backward,
                grads_out,
            };
            println!("{}", splat::run(&dev, &args)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(RunCommand::Clip {
            grads,
            clip_norm,
            rule,
            noise_multiplier,
            seed,
            stream,
            scale,
            groups,
            group_norms,
            dtype,
            backend,
            out_sum,
            out_norms,
        }) => {
            let dev = backend.device()?;
            let noise = noise_multiplier.map(|multiplier| trainkern::clip::ClipNoise {
                multiplier,
                seed: seed.unwrap_or(0),
                stream,
                offset: 0,
            });
            let args = clip::ClipArgs {
                grads,
                clip_norm,
                rule,
                noise,
                scale,
                groups,
                group_norms,
                dtype,
                out_sum,
                out_norms,
            };
            println!("{}", clip::run_clip(&dev, &args)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(RunCommand::MfNoise {
            plan,
            dim,
            steps,
            seed,
            sigma,
            offset,
            bf16_state,
            backend,
            out,
        }) => {
            let dev = backend.device()?;
            let text = std::fs::read_to_string(&plan).map_err(|e| Error::Io {
                path: plan.display().to_string(),
                source: e,
            })?;
            let file = trainkern::mf::read_plan(&text)?;
            let n = file.participation.n;
            if steps > n {
                return Err(Error::InvalidArgument {
                    op: "run mf-noise",
                    what: format!("--steps {steps} exceeds the plan's n = {n}"),
                });
            }
            let mut g = trainkern::mf_noise::NoiseGenerator::new(
                &dev,
                &file.strategy,
                n,
                dim,
                offset,
                seed,
                sigma,
            )?;
            if bf16_state {
                g.set_state_dtype(trainkern::DType::BF16)?;
            }
            let mut rows = Vec::with_capacity(steps * dim);
            for t in 0..steps as u64 {
                let mut x = dev.zeros::<f32>(dim)?;
                g.step(t, &mut x)?;
                rows.extend(x.download()?);
            }
            clip::write_f32(&out, &[steps as u64, dim as u64], &rows)?;
            println!(
                "{{\"strategy\": \"{}\", \"steps\": {steps}, \"seed\": {seed}, \"backend\": \"{}\"}}",
                file.label,
                dev.backend()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(RunCommand::GhostNorms {
            activations,
            output_grads,
            bias,
            dtype,
            backend,
            out,
        }) => {
            let dev = backend.device()?;
            let line = clip::run_ghost(&dev, &activations, &output_grads, bias, dtype, &out)?;
            println!("{line}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(RunCommand::Noise {
            len,
            std,
            seed,
            stream,
            offset,
            dtype,
            backend,
            out,
        }) => {
            let dev = backend.device()?;
            let seed = match seed {
                Some(s) => s,
                None => trainkern::rng::entropy_seed()?,
            };
            let g = Gaussian {
                std,
                seed,
                stream,
                offset,
            };
            let io = |e: std::io::Error| Error::Io {
                path: out.display().to_string(),
                source: e,
            };
            match dtype {
                DType::F32 => {
                    let v = noise_on::<f32>(&dev, len, &g)?;
                    npyz::to_file_1d(&out, v).map_err(io)?;
                }
                DType::F16 => {
                    let v = noise_on::<half::f16>(&dev, len, &g)?;
                    npyz::to_file_1d(&out, v).map_err(io)?;
                }
                DType::BF16 => {
                    let v = noise_on::<half::bf16>(&dev, len, &g)?;
                    npyz::to_file_1d(&out, v.into_iter().map(|x| x.to_f32())).map_err(io)?;
                }
                DType::U32 => {
                    return Err(Error::InvalidArgument {
                        op: "run noise",
                        what: "--dtype must be f32, f16 or bf16".into(),
                    });
                }
            }
            println!(
                "{{\"seed\": {seed}, \"stream\": {stream}, \"offset\": {offset}, \"backend\": \"{}\"}}",
                dev.backend()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_upgd(cmd: RunCommand) -> Result<ExitCode> {
    let RunCommand::Upgd {
        variant,
        k,
        one_pass,
        bf16_traces,
        feature,
        params,
        grads,
        hess,
        last_dims,
        lr,
        weight_decay,
        beta_utility,
        sigma,
        seed,
        backend,
        out,
        state_out,
    } = cmd
    else {
        unreachable!("called for run upgd")
    };
    let dev = backend.device()?;
    let seed = match seed {
        Some(s) => s,
        None => trainkern::rng::entropy_seed()?,
    };
    let args = upgd::Args {
        variant,
        k,
        one_pass,
        bf16_traces,
        feature,
        params,
        grads,
        hess,
        last_dims,
        hyper: trainkern::upgd::Hyper {
            lr,
            weight_decay,
            beta_utility,
            sigma,
        },
        seed,
        out,
        state_out,
    };
    println!("{}", upgd::run(&dev, &args)?);
    Ok(ExitCode::SUCCESS)
}

fn noise_on<T: Float>(dev: &Device, len: usize, g: &Gaussian) -> Result<Vec<T>> {
    let mut buf = dev.zeros::<T>(len)?;
    noise::fill_gaussian(dev, &mut buf, g)?;
    buf.download()
}
