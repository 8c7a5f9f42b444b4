//! `splatfleet-puller`: pulls tasks from validators and queues them for the workers.

use std::process::ExitCode;

use clap::Parser;
use splatfleet_common::role::{self, CommonArgs, Role};

/// Pull 3D-generation tasks from SN17 validators and queue them for the GPU workers.
#[derive(Debug, Parser)]
#[command(version = splatfleet_common::telemetry::VERSION)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    role::run_prepared(
        Role::Puller,
        &args.common,
        |config| config.discovery.check_can_yield_validators(),
        |config, (), shutdown| splatfleet_puller::run(config, shutdown),
    )
}
