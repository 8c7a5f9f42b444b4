//! The worker binary starts against real RabbitMQ and stops cleanly on SIGTERM.

use std::path::Path;

use splatfleet_common::role::Role;

#[tokio::test]
async fn worker_exits_zero_within_drain_timeout_after_sigterm() {
    let db = splatfleet_tests::check_role_stops_on_sigterm(
        Path::new(env!("CARGO_BIN_EXE_splatfleet-worker")),
        Role::Worker,
    )
    .await;
    db.drop_now().await;
}
