//! `splatfleet-puller`: pulls tasks from validators and queues them for the workers.

use std::process::ExitCode;

use clap::Parser;
use splatfleet_common::{
    bittensor::load_hotkey,
    role::{self, CommonArgs, Role},
};

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
        // A discovery that can yield nobody, or a hotkey that cannot be loaded, is the
        // operator's to fix: exit 78 at start, not when the first validator is found.
        |config| {
            config
                .discovery
                .check_can_yield_validators()
                .map_err(|err| err.to_string())?;
            load_hotkey(&config.wallet)
                .map(drop)
                .map_err(|err| err.to_string())
        },
        |config, (), shutdown| splatfleet_puller::run(config, shutdown),
    )
}
