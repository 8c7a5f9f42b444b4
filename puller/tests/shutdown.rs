//! The puller binary starts against real RabbitMQ and PostgreSQL and stops cleanly on SIGTERM.

use std::path::Path;

use splatfleet_common::role::Role;

#[tokio::test]
async fn puller_exits_zero_within_drain_timeout_after_sigterm() {
    let db = splatfleet_tests::check_role_stops_on_sigterm(
        Path::new(env!("CARGO_BIN_EXE_splatfleet-puller")),
        Role::Puller,
    )
    .await;
    db.drop_now().await;
}
