//! `splatfleet-submitter`: signs and submits results to validators and records everything;
//! `report` and `export` read those records.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use splatfleet_common::{
    bittensor::load_hotkey,
    role::{self, CommonArgs, Role},
};
use splatfleet_submitter::cli::{self, ExportArgs, ReportArgs};

/// Submit finished results to SN17 validators and record every step in PostgreSQL.
#[derive(Debug, Parser)]
#[command(version = splatfleet_common::telemetry::VERSION)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume results and submit them (the default).
    Run,
    /// Print a report: acceptance, validators, calibration, throughput or failures.
    Report(ReportArgs),
    /// Write accepted generations as JSON lines, for training.
    Export(ExportArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match &args.command {
        // A hotkey that cannot be loaded exits 78 at start, before any result is taken.
        None | Some(Command::Run) => role::run_prepared(
            Role::Submitter,
            &args.common,
            |config| load_hotkey(&config.wallet).map(drop),
            |config, (), shutdown| splatfleet_submitter::run(config, shutdown),
        ),
        Some(Command::Report(report)) => cli::report(&args.common.config, report),
        Some(Command::Export(export)) => cli::export(&args.common.config, export),
    }
}
