//! The puller against 20 simulated validators (scaled time), real RabbitMQ and PostgreSQL,
//! and two stand-in workers: no cooldown violations, never two tasks in flight per
//! validator, the ready backlog within consumers × backlog_factor, blacklisted validators
//! never pulled, and lost tasks released with an empty submission.

mod support;

use std::{collections::HashMap, sync::atomic::Ordering, time::Duration};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_validators_two_workers_no_violations_one_task_each_backlog_bounded() {
    let mut world = support::start(20).await;
    let by_uid = world.validators[3].hotkey.clone();
    let by_hotkey = world.validators[7].hotkey.clone();
    // Blacklist uid 3 and validator 7's hotkey, keep the backlog factor at 1.
    world.edit_config(|config| {
        config.puller.blacklist_uids = vec![3];
        config.puller.blacklist_hotkeys = vec![by_hotkey.clone()];
        config.puller.backlog_factor = 1.0;
    });

    // Workers slower than the validators can hand out tasks, so the backlog limit binds.
    let work = world
        .spawn_stand_in_workers(2, Duration::from_millis(700), Some(6))
        .await;
    let max_ready = world.spawn_backlog_sampler().await;
    let submitter = support::spawn_submitter(&world);
    let puller = support::spawn_puller(&world);

    // Watch Postgres: never two open tasks for one validator.
    let mut most_open = 0i64;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(14) {
        let row = world
            .pool
            .get()
            .await
            .expect("db")
            .query_one(
                "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM tasks
                 WHERE status NOT IN ('submitted', 'submitted_empty', 'expired', 'failed')
                 GROUP BY validator_id) open",
                &[],
            )
            .await
            .expect("query");
        most_open = most_open.max(row.get(0));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let config = world.config();
    let metrics = splatfleet_tests::process::scrape_metrics(
        splatfleet_common::role::Role::Puller.metrics_addr(&config),
    );
    let submitter_metrics = splatfleet_tests::process::scrape_metrics(
        splatfleet_common::role::Role::Submitter.metrics_addr(&config),
    );
    drop(puller);
    drop(submitter);
    for expected in [
        r#"outcome="task""#,
        "splatfleet_puller_pull_to_publish_seconds_bucket",
        r#"splatfleet_puller_validators_excluded{reason="config_blacklist"} 2"#,
        "splatfleet_puller_validators_eligible 18",
        "splatfleet_puller_task_consumers 2",
        r#"splatfleet_puller_releases_requested_total{validator="#,
    ] {
        assert!(
            metrics.contains(expected),
            "/metrics lacks {expected}:\n{metrics}"
        );
    }
    assert!(
        submitter_metrics.contains(r#"outcome="released"}"#)
            && submitter_metrics.contains("splatfleet_submitter_releases_total"),
        "the submitter's /metrics show no release:\n{submitter_metrics}"
    );
    assert!(!metrics.contains("splatfleet_puller_cooldown_violations_total{"));

    assert_eq!(
        world.violations(),
        Vec::<serde_json::Value>::new(),
        "cooldown violations"
    );
    assert!(most_open <= 1, "{most_open} open tasks for one validator");
    let ready = max_ready.load(Ordering::SeqCst);
    assert!(
        ready <= 2,
        "ready backlog reached {ready} with 2 consumers and factor 1"
    );

    let pulls = world.events("pull");
    let blacklisted: Vec<u64> = [&by_uid, &by_hotkey]
        .iter()
        .filter_map(|h| world.uid_of(h))
        .collect();
    assert!(
        pulls
            .iter()
            .all(|p| !blacklisted.contains(&p["validator_uid"].as_u64().unwrap_or(999))),
        "a blacklisted validator was pulled"
    );
    let same = pulls.iter().filter(|p| p["outcome"] == "same").count();
    assert_eq!(same, 0, "the puller pulled a validator whose task it held");

    let deliveries = work.deliveries.lock().expect("work log").clone();
    assert!(
        deliveries.values().all(|&n| n == 1),
        "a task was delivered twice: {deliveries:?}"
    );
    let submitted = work.submitted.load(Ordering::SeqCst);
    assert!(submitted >= 10, "only {submitted} tasks submitted");

    // Dropped tasks came back to the validators as empty submissions: the puller requested
    // each release, the submitter signed and sent it.
    let dropped = work.dropped.load(Ordering::SeqCst);
    assert!(dropped >= 1, "no task was dropped; the run was too short");
    let client = world.pool.get().await.expect("db");
    let released: i64 = client
        .query_one(
            "SELECT count(*) FROM tasks t JOIN submissions s ON s.task_id = t.id
             WHERE t.status = 'submitted_empty' AND s.empty AND s.state = 'completed'",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert!(
        released >= 1,
        "no lost task was released ({dropped} dropped)"
    );
    let empty_verdicts = world
        .events("verdict")
        .iter()
        .filter(|v| v["outcome"] == "empty")
        .count();
    assert_eq!(empty_verdicts as i64, released);
    eprintln!(
        "pulls {}, submitted {submitted}, dropped {dropped}, released {released}, max ready {ready}",
        pulls.len()
    );

    // Each exclusion is recorded with its reason.
    let reasons: HashMap<String, String> = client
        .query(
            "SELECT v.hotkey, e.reason FROM validator_exclusions e
             JOIN validators v ON v.id = e.validator_id WHERE e.ended_at IS NULL",
            &[],
        )
        .await
        .expect("query")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        reasons.get(&by_uid).map(String::as_str),
        Some("config_blacklist")
    );
    assert_eq!(
        reasons.get(&by_hotkey).map(String::as_str),
        Some("config_blacklist")
    );
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    drop(client);
    world.finish().await;
}

/// The puller learns closed tasks from the submitter's notices (`ledger::closed`). When its
/// listening connection dies it reads Postgres every tick instead, keeps pulling, and listens
/// again at the next housekeeping round; no validator waits on a missed notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_listening_connection_falls_back_and_listens_again() {
    let mut world = support::start(6).await;
    let _work = world
        .spawn_stand_in_workers(2, Duration::from_millis(100), None)
        .await;
    let _submitter = support::spawn_submitter(&world);
    let _puller = support::spawn_puller(&world);
    let completed = "SELECT count(*) FROM submissions WHERE state = 'completed' AND NOT empty";
    let at_least = |want: i64| {
        let pool = world.pool.clone();
        async move {
            for _ in 0..200 {
                let client = pool.get().await.expect("db");
                let n: i64 = client
                    .query_one(completed, &[])
                    .await
                    .expect("count")
                    .get(0);
                if n >= want {
                    return n;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("fewer than {want} submissions completed in 20 s");
        }
    };
    at_least(6).await;
    let metrics_addr = splatfleet_common::role::Role::Puller.metrics_addr(&world.config());
    let listening = "splatfleet_puller_close_notices_listening 1";
    assert!(splatfleet_tests::process::scrape_metrics(metrics_addr).contains(listening));

    let client = world.pool.get().await.expect("db");
    let killed = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query = 'LISTEN splatfleet_task_closed'",
            &[],
        )
        .await
        .expect("terminate");
    assert_eq!(killed.len(), 1, "one listening connection");
    let before: i64 = client
        .query_one(completed, &[])
        .await
        .expect("count")
        .get(0);
    // Tasks keep closing and validators keep being pulled, notices or not.
    at_least(before + 6).await;
    let mut relistened = false;
    for _ in 0..40 {
        if splatfleet_tests::process::scrape_metrics(metrics_addr).contains(listening) {
            relistened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(relistened, "the puller did not listen again");
    let listeners: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND query = 'LISTEN splatfleet_task_closed'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(listeners, 1);
    assert_eq!(world.violations(), Vec::<serde_json::Value>::new());
    drop(client);
    world.finish().await;
}
