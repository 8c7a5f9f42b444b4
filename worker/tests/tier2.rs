//! The gate's tier 2 against the simulated validation service over real HTTP (CPU renderer,
//! 8 000-gaussian models, a 4-view 64×64 tier 1): a model passing both tiers is Ready with
//! the service's scores recorded (end to end through real RabbitMQ); a tier-2 score under
//! the threshold fails every attempt and the task ends Empty naming tier 2; a model failing
//! tier 1 never reaches the service; a service that is down, answers 500, garbage or nothing
//! is trusted away under `validation_unavailable = "tier1"` and fails attempts under "fail"
//! (the default);
//! an image task goes to the image endpoint with its image as `prompt_image`.
//! Metrics are read from a real Prometheus exporter.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
};

use splatfleet_common::{
    artifacts::ArtifactStore,
    config::{Config, ValidationUnavailable, WorkerSettings},
    messages::{AttemptRecord, ResultMsg, ResultOutcome, TaskKind},
};
use splatfleet_kernels::Renderer;
use splatfleet_tests::{
    delete_topology, free_addr,
    process::scrape_metrics,
    sim::{
        validation::{IMAGE_PATH, TEXT_PATH},
        GeneratorSettings, SimGenerator, SimValidation, ValidationFault, ValidationSettings,
    },
};
use splatfleet_worker::{
    generation_client::GenerationClient, validation_client::ValidationClient, Gate, TaskContext,
};
use support::{task, Harness};

mod support;

const GAUSSIANS: usize = 8_000;

/// One Prometheus exporter for this test binary, on a thread of its own so it outlives
/// every test's runtime.
fn metrics_addr() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let addr = free_addr();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("metrics runtime");
            runtime.block_on(async move {
                let served = splatfleet_common::telemetry::serve_metrics(addr, "worker");
                let _ = ready_tx.send(served.is_ok());
                std::future::pending::<()>().await;
            });
        });
        assert!(
            ready_rx.recv().expect("metrics thread answers"),
            "exporter started"
        );
        addr
    })
}

async fn scrape() -> String {
    let addr = metrics_addr();
    tokio::task::spawn_blocking(move || scrape_metrics(addr))
        .await
        .expect("scrape")
}

/// The value of the sample line starting with `series` (name and labels), if any.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

fn worker_settings(generator: &SimGenerator) -> WorkerSettings {
    WorkerSettings {
        generation_endpoints: vec![generator.url()],
        generate_timeout_ms: 5_000,
        min_budget_ms: 15_000,
        gate_views: 4,
        gate_render_size: 64,
        gate_pass_threshold: 0.3,
        validation_timeout_ms: 2_000,
        ..WorkerSettings::default()
    }
}

fn generator_settings(gaussians: usize) -> GeneratorSettings {
    GeneratorSettings {
        gaussians,
        ..GeneratorSettings::default()
    }
}

/// A worker's task context built directly (no queue), with tier 2 at `validation`.
struct Direct {
    context: TaskContext,
    _artifacts: tempfile::TempDir,
}

impl Direct {
    fn new(settings: WorkerSettings, validation: Option<&str>) -> Self {
        let artifacts = tempfile::tempdir().expect("temp dir");
        let mut config = Config::default();
        config.object_store.root = artifacts.path().to_owned();
        let context = TaskContext {
            client: GenerationClient::new(&settings.generation_endpoints[0], 1 << 30)
                .expect("generation client"),
            gate: Arc::new(Mutex::new(Gate::with_renderer(Renderer::cpu(), &settings))),
            validation: validation.map(|url| ValidationClient::new(url).expect("client")),
            store: ArtifactStore::open(&config.object_store).expect("store"),
            settings,
            worker_name: "test/gpu0".into(),
        };
        Self {
            context,
            _artifacts: artifacts,
        }
    }
}

/// A one-rung worker context whose validation service scores every model `score` (keep
/// the generator alive while the context is used).
async fn one_rung_scored(score: f64) -> (SimGenerator, SimValidation, Direct) {
    let generator = SimGenerator::start(0, generator_settings(GAUSSIANS))
        .await
        .expect("generator");
    let validation = SimValidation::start(
        0,
        ValidationSettings {
            fixed_score: Some(score),
            ..ValidationSettings::default()
        },
    )
    .await
    .expect("validation service");
    let settings = WorkerSettings {
        ladder: vec![Default::default()],
        ..worker_settings(&generator)
    };
    let direct = Direct::new(settings, Some(&validation.url()));
    (generator, validation, direct)
}

fn expect_ready(result: &ResultMsg) -> (f32, u16) {
    match &result.outcome {
        ResultOutcome::Ready {
            local_score,
            chosen_attempt,
            ..
        } => (*local_score, *chosen_attempt),
        other => panic!("expected Ready, got {other:?} after {:?}", result.attempts),
    }
}

fn expect_empty(result: &ResultMsg) -> &str {
    match &result.outcome {
        ResultOutcome::Empty { reason } => reason,
        other => panic!("expected Empty, got {other:?}"),
    }
}

fn metric(attempt: &AttemptRecord, name: &str) -> Option<f64> {
    attempt.gate_metrics.get(name).copied()
}

#[tokio::test]
async fn tier1_and_tier2_pass_ends_ready_with_the_service_scores_recorded() {
    let validation = SimValidation::start(
        0,
        ValidationSettings {
            fixed_score: Some(0.8),
            ..ValidationSettings::default()
        },
    )
    .await
    .expect("validation service");
    let harness = Harness::start_with(generator_settings(GAUSSIANS), |config| {
        config.worker.validation_endpoints = vec![validation.url()];
    })
    .await;
    harness
        .send(&task("t-tier2-pass", TaskKind::Text, "a red teapot"))
        .await;
    let result = harness.next_result().await;

    let (local_score, chosen) = expect_ready(&result);
    assert_eq!(chosen, 0);
    assert_eq!(local_score, 0.8, "the Ready score is tier 2's");
    let attempt = &result.attempts[0];
    assert_eq!(attempt.gate_passed, Some(true));
    assert_eq!(attempt.local_score, Some(0.8));
    assert_eq!(metric(attempt, "tier2_score"), Some(0.8));
    assert_eq!(metric(attempt, "tier2_iqa"), Some(0.8));
    assert_eq!(metric(attempt, "tier2_alignment_score"), Some(0.9));
    assert_eq!(metric(attempt, "tier2_ssim"), Some(0.9));
    assert_eq!(metric(attempt, "tier2_lpips"), Some(0.1));
    assert_eq!(metric(attempt, "tier2_threshold"), Some(0.6));
    let tier1 = metric(attempt, "local_score").expect("tier-1 score kept");
    assert!(tier1 >= 0.3, "{tier1}");
    assert!(attempt.stage_ms.contains_key("validate"), "{attempt:?}");
    assert_eq!(metric(attempt, "tier2_unavailable"), None);

    let received = validation.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, TEXT_PATH);
    assert_eq!(received[0].prompt.as_deref(), Some("a red teapot"));
    assert_eq!(received[0].compression, Some(2), "SPZ");
    assert_eq!(received[0].gaussians, Some(GAUSSIANS), "the SPZ decodes");

    let (broker, config) = harness.stop().await;
    broker.close().await;
    delete_topology(&config.broker).await;
}

#[tokio::test]
async fn tier2_score_under_the_threshold_fails_every_attempt_and_ends_empty() {
    let _ = metrics_addr();
    let generator = SimGenerator::start(0, generator_settings(GAUSSIANS))
        .await
        .expect("generator");
    let validation = SimValidation::start(
        0,
        ValidationSettings {
            fixed_score: Some(0.4),
            ..ValidationSettings::default()
        },
    )
    .await
    .expect("validation service");
    let direct = Direct::new(worker_settings(&generator), Some(&validation.url()));
    let result = direct
        .context
        .process(&task("t-tier2-low", TaskKind::Text, "a chair"))
        .await
        .expect("answered");
    let reason = expect_empty(&result);
    assert!(
        reason.contains("tier 2") && reason.contains("0.400") && reason.contains("0.600"),
        "{reason}"
    );
    assert_eq!(result.attempts.len(), 3, "every rung tried");
    for attempt in &result.attempts {
        assert_eq!(attempt.gate_passed, Some(false));
        assert_eq!(attempt.local_score, Some(0.4), "tier 2's score");
        assert_eq!(metric(attempt, "tier2_score"), Some(0.4));
        let error = attempt.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("score 0.400 under the threshold 0.600"),
            "{error}"
        );
    }
    assert_eq!(validation.requests(), 3);
    let metrics = scrape().await;
    let failed = sample(
        &metrics,
        "splatfleet_worker_gate_decisions_total{reason=\"tier2_failed\"}",
    );
    assert!(failed.is_some_and(|n| n >= 3.0), "{metrics}");
    let validate = sample(
        &metrics,
        "splatfleet_worker_stage_seconds_count{stage=\"validate\"}",
    );
    assert!(validate.is_some_and(|n| n >= 3.0), "{metrics}");
}

#[tokio::test]
async fn a_task_announcing_a_higher_threshold_is_held_to_it() {
    let (_generator, _validation, direct) = one_rung_scored(0.65).await;
    let mut strict = task("t-tier2-strict", TaskKind::Text, "a vase");
    strict.validation_threshold = 0.7;
    let result = direct.context.process(&strict).await.expect("answered");
    let reason = expect_empty(&result);
    assert!(
        reason.contains("0.650") && reason.contains("0.700"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_model_failing_tier1_never_reaches_the_validation_service() {
    let generator = SimGenerator::start(0, generator_settings(5_000))
        .await
        .expect("generator");
    let validation = SimValidation::start(0, ValidationSettings::default())
        .await
        .expect("validation service");
    let settings = WorkerSettings {
        ladder: vec![Default::default(), Default::default()],
        ..worker_settings(&generator)
    };
    let direct = Direct::new(settings, Some(&validation.url()));
    let result = direct
        .context
        .process(&task("t-tier1-fail", TaskKind::Text, "a sparse lamp"))
        .await
        .expect("answered");
    let reason = expect_empty(&result);
    assert!(reason.contains("hard zero"), "{reason}");
    assert_eq!(result.attempts.len(), 2);
    for attempt in &result.attempts {
        assert!(!attempt.stage_ms.contains_key("validate"), "{attempt:?}");
        assert_eq!(metric(attempt, "tier2_score"), None);
    }
    assert_eq!(validation.requests(), 0, "tier 2 never called");
}

/// How the validation service is unavailable in one case.
enum Outage {
    Down,
    Fault(ValidationFault),
}

/// Runs one task against an unavailable service under `policy`; the result and the requests
/// the service saw (0 when it is down).
async fn with_outage(outage: Outage, policy: ValidationUnavailable, id: &str) -> (ResultMsg, u64) {
    let generator = SimGenerator::start(0, generator_settings(GAUSSIANS))
        .await
        .expect("generator");
    let service = match outage {
        Outage::Down => None,
        Outage::Fault(fault) => Some(
            SimValidation::start(
                0,
                ValidationSettings {
                    fault,
                    ..ValidationSettings::default()
                },
            )
            .await
            .expect("validation service"),
        ),
    };
    let url = match &service {
        Some(service) => service.url(),
        // Nobody listens there: connection refused.
        None => format!("http://{}", free_addr()),
    };
    let settings = WorkerSettings {
        // One rung: every attempt meets the same outage, and the test stays fast.
        ladder: vec![Default::default()],
        validation_timeout_ms: 300,
        validation_unavailable: policy,
        ..worker_settings(&generator)
    };
    let direct = Direct::new(settings, Some(&url));
    let result = direct
        .context
        .process(&task(id, TaskKind::Text, "a blue mug"))
        .await
        .expect("answered");
    (result, service.map_or(0, |s| s.requests()))
}

fn outages() -> Vec<(&'static str, Outage, &'static str)> {
    vec![
        ("down", Outage::Down, "could not be reached"),
        (
            "500",
            Outage::Fault(ValidationFault::Error500),
            "answered HTTP 500",
        ),
        (
            "garbage",
            Outage::Fault(ValidationFault::Garbage),
            "not its JSON",
        ),
        (
            "no-score",
            Outage::Fault(ValidationFault::NoScore),
            "without a `score`",
        ),
        (
            "hang",
            Outage::Fault(ValidationFault::Hang),
            "did not answer within",
        ),
    ]
}

#[tokio::test]
async fn an_unavailable_service_is_trusted_away_under_the_tier1_policy() {
    let _ = metrics_addr();
    for (name, outage, _) in outages() {
        let expect_requests = u64::from(!matches!(outage, Outage::Down));
        let (result, requests) = with_outage(
            outage,
            ValidationUnavailable::Tier1,
            &format!("t-trust-{name}"),
        )
        .await;
        let (local_score, chosen) = expect_ready(&result);
        assert_eq!(chosen, 0, "{name}");
        let attempt = &result.attempts[0];
        assert_eq!(attempt.gate_passed, Some(true), "{name}");
        assert_eq!(metric(attempt, "tier2_unavailable"), Some(1.0), "{name}");
        assert_eq!(metric(attempt, "tier2_score"), None, "{name}");
        assert_eq!(attempt.error, None, "{name}");
        let tier1 = metric(attempt, "local_score").expect("tier-1 score");
        assert!((f64::from(local_score) - tier1).abs() < 1e-6, "{name}");
        assert!(attempt.stage_ms.contains_key("validate"), "{name}");
        assert_eq!(requests, expect_requests, "{name}");
    }
    let metrics = scrape().await;
    let unavailable = sample(
        &metrics,
        "splatfleet_worker_gate_decisions_total{reason=\"tier2_unavailable\"}",
    );
    assert!(unavailable.is_some_and(|n| n >= 5.0), "{metrics}");
    for kind in ["connect", "status", "malformed", "missing_score", "timeout"] {
        let series = format!("splatfleet_worker_validation_errors_total{{kind=\"{kind}\"}}");
        assert!(sample(&metrics, &series).is_some(), "{series}: {metrics}");
    }
}

#[tokio::test]
async fn an_unavailable_service_fails_attempts_under_the_fail_policy_the_default() {
    // Fail closed unless the operator says otherwise: an outage must not quietly let through
    // what tier 2 exists to stop.
    let default = WorkerSettings::default().validation_unavailable;
    assert_eq!(default, ValidationUnavailable::Fail);
    for (name, outage, expected) in outages() {
        let expect_requests = u64::from(!matches!(outage, Outage::Down));
        let (result, requests) = with_outage(outage, default, &format!("t-fail-{name}")).await;
        let reason = expect_empty(&result);
        assert!(
            reason.contains("tier 2 unavailable") && reason.contains(expected),
            "{name}: {reason}"
        );
        assert_eq!(result.attempts.len(), 1, "{name}");
        for attempt in &result.attempts {
            assert_eq!(attempt.gate_passed, Some(false), "{name}");
            assert_eq!(metric(attempt, "tier2_unavailable"), Some(1.0), "{name}");
        }
        assert_eq!(requests, expect_requests, "{name}");
    }
}

/// A 32×32 PNG, base64: an image prompt the worker accepts.
fn png_prompt() -> String {
    use base64::Engine as _;
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, 32, 32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("PNG header");
        let pixels: Vec<u8> = (0..32 * 32 * 3).map(|i| (i % 251) as u8).collect();
        writer.write_image_data(&pixels).expect("PNG data");
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn an_image_task_is_validated_at_the_image_endpoint_with_its_image() {
    let (_generator, validation, direct) = one_rung_scored(0.75).await;
    let prompt = png_prompt();
    let image = task("t-tier2-image", TaskKind::Image, &prompt);
    let result = direct.context.process(&image).await.expect("answered");
    let (local_score, _) = expect_ready(&result);
    assert_eq!(local_score, 0.75);
    let received = validation.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, IMAGE_PATH);
    assert_eq!(
        received[0].prompt.as_deref(),
        Some(prompt.as_str()),
        "prompt_image"
    );
    assert_eq!(received[0].gaussians, Some(GAUSSIANS));
}
