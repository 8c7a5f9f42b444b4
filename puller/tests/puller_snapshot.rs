//! `ledger::validators::snapshot` against a fresh database: the full read covers every validator, the
//! narrow one (what the puller reads between full reads) only the hotkeys asked for, with the
//! same latest task, openness and cooldown.

use std::collections::BTreeMap;

use splatfleet_common::ledger::{
    self, seed, validators as record, ClaimRequest, Finish, TaskStatus,
};
use splatfleet_common::{
    db::Pool,
    discovery::ValidatorInfo,
    messages::{ArtifactRef, AttemptRecord, ResultMsg, ResultOutcome, TaskKind, TaskMsg},
};
use splatfleet_tests::{harness, FreshDatabase};

const HOLDING: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
const CLOSED: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";
const IDLE: &str = "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y";

async fn database() -> (FreshDatabase, Pool) {
    let db = FreshDatabase::create().await;
    let pool = db.migrated_pool().await;
    (db, pool)
}

const ME: &str = "test-host:1:aaaaaaaa";

fn validator(uid: u16, hotkey: &str) -> ValidatorInfo {
    ValidatorInfo {
        uid,
        hotkey: hotkey.into(),
        ip: "127.0.0.1".into(),
        port: 9000,
        stake: 0.0,
        validator_permit: true,
    }
}

fn task(validator: &ValidatorInfo, task_id: &str) -> TaskMsg {
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    harness::task_msg(validator, task_id, "a teapot", TaskKind::Text, now_ms)
}

/// A `queued` task as the puller records it; its row id.
async fn record_task(pool: &Pool, validator: &ValidatorInfo, task_id: &str) -> i64 {
    harness::record_queued_task(pool, validator, &task(validator, task_id)).await
}

/// A claim by this test's stand-in submitter.
fn my_claim() -> ClaimRequest<'static> {
    ClaimRequest {
        claimed_by: Some(ME),
        lease_secs: 60.0,
        empty_reason: None,
        worker: None,
        local_score: None,
        result_finished_unix_ms: None,
    }
}

/// HOLDING's latest task is open; CLOSED's was submitted and the validator answered with a
/// cooldown; IDLE has none.
async fn seed(pool: &Pool) {
    let validators: Vec<ValidatorInfo> = [HOLDING, CLOSED, IDLE]
        .iter()
        .zip(0..)
        .map(|(hotkey, uid)| validator(uid, hotkey))
        .collect();
    record::upsert_validators(pool, &validators, "static")
        .await
        .expect("validators");
    record_task(pool, &validators[0], "t-open").await;
    let done = record_task(pool, &validators[1], "t-done").await;
    let request = my_claim();
    ledger::claim(pool, done, &request).await.expect("claim");
    let msg = ResultMsg {
        task_id: "t-done".into(),
        validator: task(&validators[1], "t-done").validator,
        kind: TaskKind::Text,
        prompt: "a teapot".into(),
        outcome: ResultOutcome::Ready {
            ply: ArtifactRef {
                key: "ply/aa/a.ply".into(),
                sha256: "b".repeat(64),
                bytes: 100,
            },
            spz: None,
            preview: None,
            local_score: 0.8,
            chosen_attempt: 0,
        },
        attempts: vec![AttemptRecord::started(BTreeMap::new(), 0)],
        worker: "host-a/gpu0".into(),
        finished_at_unix_ms: 0,
    };
    let answered = Finish::Answered {
        feedback: None,
        cooldown_until: 2_000_000_000,
        latency_ms: 10,
    };
    ledger::finish(pool, done, ME, &msg, &answered)
        .await
        .expect("finish")
        .expect("ours");
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

/// A task we closed (our send failed for good) that the validator still holds reads as open
/// while its empty release is requested and not yet sent: until the submitter has sent it,
/// the validator holds the task, and the cooldown the release starts is not known, so the
/// puller must not pull there (found by the puller's release test as a cooldown violation).
#[tokio::test]
async fn a_closed_task_with_a_release_requested_reads_as_open_until_it_is_sent() {
    let (_db, pool) = database().await;
    let info = validator(7, HOLDING);
    let row = record_task(&pool, &info, "t-failed").await;
    let request = my_claim();
    ledger::claim(&pool, row, &request).await.expect("claim");
    let msg = ResultMsg {
        task_id: "t-failed".into(),
        validator: task(&info, "t-failed").validator,
        kind: TaskKind::Text,
        prompt: "a teapot".into(),
        outcome: ResultOutcome::Empty {
            reason: "nothing passed".into(),
        },
        attempts: Vec::new(),
        worker: "host-a/gpu0".into(),
        finished_at_unix_ms: 0,
    };
    let gave_up = Finish::GaveUp {
        status: None,
        error: "connection closed".into(),
    };
    ledger::finish(&pool, row, ME, &msg, &gave_up)
        .await
        .expect("finish")
        .expect("ours");
    let latest = |snaps: Vec<record::ValidatorSnapshot>| {
        snaps.into_iter().next().and_then(|s| s.latest_task)
    };
    let closed = latest(record::snapshot(&pool, None).await.expect("snapshot"));
    assert_eq!(closed, Some(("t-failed".into(), false)));

    assert!(
        ledger::request_release(&pool, row, "validator still held a closed task")
            .await
            .expect("request")
    );
    let releasing = latest(record::snapshot(&pool, None).await.expect("snapshot"));
    assert_eq!(releasing, Some(("t-failed".into(), true)));

    let taken = ledger::take_releases(&pool, "submitter-a", 60.0, 8)
        .await
        .expect("take");
    assert_eq!(taken.len(), 1);
    let released = ledger::ReleaseRecord::Released {
        cooldown_until: 2_000_000_000.0,
        feedback: None,
    };
    assert!(ledger::finish_release(&pool, row, "submitter-a", &released)
        .await
        .expect("finish release"));
    let snap = record::snapshot(&pool, None).await.expect("snapshot");
    assert_eq!(snap[0].cooldown_until, Some(2_000_000_000.0));
    assert_eq!(latest(snap), Some(("t-failed".into(), false)));
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
    seed::insert_tasks_bulk(&pool, 1500, TaskStatus::Submitted)
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

/// What the puller learns without reading Postgres every tick: the finish announces the close
/// on `ledger::closed`'s channel, in its own transaction, with the cooldown and the verdict;
/// and `recent_verdicts` (the verdict windows' seed) reads the same verdict back.
#[tokio::test]
async fn the_finish_announces_the_close_and_recent_verdicts_read_it_back() {
    let (db, pool) = database().await;
    let mut listener = ledger::closed::listen(&db.settings).await.expect("listen");
    assert_eq!(listener.drain(), Some(Vec::new()), "nothing closed yet");
    seed(&pool).await;
    let mut notices = Vec::new();
    for _ in 0..50 {
        notices.extend(listener.drain().expect("still listening"));
        if !notices.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let ids = record::upsert_validators(&pool, &[validator(1, CLOSED)], "static")
        .await
        .expect("ids");
    assert_eq!(
        notices,
        vec![ledger::closed::TaskClosed {
            validator_id: ids[CLOSED],
            cooldown_until: Some(2_000_000_000.0),
            // No feedback in the answer: no fidelity score, so penalised.
            verdict: Some(ledger::Verdict::Penalised),
            task_id: "t-done".into(),
        }]
    );
    let recent = ledger::recent_verdicts(&pool, 5).await.expect("verdicts");
    assert_eq!(
        recent.get(CLOSED).map(Vec::as_slice),
        Some([ledger::Verdict::Penalised].as_slice())
    );
    assert_eq!(recent.len(), 1, "{recent:?}");
    // A blacklisting that ended after the verdict starts the window afresh.
    pool.get()
        .await
        .expect("client")
        .execute(
            "UPDATE validator_state SET blacklisted_until = now() + interval '1 minute'
             WHERE validator_id = $1",
            &[&ids[CLOSED]],
        )
        .await
        .expect("blacklist");
    let recent = ledger::recent_verdicts(&pool, 5).await.expect("verdicts");
    assert!(recent.is_empty(), "{recent:?}");
}
