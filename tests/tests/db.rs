//! The database layer against a real PostgreSQL: migrations apply exactly once under
//! concurrency, an edited applied migration is refused, and an unreachable server fails fast
//! with a message naming it. Each test creates its own database.

use std::time::{Duration, Instant};

use splatfleet_common::db::{self, embedded_migrations, Migration, MigrationError};
use splatfleet_tests::{database_settings, FreshDatabase};

#[tokio::test]
async fn two_concurrent_runners_apply_each_migration_exactly_once() {
    let fresh = FreshDatabase::create().await;
    let (a, b) = (
        db::connect(&fresh.settings).await.expect("pool a"),
        db::connect(&fresh.settings).await.expect("pool b"),
    );
    let (ra, rb) = tokio::join!(
        db::migrate(&a, embedded_migrations()),
        db::migrate(&b, embedded_migrations())
    );
    let (ra, rb) = (ra.expect("runner a"), rb.expect("runner b"));
    let all: Vec<u32> = embedded_migrations().iter().map(|m| m.version).collect();
    let mut applied = [ra.applied.clone(), rb.applied.clone()].concat();
    applied.sort_unstable();
    assert_eq!(
        applied, all,
        "each migration applied by exactly one runner: {ra:?} {rb:?}"
    );
    assert!(
        ra.applied.is_empty() || rb.applied.is_empty(),
        "one runner applies, the other finds them done"
    );

    let client = a.get().await.expect("connection");
    let rows = client
        .query(
            "SELECT version, checksum FROM splatfleet_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("query");
    assert_eq!(rows.len(), all.len());
    for (row, migration) in rows.iter().zip(embedded_migrations()) {
        assert_eq!(row.get::<_, String>(1), migration.checksum());
    }
    // The schema is really there.
    for table in [
        "validators",
        "validator_state",
        "tasks",
        "attempts",
        "submissions",
        "config_versions",
    ] {
        let exists: bool = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&format!("public.{table}")],
            )
            .await
            .expect("query")
            .get(0);
        assert!(exists, "table {table} exists");
    }
    // A third run changes nothing.
    let again = db::migrate(&a, embedded_migrations())
        .await
        .expect("re-run");
    assert!(again.applied.is_empty());
    assert_eq!(again.already_applied, all);
    drop(client);
    a.close();
    b.close();
    fresh.drop_now().await;
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused() {
    let fresh = FreshDatabase::create().await;
    let pool = db::connect(&fresh.settings).await.expect("pool");
    db::migrate(&pool, embedded_migrations())
        .await
        .expect("first run");

    let mut edited: Vec<Migration> = embedded_migrations().to_vec();
    edited[0].sql = "CREATE TABLE sneaky (id int);";
    let err = db::migrate(&pool, &edited)
        .await
        .expect_err("edited migration must be refused");
    assert!(
        matches!(err, MigrationError::Changed { version: 1, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("changed after it was applied"),
        "{err}"
    );
    let client = pool.get().await.expect("connection");
    let sneaky: bool = client
        .query_one("SELECT to_regclass('public.sneaky') IS NOT NULL", &[])
        .await
        .expect("query")
        .get(0);
    assert!(!sneaky, "nothing from the refused run was applied");
    drop(client);
    pool.close();
    fresh.drop_now().await;
}

#[tokio::test]
async fn a_database_newer_than_the_binary_is_refused() {
    let fresh = FreshDatabase::create().await;
    let pool = db::connect(&fresh.settings).await.expect("pool");
    let mut newer: Vec<Migration> = embedded_migrations().to_vec();
    newer.push(Migration {
        version: 9999,
        name: "future",
        sql: "CREATE TABLE future (id int);",
    });
    db::migrate(&pool, &newer)
        .await
        .expect("newer binary migrates");
    let err = db::migrate(&pool, embedded_migrations())
        .await
        .expect_err("older binary must refuse");
    assert!(
        matches!(err, MigrationError::Unknown { version: 9999, .. }),
        "{err:?}"
    );
    pool.close();
    fresh.drop_now().await;
}

#[tokio::test]
async fn a_failing_migration_applies_nothing_and_names_itself() {
    let fresh = FreshDatabase::create().await;
    let pool = db::connect(&fresh.settings).await.expect("pool");
    let mut broken: Vec<Migration> = embedded_migrations().to_vec();
    broken.push(Migration {
        version: 9000,
        name: "broken",
        sql: "CREATE TABLE ok_part (id int); SELEC oops;",
    });
    let err = db::migrate(&pool, &broken)
        .await
        .expect_err("broken migration fails");
    assert!(
        matches!(err, MigrationError::Failed { version: 9000, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("9000 (broken)"), "{err}");
    let client = pool.get().await.expect("connection");
    let tasks: bool = client
        .query_one("SELECT to_regclass('public.tasks') IS NOT NULL", &[])
        .await
        .expect("query")
        .get(0);
    assert!(!tasks, "the whole batch rolled back");
    drop(client);
    pool.close();
    fresh.drop_now().await;
}

#[tokio::test]
async fn unreachable_postgres_fails_fast_with_a_clear_message() {
    let mut settings = database_settings("splatfleet");
    settings.host = "127.0.0.1".into();
    settings.port = splatfleet_tests::free_addr().port();
    settings.create_timeout_ms = 2_000;
    let started = Instant::now();
    let err = db::connect(&settings)
        .await
        .expect_err("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let message = err.to_string();
    assert!(
        message.contains("cannot connect to PostgreSQL"),
        "{message}"
    );
    assert!(
        message.contains(&format!("127.0.0.1:{}", settings.port)),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_database_is_named_in_the_error() {
    let settings = database_settings("splatfleet_no_such_database");
    let err = db::connect(&settings)
        .await
        .expect_err("database does not exist");
    let message = err.to_string();
    assert!(message.contains("splatfleet_no_such_database"), "{message}");
}
