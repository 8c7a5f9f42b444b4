//! `splatfleet-sim`: stand-ins for the outside world in tests and demos:
//! `splatfleet-sim validators`, N simulated SN17 validators on 127.0.0.1, and
//! `splatfleet-sim generator`, a sample generation service (DESIGN.md §6).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use splatfleet_tests::sim::{
    events::EventLog,
    generator::{Fault, GeneratorSettings, SimGenerator},
    setup::{self, NetworkSettings},
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
    /// Delete the queues and exchanges of a queue prefix (SPLATFLEET_TEST_AMQP_URL's broker).
    DeleteTopology(DeleteTopologyArgs),
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
    /// Gaussians per generated model.
    #[arg(long, default_value_t = 20_000)]
    gaussians: usize,
    /// A misbehaviour to inject.
    #[arg(long, value_enum, default_value_t = Fault::None)]
    fault: Fault,
    /// Inject the fault only for requests whose `attempt` field is below this (default: all).
    #[arg(long)]
    fault_attempts: Option<u32>,
    /// Delay of `--fault slow`, milliseconds.
    #[arg(long, default_value_t = 2_000)]
    slow_ms: u64,
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
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Validators(args) => run_validators(args).await,
        Command::Generator(args) => run_generator(args).await,
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
    if args.gaussians == 0 {
        return Err("--gaussians must be at least 1".into());
    }
    let settings = GeneratorSettings {
        gaussians: args.gaussians,
        fault: args.fault,
        fault_attempts: args.fault_attempts.unwrap_or(u32::MAX),
        slow_ms: args.slow_ms,
    };
    let generator = SimGenerator::start(args.port, settings)
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    println!("generator listening on {}", generator.url());
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    drop(generator);
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
    let network = setup::start(&settings, events).await?;
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
