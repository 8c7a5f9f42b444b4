//! `splatfleet-worker`: turns queued tasks into checked Gaussian-splat models on one GPU.

use std::process::ExitCode;

use clap::Parser;
use splatfleet_common::role::{self, CommonArgs, Role};

/// Generate, render and gate Gaussian-splat models for queued tasks on one GPU.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// The GPU this process renders on; also picks `worker.generation_endpoints[N]`.
    #[arg(long, default_value_t = 0)]
    gpu: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let gpu = args.gpu;
    role::run(Role::Worker, &args.common, move |config, shutdown| {
        splatfleet_worker::run(config, shutdown, gpu)
    })
}
