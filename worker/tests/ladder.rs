//! The retry ladder against the simulated generator's bad models: a sparse first answer is
//! gated out and the enhanced retry is submitted; tasks whose every answer is degenerate or
//! under the gaussian floor end Empty naming the rule; with a stop score above every attempt
//! the whole ladder runs and the best attempt by local score is kept; a generation service
//! that is down at first is waited for without spending ladder rungs.

mod support;

use std::collections::BTreeMap;

use splatfleet_common::messages::{ResultMsg, ResultOutcome, TaskKind};
use splatfleet_tests::{
    delete_topology, free_addr,
    sim::{AnswerMix, Fault, SimGenerator},
};
use support::{ready, small_models, task, Harness};

fn rung(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Runs one task through a worker whose generator answers with `mix` and whose ladder is
/// `ladder`, and returns the result.
async fn run_one(
    id: &str,
    mix: AnswerMix,
    ladder: Vec<BTreeMap<String, String>>,
    stop_score: Option<f64>,
    pass_threshold: f64,
) -> ResultMsg {
    let mut generator = small_models(Fault::None);
    generator.mix = mix;
    let harness = Harness::start_with(generator, |config| {
        config.worker.ladder = ladder;
        config.worker.gate_stop_score = stop_score;
        config.worker.gate_pass_threshold = pass_threshold;
        // Fine enough that a wiry model shows its holes.
        config.worker.gate_render_size = 128;
    })
    .await;
    harness
        .run_task(&task(id, TaskKind::Text, "a wooden boat"))
        .await
        .0
}

fn empty_reason(result: &ResultMsg) -> &str {
    match &result.outcome {
        ResultOutcome::Empty { reason } => reason,
        other => panic!("expected Empty, got {other:?} after {:?}", result.attempts),
    }
}

#[tokio::test]
async fn a_sparse_first_answer_is_gated_out_and_the_enhanced_retry_is_submitted() {
    // Every un-enhanced answer is sparse; enhance level 8 makes sparse answers vanishingly rare.
    let mix = AnswerMix {
        sparse: 1.0,
        ..AnswerMix::default()
    };
    let ladder = vec![rung(&[]), rung(&[("enhance", "8")])];
    // At a 128-pixel gate, solid objects score about 0.97 and the sim's sparse models under
    // 0.9 (holes: lower fill, coverage and adjacent-view SSIM).
    let result = run_one("t-sparse", mix, ladder, None, 0.92).await;
    let (chosen_attempt, local_score) = ready(&result);
    assert_eq!(chosen_attempt, 1);
    assert_eq!(result.attempts.len(), 2);
    let sparse = &result.attempts[0];
    assert_eq!(sparse.gate_passed, Some(false));
    let sparse_count = sparse.gaussian_count.expect("sparse model parsed");
    assert!((7_000..150_000).contains(&sparse_count), "{sparse_count}");
    let error = sparse.error.as_deref().unwrap_or_default();
    assert!(error.contains("under the threshold"), "{error}");
    let enhanced = &result.attempts[1];
    assert_eq!(
        enhanced.params.get("enhance").map(String::as_str),
        Some("8")
    );
    assert_eq!(enhanced.gate_passed, Some(true));
    assert!(
        local_score > sparse.local_score.expect("scored"),
        "the submitted attempt must outscore the sparse one"
    );
}

#[tokio::test]
async fn degenerate_answers_end_empty_naming_the_broken_rule() {
    let mix = AnswerMix {
        degenerate: 1.0,
        ..AnswerMix::default()
    };
    let ladder = vec![rung(&[]), rung(&[]), rung(&[])];
    let result = run_one("t-degenerate", mix, ladder, None, 0.3).await;
    let reason = empty_reason(&result);
    assert!(
        reason.contains("no attempt passed the gate (3 tried)"),
        "{reason}"
    );
    for attempt in &result.attempts {
        assert_eq!(attempt.gate_passed, Some(false), "{attempt:?}");
        assert_eq!(attempt.local_score, Some(0.0));
        let error = attempt.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("hard zero") || error.contains("SN17"),
            "a degenerate model must fail a validator rule, not the score: {error}"
        );
    }
}

#[tokio::test]
async fn models_under_the_gaussian_floor_end_empty_with_that_reason() {
    let mix = AnswerMix {
        tiny: 1.0,
        ..AnswerMix::default()
    };
    let result = run_one("t-tiny", mix, vec![rung(&[]), rung(&[])], None, 0.3).await;
    let reason = empty_reason(&result);
    assert!(reason.contains("TooFewGaussians"), "{reason}");
    assert_eq!(result.attempts.len(), 2);
    for attempt in &result.attempts {
        assert!(
            attempt.gaussian_count.is_some_and(|n| n < 7_000),
            "{attempt:?}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_stop_score_runs_the_whole_ladder_and_keeps_the_best_attempt() {
    let ladder = vec![rung(&[]), rung(&[]), rung(&[])];
    let result = run_one("t-best", AnswerMix::default(), ladder, Some(1.0), 0.3).await;
    let (chosen_attempt, local_score) = ready(&result);
    assert_eq!(
        result.attempts.len(),
        3,
        "no attempt reaches 1.0, so all run"
    );
    let scores: Vec<f32> = result
        .attempts
        .iter()
        .map(|a| a.local_score.expect("scored"))
        .collect();
    let best = scores.iter().copied().fold(f32::MIN, f32::max);
    assert_eq!(local_score, best, "{scores:?}");
    assert_eq!(scores[usize::from(chosen_attempt)], best);
    assert!(
        result.attempts[usize::from(chosen_attempt)].ply.is_some(),
        "the chosen attempt names its stored PLY"
    );
}

#[tokio::test]
async fn a_generation_service_down_at_first_is_waited_for_without_spending_rungs() {
    // Nothing listens on this port until the service comes up 1.5 s into the task.
    let late = free_addr();
    let harness = Harness::start_with(small_models(Fault::None), |config| {
        config.worker.generation_endpoints = vec![format!("http://{late}")];
        config.worker.ladder = vec![rung(&[])];
    })
    .await;
    harness
        .send(&task("t-late", TaskKind::Text, "a tin robot"))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let service = SimGenerator::start(late.port(), small_models(Fault::None))
        .await
        .expect("the late generation service starts");
    let result = harness.next_result().await;
    let (chosen_attempt, _) = ready(&result);
    let tries = result.attempts.len();
    assert!(
        tries >= 2,
        "the first try found nothing listening: {:?}",
        result.attempts
    );
    assert_eq!(
        usize::from(chosen_attempt),
        tries - 1,
        "the last try is the one kept"
    );
    for attempt in &result.attempts[..tries - 1] {
        let error = attempt.error.as_deref().unwrap_or_default();
        assert!(error.contains("could not be reached"), "{error}");
    }
    for attempt in &result.attempts {
        assert_eq!(
            attempt.params.get("attempt").map(String::as_str),
            Some("0"),
            "one rung, retried"
        );
    }
    assert_eq!(service.requests(), 1);
    let (broker, config) = harness.stop().await;
    broker.close().await;
    delete_topology(&config.broker).await;
}
