//! `worker.gate_mode`: `geometry` (formerly `full`) renders and scores; `validity_only`
//! (benchmarks, diagnostics) applies only the validator's hard-zero rules and SN17's PLY
//! rules, renders nothing and passes a valid model at local score 1. (`validator` mode:
//! `gate_validator.rs`.)

use splatfleet_common::{
    config::{Config, GateMode, WorkerSettings},
    splat::{read_ply, write_ply, PlyDecoded, PlyLimits},
};
use splatfleet_kernels::Renderer;
use splatfleet_tests::sim::models;
use splatfleet_worker::Gate;

fn decoded(gaussians: usize) -> PlyDecoded {
    let ply = write_ply(&models::object(gaussians, 7)).expect("write PLY");
    read_ply(&ply, &PlyLimits::default()).expect("read PLY")
}

fn settings(mode: GateMode) -> WorkerSettings {
    WorkerSettings {
        gate_mode: mode,
        gate_views: 4,
        gate_render_size: 64,
        ..WorkerSettings::default()
    }
}

#[test]
fn gate_mode_defaults_to_geometry_and_parses_validity_only() {
    assert_eq!(Config::default().worker.gate_mode, GateMode::Geometry);
    let parse = |text: &str| {
        Config::from_toml_with_env(text, std::path::Path::new("t.toml"), std::iter::empty())
    };
    let config = parse("[worker]\ngate_mode = \"validity_only\"\n").expect("validity_only");
    assert_eq!(config.worker.gate_mode, GateMode::ValidityOnly);
    let config = parse("[worker]\ngate_mode = \"full\"\n").expect("full");
    assert_eq!(config.worker.gate_mode, GateMode::Geometry);
    let err = parse("[worker]\ngate_mode = \"fast\"\n").expect_err("unknown mode");
    assert!(err.to_string().contains("worker.gate_mode"), "{err}");
}

#[test]
fn validity_only_passes_a_valid_model_without_rendering() {
    let mut gate = Gate::with_renderer(Renderer::cpu(), &settings(GateMode::ValidityOnly));
    let verdict = gate.evaluate(&decoded(8_000), None);
    assert!(verdict.passed, "{}", verdict.reasons_text());
    assert_eq!(verdict.local_score, 1.0);
    assert!(verdict.views.is_none(), "nothing rendered");
    assert_eq!(verdict.metrics.get("validity_only"), Some(&1.0));
    assert!(!verdict.metrics.contains_key("mean_coverage"));
}

#[test]
fn validity_only_still_applies_the_hard_zero_rules() {
    let mut gate = Gate::with_renderer(Renderer::cpu(), &settings(GateMode::ValidityOnly));
    let verdict = gate.evaluate(&decoded(3_000), None);
    assert!(!verdict.passed);
    assert_eq!(verdict.local_score, 0.0);
    assert_eq!(
        verdict.reasons.first().map(|r| r.category()),
        Some("hard_zero:too_few_gaussians")
    );
}

#[test]
fn geometry_mode_renders_and_measures() {
    let mut gate = Gate::with_renderer(Renderer::cpu(), &settings(GateMode::Geometry));
    let verdict = gate.evaluate(&decoded(8_000), None);
    assert!(verdict.metrics.contains_key("mean_coverage"));
    assert_eq!(verdict.metrics.get("gate_mode_geometry"), Some(&1.0));
    assert!(!verdict.metrics.contains_key("validity_only"));
    assert!(!verdict.metrics.contains_key("predicted_score"));
}
