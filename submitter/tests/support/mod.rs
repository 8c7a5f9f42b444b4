//! What only the submitter's tests need of the harness (`splatfleet_tests::harness`): the
//! submitter's settings for them and the submitter running in this process; the tests stand
//! in for the puller (pull and record tasks) and the worker (store models, publish results)
//! through the harness.

// Each test file is its own crate and uses only a part of this.
#![allow(dead_code)]

use splatfleet_common::config::Config;
use splatfleet_tests::harness::World;

/// `count` simulated validators and the submitter running.
pub async fn start(count: u16) -> World {
    start_with(count, |_| {}).await
}

/// [`start`], with `configure` applied to the submitter's config after its test settings.
pub async fn start_with(count: u16, configure: impl FnOnce(&mut Config)) -> World {
    let mut world = World::builder("submitter")
        .validators(count)
        .seed(8)
        .start(|config| {
            submitter_config(config);
            configure(config);
        })
        .await;
    world.run_in_process(splatfleet_submitter::run);
    world
}

/// Sends retried fast, and PostgreSQL waits short enough for a test to see its outage.
fn submitter_config(config: &mut Config) {
    let submitter = &mut config.submitter;
    submitter.submit_timeout_secs = 10;
    submitter.retry_initial_ms = 200;
    submitter.retry_max_ms = 800;
    submitter.db_retry_initial_ms = 100;
    submitter.db_retry_max_ms = 500;
    config.database.wait_timeout_ms = 1000;
    config.database.create_timeout_ms = 1000;
}
