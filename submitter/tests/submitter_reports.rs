//! Reports and the training export on a seeded dataset give the numbers worked out by hand
//! (in the comments below).

use std::collections::BTreeMap;

use splatfleet_common::{
    db::Pool,
    ledger::{self, Claim, ClaimRequest, Finish, SubmissionState, TaskInsert},
    messages::{
        ArtifactRef, AttemptRecord, ResultMsg, ResultOutcome, TaskKind, TaskMsg, ValidatorRef,
    },
    protocol::sn17::Feedback,
};
use splatfleet_submitter::{
    export::{self, TaskTypeFilter},
    reports::{self, Format, GroupBy, Report},
};
use splatfleet_tests::FreshDatabase;

const A: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
const B: &str = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty";

struct Seed<'a> {
    validator: i64,
    task: &'a str,
    kind: TaskKind,
    local: Option<f32>,
    fidelity: Option<f32>,
    validation_failed: bool,
    empty: bool,
    state: SubmissionState,
    latency_ms: u32,
    worker: &'a str,
    days_ago: f64,
    /// `gate_mode = "validator"`: the attempt's predicted validator score.
    predicted: Option<f64>,
}

impl Seed<'static> {
    /// A completed text submission of `validator` by `h/gpu0`, a tenth of a day ago with 1 s
    /// latency, nothing scored: each seed sets what it is about.
    fn base(validator: i64) -> Self {
        Seed {
            validator,
            task: "",
            kind: TaskKind::Text,
            local: None,
            fidelity: None,
            validation_failed: false,
            empty: false,
            state: SubmissionState::Completed,
            latency_ms: 1000,
            worker: "h/gpu0",
            days_ago: 0.1,
            predicted: None,
        }
    }
}

/// A validator row (`static`); its id.
async fn validator(pool: &Pool, hotkey: &str, uid: i32) -> i64 {
    pool.get()
        .await
        .expect("client")
        .query_one(
            "INSERT INTO validators (hotkey, uid, source) VALUES ($1, $2, 'static') RETURNING id",
            &[&hotkey, &uid],
        )
        .await
        .expect("validator")
        .get(0)
}

/// The submitter instance that sent every seeded submission.
const ME: &str = "test-host:1:aaaaaaaa";

fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    i64::try_from(now.as_millis()).expect("ms")
}

/// Records the seed as the roles would, through the ledger: the task pulled `days_ago` (and a
/// minute), its one attempt (when it has a local score) started 50 s and finished 40 s after
/// that, the submission claimed, sent once and finished with the validator's answer (or its
/// 403), then moved back to `days_ago` (and 20 s).
async fn seed(pool: &Pool, s: Seed<'_>) {
    let ago_ms = |secs: f64| now_ms() - ((s.days_ago * 86_400.0 + secs) * 1000.0) as i64;
    let task = TaskMsg {
        task_id: s.task.into(),
        // `insert_task` takes the validator's row id; the reference is not recorded.
        validator: ValidatorRef {
            uid: 0,
            hotkey: String::new(),
            ip: String::new(),
            port: 0,
        },
        kind: s.kind,
        prompt: format!("prompt {}", s.task),
        validation_threshold: 0.6,
        throttle_period_secs: 30,
        pulled_at_unix_ms: ago_ms(60.0),
        deadline_unix_ms: now_ms() + 3_600_000,
    };
    let row = match ledger::insert_task(pool, s.validator, &task, &"a".repeat(64))
        .await
        .expect("task")
    {
        TaskInsert::Inserted { id } => id,
        existing => panic!("{existing:?}"),
    };
    let empty_reason = s.empty.then_some("nothing passed");
    let request = ClaimRequest {
        claimed_by: Some(ME),
        lease_secs: 60.0,
        empty_reason,
        worker: Some(s.worker),
        local_score: s.local,
        result_finished_unix_ms: None,
    };
    assert_eq!(
        ledger::claim(pool, row, &request).await.expect("claim"),
        Claim::Claimed { tries: 0 }
    );
    assert_eq!(
        ledger::mark_sending(pool, row, ME, 60.0)
            .await
            .expect("sent"),
        Some(1)
    );
    let gate_metrics: BTreeMap<String, f64> = match s.predicted {
        None => BTreeMap::from([("gate_mode_geometry".into(), 1.0)]),
        Some(predicted) => BTreeMap::from([
            ("gate_mode_validator".into(), 1.0),
            ("predicted_score".into(), predicted),
            ("alignment_assumed".into(), 1.0),
        ]),
    };
    let attempts: Vec<AttemptRecord> = s
        .local
        .map(|local| AttemptRecord {
            params: BTreeMap::from([("seed".into(), "7".into())]),
            started_at_unix_ms: ago_ms(50.0),
            stage_ms: BTreeMap::from([("generate".into(), 10_000)]),
            gaussian_count: None,
            local_score: Some(local),
            gate_passed: Some(true),
            gate_metrics,
            ply: None,
            error: None,
        })
        .into_iter()
        .collect();
    let artifact = |ext: &str| ArtifactRef {
        key: format!("{ext}/aa/{}.{ext}", s.task),
        sha256: "b".repeat(64),
        bytes: 100,
    };
    let outcome = match empty_reason {
        Some(reason) => ResultOutcome::Empty {
            reason: reason.into(),
        },
        None => ResultOutcome::Ready {
            ply: artifact("ply"),
            spz: Some(artifact("spz")),
            preview: None,
            local_score: s.local.unwrap_or(0.0),
            chosen_attempt: 0,
        },
    };
    let result = ResultMsg {
        task_id: task.task_id.clone(),
        validator: task.validator.clone(),
        kind: s.kind,
        prompt: task.prompt.clone(),
        outcome,
        attempts,
        worker: s.worker.into(),
        finished_at_unix_ms: ago_ms(40.0),
    };
    let finish = match s.state {
        SubmissionState::Failed => Finish::Refused {
            status: Some(403),
            error: "rejected SubmitResults with 403: no task assigned".into(),
            latency_ms: s.latency_ms,
        },
        _ => Finish::Answered {
            feedback: s.fidelity.map(|fidelity| Feedback {
                validation_failed: s.validation_failed,
                task_fidelity_score: f64::from(fidelity),
                ..Feedback::default()
            }),
            cooldown_until: 0,
            latency_ms: s.latency_ms,
        },
    };
    assert!(ledger::finish(pool, row, ME, &result, &finish)
        .await
        .expect("finish")
        .is_some());
    ledger::seed::backdate_submission(pool, row, s.days_ago * 86_400.0 + 20.0)
        .await
        .expect("backdated");
}

fn num(value: &serde_json::Value) -> f64 {
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

#[tokio::test]
async fn reports_on_a_seeded_dataset_give_the_numbers_worked_out_by_hand() {
    let fresh = FreshDatabase::create().await;
    let pool = fresh.migrated_pool().await;
    let (a, b) = (validator(&pool, A, 0).await, validator(&pool, B, 1).await);
    let base = Seed::base(a);
    let seeds = [
        // A: accepted 0.9 (local 0.85), accepted 0.8 (0.75), penalised image (0.65), one empty.
        Seed {
            task: "a1",
            local: Some(0.85),
            fidelity: Some(0.9),
            latency_ms: 1000,
            ..base
        },
        Seed {
            task: "a2",
            local: Some(0.75),
            fidelity: Some(0.8),
            latency_ms: 2000,
            ..base
        },
        Seed {
            task: "a3",
            kind: TaskKind::Image,
            local: Some(0.65),
            fidelity: Some(0.0),
            latency_ms: 3000,
            ..base
        },
        Seed {
            task: "a4",
            empty: true,
            latency_ms: 2000,
            ..base
        },
        // Ten days old: outside --since 7d.
        Seed {
            task: "a0",
            local: Some(0.95),
            fidelity: Some(0.99),
            days_ago: 10.0,
            ..base
        },
        // B: accepted 0.7 (0.72), penalised image (0.55), validation failed (0.58), a 403.
        Seed {
            validator: b,
            task: "b1",
            local: Some(0.72),
            fidelity: Some(0.7),
            latency_ms: 500,
            worker: "h/gpu1",
            ..base
        },
        Seed {
            validator: b,
            task: "b2",
            kind: TaskKind::Image,
            local: Some(0.55),
            fidelity: Some(0.0),
            latency_ms: 1500,
            worker: "h/gpu1",
            ..base
        },
        Seed {
            validator: b,
            task: "b3",
            local: Some(0.58),
            fidelity: Some(0.0),
            validation_failed: true,
            worker: "h/gpu1",
            ..base
        },
        Seed {
            validator: b,
            task: "b4",
            state: SubmissionState::Failed,
            local: None,
            ..base
        },
    ];
    for s in seeds {
        seed(&pool, s).await;
    }

    // Acceptance by validator: A 2 of 3 (mean (0.9 + 0.8 + 0) / 3), B 1 of 3 (0.7 / 3).
    let t = reports::run_report(&pool, Report::Acceptance, "7d", GroupBy::Validator)
        .await
        .expect("acceptance");
    assert_eq!(t.rows.len(), 2, "{t:?}");
    let row_of = |key: &str| {
        (0..t.rows.len())
            .find(|&i| t.get(i, "key") == key)
            .unwrap_or_else(|| panic!("no row {key}: {t:?}"))
    };
    let (ra, rb) = (row_of(A), row_of(B));
    assert_eq!(num(t.get(ra, "submitted")), 3.0);
    assert_eq!(num(t.get(ra, "accepted")), 2.0);
    assert_eq!(num(t.get(ra, "penalised")), 1.0);
    assert_eq!(num(t.get(ra, "acceptance_rate")), 0.6667);
    assert_eq!(num(t.get(ra, "mean_score")), 0.5667);
    assert_eq!(num(t.get(rb, "accepted")), 1.0);
    assert_eq!(num(t.get(rb, "penalised")), 1.0);
    assert_eq!(num(t.get(rb, "validation_failed")), 1.0);
    assert_eq!(num(t.get(rb, "acceptance_rate")), 0.3333);
    assert_eq!(num(t.get(rb, "mean_score")), 0.2333);

    // By task type: text 3 of 4 (mean 2.4 / 4 = 0.6), image 0 of 2.
    let t = reports::run_report(&pool, Report::Acceptance, "7d", GroupBy::TaskType)
        .await
        .expect("by type");
    assert_eq!(t.get(0, "key"), "image");
    assert_eq!(num(t.get(0, "acceptance_rate")), 0.0);
    assert_eq!(num(t.get(0, "penalised")), 2.0);
    assert_eq!(t.get(1, "key"), "text");
    assert_eq!(num(t.get(1, "acceptance_rate")), 0.75);
    assert_eq!(num(t.get(1, "mean_score")), 0.6);

    // Validators: penalties, empty, failed, mean feedback delay (A (1+2+3+2)/4 s, B (0.5+1.5+1)/3 s).
    let t = reports::run_report(&pool, Report::Validators, "7d", GroupBy::Validator)
        .await
        .expect("validators");
    assert_eq!(t.get(0, "validator"), A);
    assert_eq!(num(t.get(0, "penalties")), 1.0);
    assert_eq!(num(t.get(0, "empty")), 1.0);
    assert_eq!(num(t.get(0, "failed")), 0.0);
    assert_eq!(num(t.get(0, "mean_feedback_delay_s")), 2.0);
    assert_eq!(t.get(1, "validator"), B);
    assert_eq!(num(t.get(1, "failed")), 1.0);
    assert_eq!(num(t.get(1, "mean_feedback_delay_s")), 1.0);

    // Calibration: buckets 0.5 (2: pen + vf), 0.6 (1 pen), 0.7 (2 acc), 0.8 (1 acc);
    // accepted − penalised at or above 0.8: 1, 0.7: 3, 0.6: 2, 0.5: 1 → best threshold 0.7.
    let t = reports::run_report(&pool, Report::Calibration, "7d", GroupBy::Validator)
        .await
        .expect("calibration");
    assert!((0..t.rows.len()).all(|i| t.get(i, "gate_mode") == "geometry"));
    assert!((0..t.rows.len()).all(|i| t.get(i, "mode_validator_minus_predicted").is_null()));
    let froms: Vec<f64> = (0..t.rows.len())
        .map(|i| num(t.get(i, "score_from")))
        .collect();
    assert_eq!(froms, [0.5, 0.6, 0.7, 0.8]);
    let nets: Vec<f64> = (0..4).map(|i| num(t.get(i, "net_at_or_above"))).collect();
    assert_eq!(nets, [1.0, 2.0, 3.0, 1.0]);
    assert_eq!(num(t.get(2, "acceptance_rate")), 1.0);
    assert_eq!(num(t.get(2, "mean_validator_score")), 0.75);
    assert_eq!(num(t.get(0, "best_threshold")), 0.7);

    // Throughput over one day: 3 tasks per GPU → 0.125 an hour.
    let t = reports::run_report(&pool, Report::Throughput, "1d", GroupBy::Validator)
        .await
        .expect("throughput");
    assert_eq!(t.get(0, "worker"), "h/gpu0");
    assert_eq!(num(t.get(0, "tasks")), 3.0);
    assert_eq!(num(t.get(0, "tasks_per_hour")), 0.125);
    assert_eq!(num(t.get(1, "tasks_per_hour")), 0.125);

    // Failures: 2 penalties, 1 refused submission, 1 validation failure.
    let t = reports::run_report(&pool, Report::Failures, "7d", GroupBy::Validator)
        .await
        .expect("failures");
    assert_eq!(t.get(0, "source"), "penalty");
    assert_eq!(num(t.get(0, "failures")), 2.0);
    let sources: Vec<&str> = (0..t.rows.len())
        .map(|i| t.get(i, "source").as_str().unwrap_or(""))
        .collect();
    assert_eq!(sources, ["penalty", "submission", "validation"]);
    let csv = reports::render(&t, Format::Csv);
    assert!(
        csv.starts_with("source,reason,failures,last_seen\n"),
        "{csv}"
    );

    // Export: scores ≥ 0.75 within 30 days → a1 and a2, text, with artifact keys.
    let lines = export::accepted_lines(&pool, 0.75, TaskTypeFilter::Any, "30d")
        .await
        .expect("export");
    assert_eq!(
        lines.len(),
        3,
        "a0 (0.99, 10 days old) is within 30 days: {lines:?}"
    );
    let first: serde_json::Value = serde_json::from_str(&lines[0]).expect("json line");
    assert_eq!(first["task_id"], "a0");
    assert_eq!(first["prompt"], "prompt a0");
    assert_eq!(first["artifacts"]["spz"]["key"], "spz/aa/a0.spz");
    assert_eq!(first["params"]["seed"], "7");
    let recent = export::accepted_lines(&pool, 0.75, TaskTypeFilter::Text, "7d")
        .await
        .expect("export");
    assert_eq!(recent.len(), 2);
    let images = export::accepted_lines(&pool, 0.0, TaskTypeFilter::Image, "7d")
        .await
        .expect("export");
    assert_eq!(images.len(), 2, "image tasks scored 0 are at least 0");
    let image: serde_json::Value = serde_json::from_str(&images[0]).expect("json line");
    assert!(image["prompt"].is_null());
    assert_eq!(image["image"]["prompt_sha256"], "a".repeat(64));

    // The same numbers from the operator's two entry points: the binary's `report`
    // subcommand, and psql running the SQL file directly.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = splatfleet_tests::write_config(
        dir.path(),
        &splatfleet_tests::broker_settings(),
        &fresh.settings,
        5,
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_splatfleet-submitter"))
        .arg("--config")
        .arg(&config)
        .args([
            "report",
            "acceptance",
            "--since",
            "7d",
            "--by",
            "validator",
            "--format",
            "csv",
        ])
        .output()
        .expect("submitter report runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8_lossy(&out.stdout);
    let row_a = csv
        .lines()
        .find(|l| l.starts_with(A))
        .unwrap_or_else(|| panic!("row for A in {csv}"));
    assert!(row_a.starts_with(&format!("{A},3,2,1,")), "{row_a}");
    let sql =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql/reports/acceptance.sql");
    let out = std::process::Command::new("psql")
        .args([
            "-h",
            &fresh.settings.host,
            "-p",
            &fresh.settings.port.to_string(),
            "-U",
            &fresh.settings.user,
        ])
        .args([
            "-d",
            &fresh.settings.dbname,
            "-X",
            "-A",
            "-t",
            "-F",
            ",",
            "-v",
            "since=7 days",
            "-f",
        ])
        .arg(&sql)
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let psql_a = text
        .lines()
        .find(|l| l.starts_with(A))
        .unwrap_or_else(|| panic!("row for A in {text}"));
    assert!(
        psql_a.starts_with(&format!("{A},3,2,1,0,0.6667,0.5667")),
        "{psql_a}"
    );

    pool.close();
    fresh.drop_now().await;
}

#[tokio::test]
async fn calibration_compares_predicted_scores_with_the_validators_verdicts() {
    let fresh = FreshDatabase::create().await;
    let pool = fresh.migrated_pool().await;
    let validator = validator(&pool, A, 0).await;
    let base = Seed::base(validator);
    // Validator mode (local_score = predicted there): buckets of 0.05.
    //   0.60: p5 (validation failed: neither), 0.65: p3 penalised,
    //   0.70: p1 (0.80 − 0.72 = +0.08) and p2 (0.70 − 0.74 = −0.04) accepted,
    //   1.10: p4 accepted (1.0 − min(1.10, 1) = 0).
    // Net at or above: 1.10 → 1, 0.70 → 3, 0.65 → 2, 0.60 → 2: best 0.70.
    // One geometry-mode submission (local 0.85, accepted) is calibrated on its own.
    let seeds = [
        ("p1", 0.72, 0.8, false),
        ("p2", 0.74, 0.7, false),
        ("p3", 0.66, 0.0, false),
        ("p4", 1.10, 1.0, false),
        ("p5", 0.61, 0.0, true),
    ];
    for (task, predicted, fidelity, validation_failed) in seeds {
        seed(
            &pool,
            Seed {
                task,
                local: Some(predicted as f32),
                predicted: Some(predicted),
                fidelity: Some(fidelity),
                validation_failed,
                ..base
            },
        )
        .await;
    }
    seed(
        &pool,
        Seed {
            task: "g1",
            local: Some(0.85),
            fidelity: Some(0.9),
            ..base
        },
    )
    .await;
    // A local score that is not a number is no score: left out.
    seed(
        &pool,
        Seed {
            task: "g2",
            local: Some(f32::NAN),
            fidelity: Some(0.9),
            ..base
        },
    )
    .await;

    let t = reports::run_report(&pool, Report::Calibration, "7d", GroupBy::Validator)
        .await
        .expect("calibration");
    let modes: Vec<&str> = (0..t.rows.len())
        .map(|i| t.get(i, "gate_mode").as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        modes,
        [
            "geometry",
            "validator",
            "validator",
            "validator",
            "validator"
        ],
        "{t:?}"
    );
    assert_eq!(num(t.get(0, "score_from")), 0.8);
    assert_eq!(num(t.get(0, "best_threshold")), 0.8);
    assert!(t.get(0, "mean_validator_minus_predicted").is_null());

    let froms: Vec<f64> = (1..5).map(|i| num(t.get(i, "score_from"))).collect();
    assert_eq!(froms, [0.6, 0.65, 0.7, 1.1]);
    let tos: Vec<f64> = (1..5).map(|i| num(t.get(i, "score_to"))).collect();
    assert_eq!(tos, [0.65, 0.7, 0.75, 1.15]);
    let nets: Vec<f64> = (1..5).map(|i| num(t.get(i, "net_at_or_above"))).collect();
    assert_eq!(nets, [2.0, 2.0, 3.0, 1.0]);
    assert_eq!(num(t.get(1, "submitted")), 1.0);
    assert_eq!(num(t.get(1, "penalised")), 0.0, "a validation failure");
    assert_eq!(num(t.get(2, "penalised")), 1.0);
    assert_eq!(num(t.get(3, "accepted")), 2.0);
    assert_eq!(num(t.get(3, "acceptance_rate")), 1.0);
    assert_eq!(num(t.get(3, "mean_validator_score")), 0.75);
    assert_eq!(num(t.get(3, "mean_gate_score")), 0.73);
    assert_eq!(num(t.get(3, "mean_validator_minus_predicted")), 0.02);
    assert!(
        t.get(2, "mean_validator_minus_predicted").is_null(),
        "a penalty's fidelity is no score"
    );
    assert_eq!(num(t.get(4, "mean_validator_minus_predicted")), 0.0);
    for i in 1..5 {
        assert_eq!(num(t.get(i, "best_threshold")), 0.7);
        assert_eq!(num(t.get(i, "mode_validator_minus_predicted")), 0.0133);
    }
    let table = reports::render(&t, Format::Table);
    assert!(table.contains("mean_validator_minus_predicted"), "{table}");
    pool.close();
    fresh.drop_now().await;
}
