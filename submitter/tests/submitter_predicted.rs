//! Migration 0006 and the predicted-score columns: the submitter fills `attempts.gate_mode`,
//! `predicted_*` and `alignment_assumed` from each attempt's gate metrics, in the one
//! statement that inserts attempts (both its callers: a late result and a finished one).

use std::collections::BTreeMap;

use splatfleet_common::ledger::{self, ClaimRequest, Finish, FirstClaim};
use splatfleet_common::{
    db::Pool,
    messages::{ArtifactRef, AttemptRecord, ResultMsg, ResultOutcome, TaskKind, ValidatorRef},
    protocol::sn17::Feedback,
};
use splatfleet_tests::harness::record_task_row;
use splatfleet_tests::FreshDatabase;

const HOTKEY: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
const ME: &str = "test-host:1:aaaaaaaa";

fn attempt(metrics: &[(&str, f64)], ply: Option<ArtifactRef>) -> AttemptRecord {
    AttemptRecord {
        params: BTreeMap::from([("seed".into(), "1".into())]),
        started_at_unix_ms: 1_700_000_000_000,
        stage_ms: BTreeMap::from([("generate".into(), 1_500)]),
        gaussian_count: Some(200_000),
        local_score: Some(0.7),
        gate_passed: Some(ply.is_some()),
        gate_metrics: metrics.iter().map(|(k, v)| ((*k).into(), *v)).collect(),
        ply,
        error: None,
    }
}

/// Four attempts: never gated; geometry; validator with a NaN LPIPS part; validator, chosen.
fn result(task_id: &str) -> ResultMsg {
    let ply = ArtifactRef {
        key: "ply/aa/a.ply".into(),
        sha256: "b".repeat(64),
        bytes: 100,
    };
    let validator = |score: f64, lpips: f64| {
        vec![
            ("gate_mode_validator", 1.0),
            ("predicted_score", score),
            ("predicted_iqa", 0.7),
            ("predicted_alignment", 1.0),
            ("predicted_ssim", 0.9),
            ("predicted_lpips", lpips),
            ("alignment_assumed", 1.0),
            ("predicted_view_quality_00", 0.69),
        ]
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
            local_score: 0.81,
            chosen_attempt: 3,
        },
        attempts: vec![
            attempt(&[], None),
            attempt(&[("gate_mode_geometry", 1.0), ("local_score", 0.7)], None),
            attempt(&validator(0.52, f64::NAN), None),
            attempt(&validator(0.81, 0.3), Some(ply)),
        ],
        worker: "host-a/gpu0".into(),
        finished_at_unix_ms: 1_700_000_010_000,
    }
}

type Row = (
    i16,
    Option<String>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<bool>,
);

async fn rows(pool: &Pool, task_row: i64) -> Vec<Row> {
    pool.get()
        .await
        .expect("client")
        .query(
            "SELECT attempt_no, gate_mode, predicted_score, predicted_iqa, predicted_alignment,
                    predicted_ssim, predicted_lpips, alignment_assumed
             FROM attempts WHERE task_id = $1 ORDER BY attempt_no",
            &[&task_row],
        )
        .await
        .expect("attempts")
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
            )
        })
        .collect()
}

fn expected() -> Vec<Row> {
    let v = Some("validator".to_owned());
    vec![
        (1, None, None, None, None, None, None, None),
        (
            2,
            Some("geometry".into()),
            None,
            None,
            None,
            None,
            None,
            None,
        ),
        (
            3,
            v.clone(),
            Some(0.52),
            Some(0.7),
            Some(1.0),
            Some(0.9),
            None,
            Some(true),
        ),
        (
            4,
            v,
            Some(0.81),
            Some(0.7),
            Some(1.0),
            Some(0.9),
            Some(0.3),
            Some(true),
        ),
    ]
}

#[tokio::test]
async fn predicted_columns_are_filled_from_the_gate_metrics() {
    let db = FreshDatabase::create().await;
    let pool = db.migrated_pool().await;

    // A late result: attempts only.
    let late = record_task_row(&pool, HOTKEY, "t-late").await;
    ledger::record_late(&pool, late, &result("t-late"))
        .await
        .expect("late result");
    assert_eq!(rows(&pool, late).await, expected());

    // A finished submission: the same statement inside finish's.
    let row = record_task_row(&pool, HOTKEY, "t-done").await;
    let msg = result("t-done");
    let claim = ledger::claim_first(
        &pool,
        HOTKEY,
        "t-done",
        &ClaimRequest {
            claimed_by: Some(ME),
            lease_secs: 60.0,
            empty_reason: None,
            worker: Some("host-a/gpu0"),
            local_score: Some(0.81),
            result_finished_unix_ms: Some(1_700_000_010_000),
        },
    )
    .await
    .expect("claim");
    assert!(matches!(claim, FirstClaim::Claimed(_)), "{claim:?}");
    let finish = Finish::Answered {
        feedback: Some(Feedback {
            task_fidelity_score: 0.9,
            ..Feedback::default()
        }),
        cooldown_until: 1_900_000_000,
        latency_ms: 12,
    };
    assert!(ledger::finish(&pool, row, ME, &msg, &finish)
        .await
        .expect("finish")
        .is_some());
    assert_eq!(rows(&pool, row).await, expected());
    let chosen: f64 = pool
        .get()
        .await
        .expect("client")
        .query_one(
            "SELECT a.predicted_score FROM submissions s JOIN attempts a ON a.id = s.attempt_id
             WHERE s.task_id = $1",
            &[&row],
        )
        .await
        .expect("chosen attempt")
        .get(0);
    assert_eq!(chosen, 0.81);
    pool.close();
    db.drop_now().await;
}
