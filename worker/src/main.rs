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
}

fn main() -> ExitCode {
    let args = Args::parse();
    role::run(Role::Worker, &args.common, splatfleet_worker::run)
}
