//! `ledger::validators::snapshot` against a fresh database: the full read covers every validator, the
//! narrow one (what the puller reads between full reads) only the hotkeys asked for, with the
//! same latest task, openness and cooldown.

use splatfleet_common::db::Pool;
use splatfleet_common::ledger::validators as record;
use splatfleet_tests::FreshDatabase;

const HOLDING: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
const CLOSED: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
const IDLE: &str = "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y";

async fn database() -> (FreshDatabase, Pool) {
    let db = FreshDatabase::create().await;
    let pool = db.migrated_pool().await;
    (db, pool)
}

async fn seed(pool: &Pool) {
    let client = pool.get().await.expect("client");
    for (uid, hotkey) in [HOLDING, CLOSED, IDLE].iter().enumerate() {
        client
            .execute(
                "INSERT INTO validators (hotkey, uid, ip, port, source)
                 VALUES ($1, $2, '127.0.0.1', 9000, 'static')",
                &[hotkey, &(uid as i32)],
            )
            .await
            .expect("validator");
    }
    for (hotkey, task_id, status) in [
        (HOLDING, "t-open", "queued"),
        (CLOSED, "t-done", "submitted"),
    ] {
        client
            .execute(
                "INSERT INTO tasks (validator_id, task_id, kind, prompt_sha256, prompt, pulled_at,
                                    deadline_at, validation_threshold, throttle_period_s, status)
                 SELECT id, $2, 'text', repeat('a', 64), 'a teapot', now(),
                        now() + interval '5 minutes', 0.6, 30, $3
                 FROM validators WHERE hotkey = $1",
                &[&hotkey, &task_id, &status],
            )
            .await
            .expect("task");
    }
    client
        .execute(
            "INSERT INTO validator_state (validator_id, cooldown_until)
             SELECT id, to_timestamp(2000000000) FROM validators WHERE hotkey = $1",
            &[&CLOSED],
        )
        .await
        .expect("cooldown");
}

#[tokio::test]
async fn the_narrow_snapshot_reads_only_the_validators_asked_for_and_agrees_with_the_full_one() {
    let (_db, pool) = database().await;
    seed(&pool).await;

    let full = record::snapshot(&pool, None).await.expect("full snapshot");
    assert_eq!(full.len(), 3);
    let of = |hotkey: &str| full.iter().find(|s| s.hotkey == hotkey).cloned();
    assert_eq!(
        of(HOLDING).and_then(|s| s.latest_task),
        Some(("t-open".into(), true))
    );
    let closed = of(CLOSED).expect("closed validator");
    assert_eq!(closed.latest_task, Some(("t-done".into(), false)));
    assert_eq!(closed.cooldown_until, Some(2_000_000_000.0));
    assert_eq!(of(IDLE).and_then(|s| s.latest_task), None);

    let asked = [HOLDING.to_owned(), CLOSED.to_owned()];
    let narrow = record::snapshot(&pool, Some(&asked))
        .await
        .expect("narrow snapshot");
    let mut hotkeys: Vec<&str> = narrow.iter().map(|s| s.hotkey.as_str()).collect();
    hotkeys.sort_unstable();
    let mut expected = vec![HOLDING, CLOSED];
    expected.sort_unstable();
    assert_eq!(hotkeys, expected);
    for snap in &narrow {
        assert_eq!(Some(snap), full.iter().find(|s| s.hotkey == snap.hotkey));
    }
    assert!(record::snapshot(&pool, Some(&[]))
        .await
        .expect("empty")
        .is_empty());
}

/// Every `Plan` node of an `EXPLAIN (FORMAT JSON)` tree.
fn plan_nodes(plan: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
    out.push(plan.clone());
    if let Some(children) = plan.get("Plans").and_then(|p| p.as_array()) {
        for child in children {
            plan_nodes(child, out);
        }
    }
}

#[tokio::test]
async fn the_snapshot_reads_one_task_row_per_validator_however_many_tasks_there_are() {
    let (_db, pool) = database().await;
    seed(&pool).await;
    let client = pool.get().await.expect("client");
    // A few thousand tasks: the old (validator_id, pulled_at) index made Postgres read and
    // sort all of a validator's tasks for its latest one.
    client
        .execute(
            "INSERT INTO tasks (validator_id, task_id, kind, prompt_sha256, prompt, pulled_at,
                                deadline_at, validation_threshold, throttle_period_s, status)
             SELECT v.id, 'bulk-' || v.id || '-' || g, 'text', repeat('a', 64), 'a teapot',
                    now() - make_interval(secs => g), now(), 0.6, 30, 'submitted'
             FROM validators v, generate_series(1, 1500) g",
            &[],
        )
        .await
        .expect("bulk tasks");
    client.batch_execute("ANALYZE").await.expect("analyze");
    let explain = format!(
        "EXPLAIN (ANALYZE, FORMAT JSON) {}",
        splatfleet_common::ledger::validators::SNAPSHOT_SQL
    );
    let none: Option<Vec<String>> = None;
    let row = client.query_one(&explain, &[&none]).await.expect("explain");
    let plan: serde_json::Value = row.get(0);
    let mut nodes = Vec::new();
    plan_nodes(&plan[0]["Plan"], &mut nodes);
    let tasks: Vec<&serde_json::Value> = nodes
        .iter()
        .filter(|n| n["Relation Name"] == "tasks")
        .collect();
    assert!(!tasks.is_empty(), "no scan of tasks in {plan}");
    for scan in &tasks {
        assert_eq!(scan["Index Name"], "tasks_validator_latest_idx", "{scan}");
        let rows = scan["Actual Rows"].as_f64().unwrap_or(f64::MAX);
        assert!(rows <= 1.0, "{rows} task rows read per validator: {scan}");
    }
    assert!(
        nodes.iter().all(|n| n["Node Type"] != "Sort"),
        "the snapshot sorts: {plan}"
    );
    // The latest task is still the one the seed made last for each validator.
    let snapshot = splatfleet_common::ledger::validators::snapshot(&pool, None)
        .await
        .expect("snapshot");
    let holding = snapshot
        .iter()
        .find(|s| s.hotkey == HOLDING)
        .expect("holding");
    assert_eq!(holding.latest_task, Some(("t-open".into(), true)));
}
