//! `splatfleet-submitter`: signs and submits results to validators and records everything.

use std::process::ExitCode;

use clap::Parser;
use splatfleet_common::role::{self, CommonArgs, Role};

/// Submit finished results to SN17 validators and record every step in PostgreSQL.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    role::run(Role::Submitter, &args.common, splatfleet_submitter::run)
}
