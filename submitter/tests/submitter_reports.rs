//! Reports and the training export on a seeded dataset give the numbers worked out by hand
//! (in the comments below).

use splatfleet_common::db::Pool;
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
    kind: &'a str,
    local: Option<f32>,
    fidelity: Option<f32>,
    validation_failed: bool,
    empty: bool,
    state: &'a str,
    latency_ms: i32,
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
            kind: "text",
            local: None,
            fidelity: None,
            validation_failed: false,
            empty: false,
            state: "completed",
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

async fn seed(pool: &Pool, s: Seed<'_>) {
    let client = pool.get().await.expect("client");
    let task: i64 = client
        .query_one(
            "INSERT INTO tasks (validator_id, task_id, kind, prompt_sha256, prompt, pulled_at,
                                deadline_at, validation_threshold, throttle_period_s, status)
             VALUES ($1, $2, $3, repeat('a', 64), 'prompt ' || $2,
                     now() - make_interval(days => 0, secs => $4::float8 * 86400 + 60),
                     now() + interval '1 hour', 0.6, 30, 'submitted')
             RETURNING id",
            &[&s.validator, &s.task, &s.kind, &s.days_ago],
        )
        .await
        .expect("task")
        .get(0);
    let attempt: Option<i64> = match s.local {
        Some(local) => Some(
            client
                .query_one(
                    "INSERT INTO attempts (task_id, attempt_no, worker, params, started_at,
                                           finished_at, local_score, spz_key, spz_sha256,
                                           gate_mode, predicted_score, alignment_assumed)
                     VALUES ($1, 1, $2, '{\"seed\": \"7\"}',
                             now() - make_interval(secs => $3::float8 * 86400 + 50),
                             now() - make_interval(secs => $3::float8 * 86400 + 40), $4,
                             'spz/aa/' || $5 || '.spz', repeat('b', 64),
                             CASE WHEN $6::float8 IS NULL THEN 'geometry' ELSE 'validator' END,
                             $6, $6 IS NOT NULL)
                     RETURNING id",
                    &[&task, &s.worker, &s.days_ago, &local, &s.task, &s.predicted],
                )
                .await
                .expect("attempt")
                .get(0),
        ),
        None => None,
    };
    client
        .execute(
            "INSERT INTO submissions (task_id, attempt_id, state, empty, empty_reason, tries,
                                      created_at, sent_at, completed_at, http_status, error,
                                      latency_ms, validation_failed, task_fidelity_score)
             VALUES ($1, $2, $3, $4, CASE WHEN $4 THEN 'nothing passed' END, 1,
                     now() - make_interval(secs => $5::float8 * 86400 + 30),
                     now() - make_interval(secs => $5::float8 * 86400 + 30),
                     CASE WHEN $3 = 'completed'
                          THEN now() - make_interval(secs => $5::float8 * 86400 + 20) END,
                     CASE WHEN $3 = 'completed' THEN 200 ELSE 403 END,
                     CASE WHEN $3 = 'failed'
                          THEN 'rejected SubmitResults with 403: no task assigned' END,
                     $6, $7, $8)",
            &[
                &task,
                &attempt,
                &s.state,
                &s.empty,
                &s.days_ago,
                &s.latency_ms,
                &s.validation_failed,
                &s.fidelity,
            ],
        )
        .await
        .expect("submission");
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
            kind: "image",
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
            kind: "image",
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
            state: "failed",
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
