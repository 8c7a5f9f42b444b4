//! What only the puller's tests need of the harness (`splatfleet_tests::harness`): the
//! fleet's config for them and the real puller and submitter binaries (the submitter is the
//! one role that signs: it sends the stand-in workers' results and the releases the puller
//! requests).

// Each test file is its own crate and uses only a part of this.
#![allow(dead_code)]

use std::path::Path;

use splatfleet_common::config::Config;
use splatfleet_tests::{fleet::role_binary, harness::World, process::RoleProcess};

/// `count` simulated validators and the fleet's config for the puller's tests.
pub async fn start(count: u16) -> World {
    World::builder("puller")
        .validators(count)
        .seed(17)
        .start(fleet_config)
        .await
}

/// The real puller, ready.
pub fn spawn_puller(world: &World) -> RoleProcess {
    world.spawn_role(Path::new(env!("CARGO_BIN_EXE_splatfleet-puller")))
}

/// The real submitter (built by `cargo test --workspace`), ready.
pub fn spawn_submitter(world: &World) -> RoleProcess {
    let binary = role_binary("splatfleet-submitter").unwrap_or_else(|err| panic!("{err}"));
    world.spawn_role(&binary)
}

/// Fast ticks and backoffs, a 3 s task deadline with 1 s of grace, and the simulated
/// validators' scaled 5 s cooldown assumed after a release they no longer held.
fn fleet_config(config: &mut Config) {
    config.log.level = "info,splatfleet_puller=debug".into();
    let puller = &mut config.puller;
    puller.tick_ms = 50;
    puller.cooldown_margin_ms = 300;
    puller.backoff_initial_ms = 500;
    puller.backoff_max_ms = 4000;
    puller.pull_timeout_ms = 2000;
    puller.task_deadline_secs = 3;
    puller.lost_task_grace_secs = 1;
    let submitter = &mut config.submitter;
    submitter.release_poll_ms = 100;
    submitter.assumed_cooldown_secs = 5;
    submitter.retry_initial_ms = 200;
    submitter.retry_max_ms = 1000;
    submitter.submit_timeout_secs = 5;
}
