//! `gate_mode = "validator"` with tiny random-weight models (`splatfleet-sim models --tiny`'s
//! writer): the gate predicts the validator's score on its renders, passes a model iff the
//! prediction reaches threshold + margin (thresholds picked from measured scores, so nothing
//! passes by accident), records every part, measures the task's prompt alignment (text and
//! image; a prompt it cannot read scores 0 with the reason, as the validator does), and still
//! applies the hard-zero rules first.

use splatfleet_common::{
    config::{GateMode, WorkerSettings},
    splat::{read_ply, write_ply, PlyDecoded, PlyLimits, Splat},
};
use splatfleet_kernels::{scorer::Prompt, Renderer};
use splatfleet_tests::sim::{models, scorer_models::write_tiny_models};
use splatfleet_worker::{
    gate::GateReason,
    models::{load_models, ValidatorModels},
    Gate,
};

const PROMPT: Option<Prompt> = Some(Prompt::Text("a red chair"));

fn decoded(splat: &Splat) -> PlyDecoded {
    let ply = write_ply(splat).expect("write PLY");
    read_ply(&ply, &PlyLimits::default()).expect("read PLY")
}

fn settings(models_dir: &std::path::Path, threshold: f64, margin: f64) -> WorkerSettings {
    let mut settings = WorkerSettings {
        gate_mode: GateMode::Validator,
        gate_views: 4,
        gate_render_size: 64,
        ..WorkerSettings::default()
    };
    settings.scorer.models_dir = models_dir.to_owned();
    settings.scorer.threshold = Some(threshold);
    settings.scorer.margin = margin;
    settings
}

fn tiny_models() -> (tempfile::TempDir, ValidatorModels) {
    let dir = tempfile::tempdir().expect("temp dir");
    write_tiny_models(dir.path(), 17).expect("write tiny models");
    let settings = settings(dir.path(), 0.0, 0.0);
    let models = load_models(&settings.scorer).expect("tiny models load");
    (dir, models)
}

fn gate(dir: &std::path::Path, models: &ValidatorModels, threshold: f64, margin: f64) -> Gate {
    Gate::with_scorer(
        Renderer::cpu(),
        &settings(dir, threshold, margin),
        models.clone(),
    )
    .expect("scorer on the CPU")
}

#[test]
fn the_gate_passes_iff_the_predicted_score_reaches_threshold_plus_margin() {
    let (dir, models) = tiny_models();
    let solid = decoded(&models::object(8_000, 7));
    let sparse = decoded(&models::sparse(8_000, 7));

    // Measure both with a threshold everything reaches.
    let mut open = gate(dir.path(), &models, 0.0, 0.0);
    let a = open.evaluate(&solid, PROMPT);
    let b = open.evaluate(&sparse, PROMPT);
    for verdict in [&a, &b] {
        assert!(verdict.passed, "{}", verdict.reasons_text());
        let m = &verdict.metrics;
        let score = m["predicted_score"];
        assert!(score.is_finite() && score > 0.0, "{m:?}");
        assert_eq!(f64::from(verdict.local_score), f64::from(score as f32));
        assert_eq!(m["gate_mode_validator"], 1.0);
        assert_eq!(m["alignment_assumed"], 0.0, "measured for a task");
        assert_eq!(m["alignment_unmeasurable"], 0.0);
        let alignment = m["predicted_alignment"];
        assert!(alignment > 0.3 && alignment.is_finite(), "{m:?}");
        assert!(m.contains_key("predicted_alignment_cosine_03"), "{m:?}");
        for key in [
            "predicted_iqa",
            "predicted_ssim",
            "predicted_lpips",
            "geometry_score",
        ] {
            assert!(m[key].is_finite(), "{key}: {m:?}");
        }
        for i in 0..4 {
            for part in ["view_quality", "pair_ssim", "pair_lpips"] {
                let key = format!("predicted_{part}_{i:02}");
                assert!(m.contains_key(&key), "{key}: {m:?}");
            }
        }
        assert!(!m.contains_key("predicted_view_quality_04"));
        assert!(verdict.views.is_some(), "views kept for the contact sheet");
    }
    let (sa, sb) = (a.metrics["predicted_score"], b.metrics["predicted_score"]);
    assert!((sa - sb).abs() > 1e-6, "two models, two scores: {sa} {sb}");
    // The same model scores the same again.
    assert_eq!(open.evaluate(&solid, PROMPT).metrics["predicted_score"], sa);

    // A threshold between the two: the higher passes, the lower fails naming both numbers.
    let (high, low, high_model, low_model) = if sa > sb {
        (sa, sb, &solid, &sparse)
    } else {
        (sb, sa, &sparse, &solid)
    };
    let middle = (high + low) / 2.0;
    let mut split = gate(dir.path(), &models, middle - 0.01, 0.01);
    let passed = split.evaluate(high_model, PROMPT);
    assert!(passed.passed, "{}", passed.reasons_text());
    assert!(passed.reasons.is_empty());
    assert!((passed.metrics["predicted_needed"] - middle).abs() < 1e-12);
    let failed = split.evaluate(low_model, PROMPT);
    assert!(!failed.passed);
    assert_eq!(failed.reasons.len(), 1);
    assert_eq!(failed.reasons[0].category(), "predicted_low");
    match &failed.reasons[0] {
        GateReason::PredictedLow { score, needed } => {
            assert_eq!(*score, low);
            assert!((needed - middle).abs() < 1e-12);
        }
        other => panic!("{other:?}"),
    }
    assert!(failed.reasons_text().contains("predicted validator score"));
    assert_eq!(f64::from(failed.local_score), f64::from(low as f32));

    // The margin counts: at threshold = the high score, a positive margin fails it too.
    let mut strict = gate(dir.path(), &models, high, 0.001);
    let verdict = strict.evaluate(high_model, PROMPT);
    assert!(!verdict.passed);
    assert_eq!(verdict.reasons[0].category(), "predicted_low");
}

#[test]
fn hard_zero_rules_fail_first_and_a_gate_without_scorer_fails_closed() {
    let (dir, models) = tiny_models();
    let mut scored = gate(dir.path(), &models, 0.0, 0.0);
    let verdict = scored.evaluate(&decoded(&models::object(3_000, 7)), PROMPT);
    assert!(!verdict.passed);
    assert_eq!(verdict.local_score, 0.0);
    assert_eq!(
        verdict.reasons.first().map(|r| r.category()),
        Some("hard_zero:too_few_gaussians")
    );
    assert!(
        !verdict.metrics.contains_key("predicted_score"),
        "not scored"
    );
    assert_eq!(verdict.metrics.get("gate_mode_validator"), Some(&1.0));

    let mut unscored = Gate::with_renderer(Renderer::cpu(), &settings(dir.path(), 0.0, 0.0));
    let verdict = unscored.evaluate(&decoded(&models::object(8_000, 7)), PROMPT);
    assert!(!verdict.passed);
    assert_eq!(verdict.reasons[0].category(), "no_scorer");
}

#[test]
fn missing_or_pinned_wrong_model_files_are_named_with_their_download() {
    let empty = tempfile::tempdir().expect("temp dir");
    let settings = settings(empty.path(), 0.6, 0.05);
    let err = load_models(&settings.scorer).expect_err("no files");
    let message = err.to_string();
    assert!(message.contains("worker.scorer.models_dir"), "{message}");
    assert!(message.contains("download"), "{message}");
    assert!(
        splatfleet_kernels::scorer::files::layout::ALL_FILES
            .iter()
            .any(|file| message.contains(file)),
        "{message}"
    );

    let (dir, _) = tiny_models();
    let mut pinned = settings.scorer.clone();
    pinned.models_dir = dir.path().to_owned();
    pinned
        .sha256
        .insert("quality_scorer.safetensors".into(), "0".repeat(64));
    let message = load_models(&pinned).expect_err("pin differs").to_string();
    assert!(message.contains("quality_scorer.safetensors"), "{message}");
    assert!(message.contains("sha256"), "{message}");
}

#[test]
fn prompts_of_both_kinds_are_measured_and_an_unreadable_one_scores_zero_with_its_reason() {
    let (dir, models) = tiny_models();
    let solid = decoded(&models::object(8_000, 7));
    let mut open = gate(dir.path(), &models, 0.0, 0.0);

    // Text: awkward prompts still give a measured alignment.
    let long = "a chair with a very long description ".repeat(300);
    for text in [
        "",
        "a red chair",
        "café 🪑 &amp; <b>table</b>",
        long.as_str(),
    ] {
        let verdict = open.evaluate(&solid, Some(Prompt::Text(text)));
        let m = &verdict.metrics;
        assert!(m["predicted_alignment"].is_finite(), "{text:?}: {m:?}");
        assert_eq!(
            m["alignment_unmeasurable"],
            0.0,
            "{text:?}: {}",
            verdict.reasons_text()
        );
    }

    // Image: the simulator's prompt images are base64 PNGs, as validators send them.
    let task = splatfleet_tests::sim::tasks::TaskFactory::new(3, 1.0).next_task();
    let image = task.prompt().to_owned();
    let verdict = open.evaluate(&solid, Some(Prompt::ImageBase64(&image)));
    let m = &verdict.metrics;
    assert_eq!(m["alignment_unmeasurable"], 0.0, "{m:?}");
    assert!(m["predicted_alignment"] > 0.3, "{m:?}");
    assert!(verdict.passed, "{}", verdict.reasons_text());

    // A prompt image that does not decode: alignment 0, so the score is 0 (the cut-off), and
    // the reason is recorded.
    let mut scoring = gate(dir.path(), &models, 0.01, 0.0);
    for corrupt in ["this is not base64 !!", "iVBORw0KGgoAAAANSUhEUgAA"] {
        let verdict = scoring.evaluate(&solid, Some(Prompt::ImageBase64(corrupt)));
        assert!(!verdict.passed, "{corrupt}");
        let m = &verdict.metrics;
        assert_eq!(m["predicted_alignment"], 0.0);
        assert_eq!(m["predicted_score"], 0.0);
        assert_eq!(m["alignment_unmeasurable"], 1.0);
        assert_eq!(
            verdict.reasons[0].category(),
            "alignment_unmeasurable",
            "{}",
            verdict.reasons_text()
        );
    }

    // No prompt (a file check): not measured, taken as 1.0 and recorded as assumed.
    let verdict = open.evaluate(&solid, None);
    assert_eq!(verdict.metrics["alignment_assumed"], 1.0);
    assert_eq!(verdict.metrics["predicted_alignment"], 1.0);
}
