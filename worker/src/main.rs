//! `splatfleet-worker`: turns queued tasks into checked Gaussian-splat models on one GPU; as
//! `check`, judges model files on disk with the same gate; as `score`, gives their validator score.

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use splatfleet_common::role::{self, CommonArgs, Role};
use splatfleet_worker::{
    check::{self, CheckArgs},
    score::ScoreArgs,
};

/// Generate, render and gate Gaussian-splat models for queued tasks on one GPU.
#[derive(Debug, Parser)]
#[command(version = splatfleet_common::telemetry::VERSION)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// The GPU this process renders on; also picks `worker.generation_endpoints[N]`.
    #[arg(long, default_value_t = 0)]
    gpu: usize,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Judge PLY/SPZ files with the tier-1 gate (no broker needed); exit 0 when all pass.
    Check(CheckArgs),
    /// Print the validator's score of PLY/SPZ files (16 views at 518; GPU when present).
    Score(ScoreArgs),
}

fn main() -> ExitCode {
    // `--config` and `--gpu` are accepted after a subcommand as well as before it.
    let matches = Args::command()
        .mut_arg("config", |arg| arg.global(true))
        .mut_arg("gpu", |arg| arg.global(true))
        .get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    let gpu = args.gpu;
    match &args.command {
        Some(Command::Check(check_args)) => {
            let config = check::named_config(&matches, &args.common.config);
            check::run(check_args, config, gpu)
        }
        Some(Command::Score(score_args)) => splatfleet_worker::score::run(score_args, gpu),
        // A GPU or model files that cannot be used stop the start with exit 78, as a bad
        // config does.
        None => role::run_prepared(
            Role::Worker,
            &args.common,
            |config| splatfleet_worker::prepare(config, gpu),
            move |config, prepared, shutdown| {
                splatfleet_worker::run_prepared(config, prepared, shutdown, gpu)
            },
        ),
    }
}
