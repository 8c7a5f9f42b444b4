//! The puller binary starts against real RabbitMQ and PostgreSQL and stops cleanly on SIGTERM.

use std::path::Path;

use splatfleet_common::role::Role;

#[tokio::test]
async fn puller_exits_zero_within_drain_timeout_after_sigterm() {
    // The shared test config keeps the default static discovery with no validators, which
    // the puller refuses at start (exit 78). A subtensor source that cannot be reached is
    // accepted: the puller starts, its discovery fails, and it idles until the signal. The
    // child inherits this environment; this binary runs no other test.
    std::env::set_var("SPLATFLEET__DISCOVERY__SOURCE", "subtensor");
    std::env::set_var("SPLATFLEET__DISCOVERY__SUBTENSOR_URL", "http://127.0.0.1:9");
    let db = splatfleet_tests::check_role_stops_on_sigterm(
        Path::new(env!("CARGO_BIN_EXE_splatfleet-puller")),
        Role::Puller,
    )
    .await;
    db.drop_now().await;
}
