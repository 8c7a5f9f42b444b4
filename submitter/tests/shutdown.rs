//! The submitter binary applies the migrations, serves metrics, and stops cleanly on SIGTERM.

use std::path::Path;

use splatfleet_common::{db, role::Role};

#[tokio::test]
async fn submitter_migrates_then_exits_zero_within_drain_timeout_after_sigterm() {
    let fresh = splatfleet_tests::check_role_stops_on_sigterm(
        Path::new(env!("CARGO_BIN_EXE_splatfleet-submitter")),
        Role::Submitter,
    )
    .await;
    let pool = db::connect(&fresh.settings)
        .await
        .expect("fresh database reachable");
    let client = pool.get().await.expect("connection");
    let applied: i64 = client
        .query_one("SELECT count(*) FROM splatfleet_migrations", &[])
        .await
        .expect("migrations table exists")
        .get(0);
    assert_eq!(applied, db::embedded_migrations().len() as i64);
    drop(client);
    pool.close();
    fresh.drop_now().await;
}
