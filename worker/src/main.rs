//! `splatfleet-worker`: turns queued tasks into checked Gaussian-splat models on one GPU, or,
//! as `splatfleet-worker check`, judges model files on disk with the same gate.

use std::process::ExitCode;

use clap::{parser::ValueSource, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use splatfleet_common::role::{self, CommonArgs, Role};
use splatfleet_worker::check::{self, CheckArgs};

/// Generate, render and gate Gaussian-splat models for queued tasks on one GPU.
#[derive(Debug, Parser)]
#[command(version)]
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
}

fn main() -> ExitCode {
    // `--config` and `--gpu` are accepted after `check` as well as before it.
    let matches = Args::command()
        .mut_arg("config", |arg| arg.global(true))
        .mut_arg("gpu", |arg| arg.global(true))
        .get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    match &args.command {
        Some(Command::Check(check_args)) => {
            // Only a config someone named is required to exist; see `check::gate_settings`.
            let named = matches!(
                matches.value_source("config"),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            );
            let config = named.then_some(args.common.config.as_path());
            check::run(check_args, config, args.gpu)
        }
        None => {
            let gpu = args.gpu;
            role::run(Role::Worker, &args.common, move |config, shutdown| {
                splatfleet_worker::run(config, shutdown, gpu)
            })
        }
    }
}
