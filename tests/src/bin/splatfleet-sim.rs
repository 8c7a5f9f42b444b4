//! `splatfleet-sim`: stand-ins for the outside world in tests and demos:
//! `splatfleet-sim validators`, N simulated SN17 validators on 127.0.0.1,
//! `splatfleet-sim generator`, a sample generation service (ARCHITECTURE.md, the generation service), and
//! `splatfleet-sim validation`, a stand-in for the subnet's validation service (§7, tier 2), and
//! `splatfleet-sim models --tiny DIR`, tiny random-weight scorer models in the upstream formats.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use splatfleet_tests::sim::{
    events::EventLog,
    generator::{AnswerMix, Fault, GeneratorSettings, SimGenerator},
    setup::{self, NetworkSettings},
    validation::{SimValidation, ValidationFault, ValidationSettings},
    RuleSettings, ScoreMode, ScoreSettings,
};

#[derive(Debug, Parser)]
#[command(
    name = "splatfleet-sim",
    about = "Simulated validators and generation service for splatfleet tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve N simulated SN17 v45 validators on 127.0.0.1.
    Validators(ValidatorsArgs),
    /// Serve a sample generation service (`POST /generate/`) on 127.0.0.1.
    Generator(GeneratorArgs),
    /// Serve a stand-in for the subnet's validation service (`POST /validate_txt_to_3d_ply/`,
    /// `/validate_img_to_3d_ply/`) on 127.0.0.1.
    Validation(ValidationArgs),
    /// Delete the queues and exchanges of a queue prefix (SPLATFLEET_TEST_AMQP_URL's broker).
    DeleteTopology(DeleteTopologyArgs),
    /// Write tiny random-weight scorer models (DINOv2 + quality head, AlexNet, LPIPS, and the
    /// CLIP ConvNeXt and LLM2CLIP prompt-alignment towers) under their upstream names and
    /// formats, for CI and demos.
    Models(ModelsArgs),
}

#[derive(Debug, clap::Args)]
struct ModelsArgs {
    /// The models_dir to write (created if needed).
    #[arg(long)]
    tiny: PathBuf,
    /// The seed of the random weights.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn run_models(args: ModelsArgs) -> Result<(), String> {
    let written = splatfleet_tests::sim::scorer_models::write_tiny_models(&args.tiny, args.seed)
        .map_err(|e| format!("writing tiny models to {}: {e}", args.tiny.display()))?;
    println!(
        "wrote tiny scorer models (seed {}) to {}:",
        args.seed,
        written.root.display()
    );
    for (file, bytes) in &written.files {
        println!("  {file} ({bytes} bytes)");
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
struct ValidationArgs {
    /// Port to listen on (0: a free port, printed at start); the real service uses 8094.
    #[arg(long, default_value_t = 8094)]
    port: u16,
    /// Gaussians at which a clean model's score reaches 0.63.
    #[arg(long, default_value_t = 20_000.0)]
    reference_gaussians: f64,
    /// Score every decodable model this, 0..1.
    #[arg(long)]
    fixed_score: Option<f64>,
    /// Score models with fewer gaussians than this `--low-score`.
    #[arg(long)]
    low_below_gaussians: Option<usize>,
    /// The score of models under `--low-below-gaussians`, 0..1.
    #[arg(long, default_value_t = 0.2)]
    low_score: f64,
    /// A misbehaviour to inject.
    #[arg(long, value_enum, default_value_t = ValidationFault::None)]
    fault: ValidationFault,
    /// Delay of `--fault slow`, milliseconds.
    #[arg(long, default_value_t = 2_000)]
    slow_ms: u64,
}

#[derive(Debug, clap::Args)]
struct DeleteTopologyArgs {
    /// The prefix whose `<prefix>.tasks`, `.results`, `.dead`, `<prefix>` and `.dlx` go.
    #[arg(long)]
    prefix: String,
}

#[derive(Debug, clap::Args)]
struct GeneratorArgs {
    /// Port to listen on (0: a free port, printed at start).
    #[arg(long, default_value_t = 8093)]
    port: u16,
    /// Gaussians of a plausible model: `N` for exactly N, `MIN-MAX` for a size drawn per model.
    #[arg(long, default_value = "50000-600000", value_parser = parse_gaussians)]
    gaussians: (usize, usize),
    /// Share (0..1) of sparse models (7k..150k thin gaussians; the gate scores them low).
    #[arg(long, default_value_t = 0.0)]
    sparse_share: f64,
    /// Share of models under the validator's 7,000-gaussian floor.
    #[arg(long, default_value_t = 0.0)]
    tiny_share: f64,
    /// Share of degenerate models (mostly transparent, identity rotations or NaNs).
    #[arg(long, default_value_t = 0.0)]
    degenerate_share: f64,
    /// Share of answers that are not a PLY.
    #[arg(long, default_value_t = 0.0)]
    invalid_share: f64,
    /// Share of truncated PLYs.
    #[arg(long, default_value_t = 0.0)]
    truncated_share: f64,
    /// Share of HTTP 500 answers.
    #[arg(long, default_value_t = 0.0)]
    error_share: f64,
    /// Share of answers delayed by `--slow-ms`.
    #[arg(long, default_value_t = 0.0)]
    slow_share: f64,
    /// Median latency added to every answer, milliseconds (log-normal, see --latency-sigma).
    #[arg(long, default_value_t = 0)]
    latency_median_ms: u64,
    /// Log-normal spread of the latency.
    #[arg(long, default_value_t = 0.5)]
    latency_sigma: f64,
    /// Cap of the added latency, milliseconds.
    #[arg(long, default_value_t = 60_000)]
    latency_max_ms: u64,
    /// A misbehaviour forced on every request (or the first `--fault-attempts` attempts).
    #[arg(long, value_enum, default_value_t = Fault::None)]
    fault: Fault,
    /// Force the fault only for requests whose `attempt` field is below this (default: all).
    #[arg(long)]
    fault_attempts: Option<u32>,
    /// Delay of slow answers, milliseconds.
    #[arg(long, default_value_t = 2_000)]
    slow_ms: u64,
    /// Zero-time generation for benchmarks: answer every request at once with one object of
    /// the smallest `--gaussians`, written once at start (shares, latency and faults ignored).
    #[arg(long)]
    cached: bool,
}

/// `N` or `MIN-MAX`, both at least 1.
fn parse_gaussians(text: &str) -> Result<(usize, usize), String> {
    let number = |part: &str| {
        part.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("`{part}` is not a gaussian count of at least 1"))
    };
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (number(lo)?, number(hi)?),
        None => (number(text)?, number(text)?),
    };
    if hi < lo {
        return Err(format!("`{text}`: the maximum is under the minimum"));
    }
    Ok((lo, hi))
}

#[derive(Debug, clap::Args)]
struct ValidatorsArgs {
    /// How many validators.
    #[arg(long, default_value_t = 3)]
    count: u16,
    /// Port of validator 0; validator i listens on base-port + i (0: free ports).
    #[arg(long, default_value_t = 9100)]
    base_port: u16,
    /// Directory for the validators' and miner's wallets and validators.toml.
    #[arg(long)]
    keys_dir: PathBuf,
    /// Divides every validator duration (cooldown, throttle, penalties, lock).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Append JSON-lines events here.
    #[arg(long)]
    events: Option<PathBuf>,
    /// Share of image tasks, 0..1.
    #[arg(long, default_value_t = 0.3)]
    image_fraction: f64,
    /// Score payloads by size instead of decoding their SPZ (protocol tests).
    #[arg(long)]
    score_by_size: bool,
    /// Gaussians at which the splat score reaches 0.63.
    #[arg(long, default_value_t = 20_000.0)]
    score_reference_gaussians: f64,
    /// Decoded payload bytes at which the size score reaches 0.63 (with --score-by-size).
    #[arg(long, default_value_t = 100_000.0)]
    score_reference_bytes: f64,
    /// Half-width of the deterministic score noise.
    #[arg(long, default_value_t = 0.02)]
    score_noise: f64,
    /// Validation threshold announced and applied.
    #[arg(long, default_value_t = 0.6)]
    threshold: f64,
    /// Seed of the task mix.
    #[arg(long, default_value_t = 17)]
    seed: u64,
    /// Stake written for each validator in validators.toml, TAO.
    #[arg(long, default_value_t = 10_000.0)]
    stake: f64,
    /// Benchmarks: the whole network answers at most this many PullTask calls per second,
    /// evenly spaced (an early call waits for its slot). Unset: no limit.
    #[arg(long)]
    task_rate: Option<f64>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Validators(args) => run_validators(args).await,
        Command::Generator(args) => run_generator(args).await,
        Command::Validation(args) => run_validation(args).await,
        Command::Models(args) => run_models(args),
        Command::DeleteTopology(args) => {
            let broker = splatfleet_common::config::BrokerSettings {
                prefix: args.prefix,
                ..splatfleet_common::config::BrokerSettings::default()
            };
            splatfleet_tests::delete_topology(&broker).await;
            Ok(())
        }
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("splatfleet-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_generator(args: GeneratorArgs) -> Result<(), String> {
    let mix = AnswerMix {
        sparse: args.sparse_share,
        tiny: args.tiny_share,
        degenerate: args.degenerate_share,
        invalid: args.invalid_share,
        truncated: args.truncated_share,
        error500: args.error_share,
        slow: args.slow_share,
    };
    let shares = [
        mix.sparse,
        mix.tiny,
        mix.degenerate,
        mix.invalid,
        mix.truncated,
        mix.error500,
        mix.slow,
    ];
    if shares.iter().any(|s| !(0.0..=1.0).contains(s)) || mix.total() > 1.0 {
        return Err("every --*-share must lie in 0..1 and together they must not pass 1".into());
    }
    if !(args.latency_sigma.is_finite() && args.latency_sigma >= 0.0) {
        return Err("--latency-sigma must be a non-negative number".into());
    }
    let settings = GeneratorSettings {
        gaussians: args.gaussians.0,
        gaussians_max: Some(args.gaussians.1),
        mix,
        latency_median_ms: args.latency_median_ms,
        latency_sigma: args.latency_sigma,
        latency_max_ms: args.latency_max_ms,
        fault: args.fault,
        fault_attempts: args.fault_attempts.unwrap_or(u32::MAX),
        slow_ms: args.slow_ms,
        cached: args.cached,
    };
    let generator = SimGenerator::start(args.port, settings)
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    println!("generator listening on {}", generator.url());
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    drop(generator);
    Ok(())
}

async fn run_validation(args: ValidationArgs) -> Result<(), String> {
    let unit = |name: &str, value: f64| {
        if (0.0..=1.0).contains(&value) {
            Ok(value)
        } else {
            Err(format!("--{name} must be between 0 and 1"))
        }
    };
    if !(args.reference_gaussians.is_finite() && args.reference_gaussians > 0.0) {
        return Err("--reference-gaussians must be a positive number".into());
    }
    let settings = ValidationSettings {
        fault: args.fault,
        slow_ms: args.slow_ms,
        reference_gaussians: args.reference_gaussians,
        fixed_score: args
            .fixed_score
            .map(|s| unit("fixed-score", s))
            .transpose()?,
        low_below_gaussians: args.low_below_gaussians,
        low_score: unit("low-score", args.low_score)?,
    };
    let service = SimValidation::start(args.port, settings)
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    println!("validation service listening on {}", service.url());
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    drop(service);
    Ok(())
}

async fn run_validators(args: ValidatorsArgs) -> Result<(), String> {
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        return Err("--time-scale must be a positive number".into());
    }
    let events = match &args.events {
        Some(path) => EventLog::to_file(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => EventLog::in_memory(),
    };
    let settings = NetworkSettings {
        count: args.count,
        base_port: args.base_port,
        keys_dir: args.keys_dir.clone(),
        rules: RuleSettings {
            time_scale: args.time_scale,
            quality_threshold: args.threshold,
            ..RuleSettings::default()
        },
        scoring: ScoreSettings {
            mode: if args.score_by_size {
                ScoreMode::PayloadSize
            } else {
                ScoreMode::Splat
            },
            reference_bytes: args.score_reference_bytes,
            reference_gaussians: args.score_reference_gaussians,
            noise: args.score_noise,
        },
        image_fraction: args.image_fraction,
        seed: args.seed,
        stake: args.stake,
    };
    if args
        .task_rate
        .is_some_and(|rate| !(rate.is_finite() && rate > 0.0))
    {
        return Err("--task-rate must be a positive number".into());
    }
    let network = setup::start_with(&settings, events, args.task_rate).await?;
    for v in &network.list.validators {
        println!(
            "validator uid={} hotkey={} addr={}:{}",
            v.uid, v.hotkey, v.ip, v.port
        );
    }
    println!(
        "validator list: {}; miner wallet: {}",
        args.keys_dir.join("validators.toml").display(),
        setup::hotkey_file(&args.keys_dir, "miner").display()
    );
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    drop(network);
    Ok(())
}
