//! `gate_mode = "validator"` at start-up and end to end: a worker whose model files are missing
//! or differ from their pins refuses to start (exit 78, the file and its download named); a
//! worker with tiny random-weight models gates real tasks with them, records the prediction on
//! every attempt, keeps the best predicted attempt, and climbs past sparse passes.

mod support;

use std::{process::Command, time::Duration};

use splatfleet_common::{
    config::{Config, GateMode, WorkerSettings},
    messages::{ResultMsg, ResultOutcome, TaskKind},
};
use splatfleet_tests::sim::scorer_models::write_tiny_models;
use support::{ready, small_models, task, Harness};

fn worker() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_splatfleet-worker"));
    command
        .env_remove("SPLATFLEET_CONFIG")
        .env_remove("RUST_LOG");
    command
}

/// Runs the worker with `config` and returns (exit status, stderr); it must stop by itself.
fn run_to_exit(config: &std::path::Path) -> (Option<i32>, String) {
    let mut child = worker()
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the worker");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the worker") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the worker started without its models");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    (status.code(), stderr)
}

#[test]
fn a_validator_mode_worker_without_its_model_files_exits_78_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let config = dir.path().join("worker.toml");
    let scorer = format!(
        "[worker]\ngate_mode = \"validator\"\nrequire_gpu = false\n[worker.scorer]\nmodels_dir = {:?}\n",
        models.display().to_string()
    );
    std::fs::write(&config, &scorer).expect("config");
    let (code, stderr) = run_to_exit(&config);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("splatfleet-worker: "), "{stderr}");
    assert!(stderr.contains("worker.scorer.models_dir"), "{stderr}");
    assert!(stderr.contains("is missing"), "{stderr}");
    assert!(stderr.contains("download it with"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Every file present, one pinned to another digest: refused, that file named.
    write_tiny_models(&models, 3).expect("tiny models");
    let pinned = format!(
        "{scorer}sha256 = {{ \"alex.pth\" = \"{}\" }}\n",
        "f".repeat(64)
    );
    std::fs::write(&config, pinned).expect("config");
    let (code, stderr) = run_to_exit(&config);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("alex.pth"), "{stderr}");
    assert!(stderr.contains("sha256"), "{stderr}");
}

/// Runs task `id` through a worker in validator gate mode with tiny random-weight models,
/// every valid model passing (threshold 0, no margin), `adjust` applied to its settings
/// last; returns the result and the worker's config.
async fn run_validator(id: &str, adjust: impl FnOnce(&mut WorkerSettings)) -> (ResultMsg, Config) {
    let models = tempfile::tempdir().expect("temp dir");
    write_tiny_models(models.path(), 5).expect("tiny models");
    let dir = models.path().to_owned();
    let harness = Harness::start_with(small_models(Default::default()), move |config| {
        let worker = &mut config.worker;
        worker.gate_mode = GateMode::Validator;
        worker.scorer.models_dir = dir;
        worker.scorer.threshold = Some(0.0);
        worker.scorer.margin = 0.0;
        adjust(worker);
    })
    .await;
    harness
        .run_task(&task(id, TaskKind::Text, "a wooden boat"))
        .await
}

#[tokio::test]
async fn a_validator_mode_worker_gates_tasks_with_the_predicted_score() {
    // Three rungs, every valid model passes (threshold 0), all sparse (8 k gaussians < the
    // default 150 k): the ladder climbs to the end and submits the best prediction.
    let (result, config) = run_validator("t-validator", |_| {}).await;
    let (chosen_attempt, local_score) = ready(&result);
    assert_eq!(
        result.attempts.len(),
        config.worker.ladder.len(),
        "{:?}",
        result.attempts
    );
    let predicted: Vec<f64> = result
        .attempts
        .iter()
        .map(|a| a.gate_metrics["predicted_score"])
        .collect();
    for attempt in &result.attempts {
        assert_eq!(attempt.gate_passed, Some(true), "{attempt:?}");
        assert_eq!(attempt.gate_metrics.get("gate_mode_validator"), Some(&1.0));
        assert_eq!(attempt.gate_metrics.get("sparse_candidate"), Some(&1.0));
        // The task's prompt alignment is measured, never assumed.
        assert_eq!(attempt.gate_metrics.get("alignment_assumed"), Some(&0.0));
        assert_eq!(
            attempt.gate_metrics.get("alignment_unmeasurable"),
            Some(&0.0)
        );
        assert!(
            attempt.gate_metrics["predicted_alignment"] > 0.3,
            "{attempt:?}"
        );
        let predicted = attempt.gate_metrics["predicted_score"];
        assert_eq!(attempt.local_score, Some(predicted as f32));
        // Every step of the gate is timed (the GPU adds "upload").
        for stage in ["generate", "decode", "render", "score", "align", "gate"] {
            assert!(attempt.stage_ms.contains_key(stage), "{stage}: {attempt:?}");
        }
    }
    let best = predicted.iter().enumerate().fold(
        0,
        |best, (i, &p)| if p > predicted[best] { i } else { best },
    );
    assert_eq!(usize::from(chosen_attempt), best, "{predicted:?}");
    assert_eq!(local_score, predicted[best] as f32);
    assert!(result.attempts[best].ply.is_some());
    // The chosen model's SPZ encoding and its storing are timed too.
    for stage in ["spz", "store"] {
        assert!(
            result.attempts[best].stage_ms.contains_key(stage),
            "{stage}"
        );
    }
}

#[test]
fn a_worker_that_requires_a_gpu_exits_78_where_there_is_none() {
    if splatfleet_kernels::Renderer::new(0).is_gpu() {
        eprintln!("skipped: this machine has a usable GPU 0");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("worker.toml");
    // No key at all: requiring a GPU is the default.
    std::fs::write(&config, "[worker]\n").expect("config");
    let (code, stderr) = run_to_exit(&config);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("worker.require_gpu"), "{stderr}");
    assert!(stderr.contains("GPU 0 cannot be used"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn a_pass_with_enough_gaussians_stops_the_ladder() {
    let (result, _) = run_validator("t-validator-stop", |worker| {
        worker.scorer.sparse_below_gaussians = 1_000;
    })
    .await;
    assert!(
        matches!(
            result.outcome,
            ResultOutcome::Ready {
                chosen_attempt: 0,
                ..
            }
        ),
        "{:?}",
        result.outcome
    );
    assert_eq!(result.attempts.len(), 1, "{:?}", result.attempts);
    assert!(!result.attempts[0]
        .gate_metrics
        .contains_key("sparse_candidate"));
}
