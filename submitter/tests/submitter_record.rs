//! The submitter's one-statement steps against a fresh database: `claim_first` claims only
//! a known task nobody has a row for (and leaves every existing row as it was), and `finish`
//! writes nothing at all, attempts included, once the row is no longer ours.

use std::collections::BTreeMap;

use splatfleet_common::ledger::{self, Claim, ClaimRequest, Finish, FirstClaim, TaskStatus};
use splatfleet_common::{
    db::Pool,
    messages::{ArtifactRef, AttemptRecord, ResultMsg, ResultOutcome, TaskKind, ValidatorRef},
    protocol::sn17::Feedback,
};
use splatfleet_tests::harness::record_task_row;
use splatfleet_tests::FreshDatabase;

const HOTKEY: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
const ME: &str = "test-host:1:aaaaaaaa";
const OTHER: &str = "other:2:bbbbbbbb";

/// `attempt_no, params.seed, started_at, finished_at, gate_passed` of an attempt row.
type AttemptSummary = (i16, Option<String>, f64, f64, Option<bool>);

async fn database() -> (FreshDatabase, Pool) {
    let db = FreshDatabase::create().await;
    let pool = db.migrated_pool().await;
    (db, pool)
}

fn result(task_id: &str) -> ResultMsg {
    let ply = ArtifactRef {
        key: "ply/aa/a.ply".into(),
        sha256: "b".repeat(64),
        bytes: 100,
    };
    let attempt = |seed: &str, ply: Option<ArtifactRef>| AttemptRecord {
        params: BTreeMap::from([("seed".into(), seed.into())]),
        started_at_unix_ms: 1_700_000_000_000,
        stage_ms: BTreeMap::from([("generate".into(), 1_500)]),
        gaussian_count: Some(20_000),
        local_score: Some(0.7),
        gate_passed: Some(ply.is_some()),
        gate_metrics: BTreeMap::from([("coverage".into(), 0.5)]),
        ply,
        error: None,
    };
    ResultMsg {
        task_id: task_id.into(),
        validator: ValidatorRef {
            uid: 1,
            hotkey: HOTKEY.into(),
            ip: "127.0.0.1".into(),
            port: 9000,
        },
        kind: TaskKind::Text,
        prompt: "a teapot".into(),
        outcome: ResultOutcome::Ready {
            ply: ply.clone(),
            spz: None,
            preview: None,
            local_score: 0.8,
            chosen_attempt: 1,
        },
        attempts: vec![attempt("1", None), attempt("2", Some(ply))],
        worker: "host-a/gpu3".into(),
        finished_at_unix_ms: 1_700_000_010_000,
    }
}

fn request() -> ClaimRequest<'static> {
    ClaimRequest {
        claimed_by: Some(ME),
        lease_secs: 60.0,
        empty_reason: None,
        worker: Some("host-a/gpu3"),
        local_score: Some(0.8),
        result_finished_unix_ms: Some(1_700_000_010_000),
    }
}

fn answered() -> Finish {
    Finish::Answered {
        feedback: Some(Feedback {
            task_fidelity_score: 0.9,
            ..Feedback::default()
        }),
        cooldown_until: 1_900_000_000,
        latency_ms: 12,
    }
}

/// `state, tries, claimed_by, sent_at IS NOT NULL, lease_until > now()` of the task's row.
async fn submission(
    pool: &Pool,
    task_row: i64,
) -> Option<(String, i16, Option<String>, bool, bool)> {
    pool.get()
        .await
        .expect("client")
        .query_opt(
            "SELECT state, tries, claimed_by, sent_at IS NOT NULL,
                    coalesce(lease_until > now(), false)
             FROM submissions WHERE task_id = $1",
            &[&task_row],
        )
        .await
        .expect("submission")
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
}

/// Another submitter claims the task's row; its lease runs out `lease_secs` from now (already,
/// when negative).
async fn hold(pool: &Pool, task_row: i64, claimed_by: &str, lease_secs: f64) {
    let request = ClaimRequest {
        claimed_by: Some(claimed_by),
        lease_secs,
        ..request()
    };
    assert_eq!(
        ledger::claim(pool, task_row, &request)
            .await
            .expect("other's row"),
        Claim::Claimed { tries: 0 }
    );
}

async fn count(pool: &Pool, query: &str) -> i64 {
    pool.get()
        .await
        .expect("client")
        .query_one(query, &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test]
async fn claim_first_claims_a_known_unclaimed_task_marked_as_sent_once() {
    let (db, pool) = database().await;
    let row = record_task_row(&pool, HOTKEY, "t-1").await;
    let claimed = ledger::claim_first(&pool, HOTKEY, "t-1", &request())
        .await
        .expect("claim");
    let FirstClaim::Claimed(task) = claimed else {
        panic!("not claimed: {claimed:?}");
    };
    assert_eq!(task.id, row);
    assert_eq!(task.status, TaskStatus::Queued);
    assert!(task.deadline_secs > task.pulled_at_secs);
    assert_eq!(
        submission(&pool, row).await,
        Some(("sending".into(), 1, Some(ME.into()), true, true))
    );
    // The same delivery again (a retried statement, a redelivery): the row is left alone.
    let again = ledger::claim_first(&pool, HOTKEY, "t-1", &request())
        .await
        .expect("claim");
    assert_eq!(again, FirstClaim::Existing(task));
    assert_eq!(
        submission(&pool, row).await,
        Some(("sending".into(), 1, Some(ME.into()), true, true))
    );
    pool.close();
    db.drop_now().await;
}

#[tokio::test]
async fn claim_first_writes_nothing_for_an_unknown_task_or_an_existing_row() {
    let (db, pool) = database().await;
    assert_eq!(
        ledger::claim_first(&pool, HOTKEY, "never-pulled", &request())
            .await
            .expect("claim"),
        FirstClaim::UnknownTask
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM submissions").await, 0);
    // The puller is releasing this one (claimed_by NULL); another submitter holds that one.
    let releasing = record_task_row(&pool, HOTKEY, "t-released").await;
    let held = record_task_row(&pool, HOTKEY, "t-held").await;
    assert!(ledger::request_release(&pool, releasing, "lost")
        .await
        .expect("release row"));
    hold(&pool, held, OTHER, -1.0).await;
    for (task_id, row, claimed_by, tries) in [
        ("t-released", releasing, None, 0),
        ("t-held", held, Some(OTHER.to_owned()), 0),
    ] {
        let first = ledger::claim_first(&pool, HOTKEY, task_id, &request())
            .await
            .expect("claim");
        assert!(
            matches!(first, FirstClaim::Existing(ref t) if t.id == row),
            "{first:?}"
        );
        let (state, now_tries, now_claimed_by, _, _) = submission(&pool, row).await.expect("row");
        assert_eq!(
            (state.as_str(), now_tries, now_claimed_by),
            ("sending", tries, claimed_by)
        );
    }
    pool.close();
    db.drop_now().await;
}

#[tokio::test]
async fn finish_records_everything_once_and_nothing_when_the_row_is_not_ours() {
    let (db, pool) = database().await;
    let row = record_task_row(&pool, HOTKEY, "t-1").await;
    let msg = result("t-1");
    // Someone else holds the row (one send counted, an hour's lease): nothing is written,
    // not even the attempts.
    hold(&pool, row, OTHER, 3600.0).await;
    assert_eq!(
        ledger::mark_sending(&pool, row, OTHER, 3600.0)
            .await
            .expect("send counted"),
        Some(1)
    );
    assert!(ledger::finish(&pool, row, ME, &msg, &answered())
        .await
        .expect("finish")
        .is_none());
    assert_eq!(count(&pool, "SELECT count(*) FROM attempts").await, 0);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM tasks WHERE status = 'queued'").await,
        1
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM validator_state WHERE cooldown_until IS NULL"
        )
        .await,
        1
    );

    // Ours: attempts, submission with feedback and chosen attempt, task, cooldown. The other
    // submitter lets its lease go and we take the row over.
    ledger::release_lease(&pool, row, OTHER)
        .await
        .expect("lease let go");
    assert_eq!(
        ledger::claim(&pool, row, &request())
            .await
            .expect("ours now"),
        Claim::Claimed { tries: 1 }
    );
    assert!(ledger::finish(&pool, row, ME, &msg, &answered())
        .await
        .expect("finish")
        .is_some());
    let client = pool.get().await.expect("client");
    let got = client
        .query_one(
            "SELECT s.state, s.http_status, s.latency_ms, s.task_fidelity_score,
                    extract(epoch FROM s.cooldown_until)::float8, s.lease_until IS NULL,
                    a.attempt_no, a.ply_key, a.gpu, t.status, t.status_reason,
                    extract(epoch FROM vs.cooldown_until)::float8
             FROM submissions s JOIN attempts a ON a.id = s.attempt_id
             JOIN tasks t ON t.id = s.task_id
             JOIN validator_state vs ON vs.validator_id = t.validator_id
             WHERE s.task_id = $1",
            &[&row],
        )
        .await
        .expect("finished row");
    assert_eq!(got.get::<_, String>(0), "completed");
    assert_eq!(got.get::<_, Option<i16>>(1), Some(200));
    assert_eq!(got.get::<_, Option<i32>>(2), Some(12));
    assert_eq!(got.get::<_, Option<f32>>(3), Some(0.9));
    assert_eq!(got.get::<_, f64>(4), 1_900_000_000.0);
    assert!(got.get::<_, bool>(5));
    assert_eq!(got.get::<_, i16>(6), 2, "the chosen attempt is linked");
    assert_eq!(
        got.get::<_, Option<String>>(7).as_deref(),
        Some("ply/aa/a.ply")
    );
    assert_eq!(got.get::<_, Option<i16>>(8), Some(3));
    assert_eq!(got.get::<_, String>(9), "submitted");
    assert_eq!(
        got.get::<_, Option<String>>(10).as_deref(),
        Some("submitted")
    );
    assert_eq!(got.get::<_, f64>(11), 1_900_000_000.0);
    let attempts = client
        .query(
            "SELECT attempt_no, (params->>'seed'), extract(epoch FROM started_at)::float8,
                    extract(epoch FROM finished_at)::float8, gate_passed
             FROM attempts ORDER BY id",
            &[],
        )
        .await
        .expect("attempts");
    let attempts: Vec<AttemptSummary> = attempts
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (
                1,
                Some("1".into()),
                1_700_000_000.0,
                1_700_000_001.5,
                Some(false)
            ),
            (
                2,
                Some("2".into()),
                1_700_000_000.0,
                1_700_000_001.5,
                Some(true)
            ),
        ]
    );
    drop(client);
    // Finished: a second finish (a redelivery that somehow got here) writes nothing.
    assert!(ledger::finish(&pool, row, ME, &msg, &answered())
        .await
        .expect("finish")
        .is_none());
    assert_eq!(count(&pool, "SELECT count(*) FROM attempts").await, 2);
    // A late copy of the result only records attempts, idempotently.
    ledger::record_late(&pool, row, &msg)
        .await
        .expect("late result");
    assert_eq!(count(&pool, "SELECT count(*) FROM attempts").await, 2);
    pool.close();
    db.drop_now().await;
}
