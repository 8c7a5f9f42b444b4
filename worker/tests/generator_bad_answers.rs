//! Bad-input suite, generation side: the worker against a generation service whose answers
//! never end or lie at the wire level (a body that trickles forever, one that never stops
//! coming, a `Content-Length` promising twice what is sent, no answer at all). Each attempt
//! must end at the client's timeout or size cap with an error naming it, the task must end
//! Empty with that reason (or be won by a later rung), and the worker must go on to the next
//! task.

mod support;

use std::{collections::BTreeMap, time::Duration};

use splatfleet_common::messages::{ResultMsg, ResultOutcome, TaskKind};
use splatfleet_tests::{delete_topology, sim::Fault};
use support::{small_models, task, Harness};

/// Short enough that a test of two rungs takes seconds.
const GENERATE_TIMEOUT_MS: u64 = 1_000;
/// A generous cap for a 8,000-gaussian model (about 0.5 MB), far under an endless body.
const RESPONSE_CAP: u64 = 2 * 1024 * 1024;

fn two_rungs() -> Vec<BTreeMap<String, String>> {
    vec![
        BTreeMap::from([("enhance".to_owned(), "standard".to_owned())]),
        BTreeMap::from([("enhance".to_owned(), "extreme".to_owned())]),
    ]
}

async fn start(fault: Fault, fault_attempts: u32) -> Harness {
    let mut generator = small_models(fault);
    generator.fault_attempts = fault_attempts;
    Harness::start_with(generator, |config| {
        config.worker.ladder = two_rungs();
        config.worker.generate_timeout_ms = GENERATE_TIMEOUT_MS;
        config.worker.max_response_bytes = RESPONSE_CAP;
    })
    .await
}

fn empty_reason(result: &ResultMsg) -> &str {
    match &result.outcome {
        ResultOutcome::Empty { reason } => reason,
        other => panic!("expected Empty, got {other:?} after {:?}", result.attempts),
    }
}

/// Every attempt fails with `expected` in its error, the task ends Empty naming it within the
/// ladder's timeouts, and the worker answers the next task the same way.
async fn every_attempt_fails_and_the_worker_goes_on(fault: Fault, expected: &str) {
    let harness = start(fault, u32::MAX).await;
    for id in ["t-first", "t-second"] {
        let started = std::time::Instant::now();
        harness.send(&task(id, TaskKind::Text, "a chair")).await;
        let result = harness.next_result().await;
        assert_eq!(result.task_id, id);
        let reason = empty_reason(&result);
        assert!(reason.contains(expected), "{fault:?}: {reason}");
        assert_eq!(result.attempts.len(), 2, "both rungs tried");
        for attempt in &result.attempts {
            let error = attempt.error.as_deref().unwrap_or_default();
            assert!(error.contains(expected), "{fault:?}: attempt error {error}");
        }
        // Two rungs of at most the generation timeout each, plus slack for a loaded machine.
        assert!(
            started.elapsed() < Duration::from_millis(2 * GENERATE_TIMEOUT_MS + 6_000),
            "{fault:?}: took {:?}",
            started.elapsed()
        );
        assert!(!harness.worker.is_finished(), "the worker stopped");
    }
    let (broker, config) = harness.stop().await;
    broker.close().await;
    delete_topology(&config.broker).await;
}

#[tokio::test]
async fn a_body_that_trickles_forever_times_out() {
    every_attempt_fails_and_the_worker_goes_on(Fault::Trickle, "did not answer within 1s").await;
}

#[tokio::test]
async fn a_body_that_never_ends_stops_at_the_size_cap() {
    every_attempt_fails_and_the_worker_goes_on(Fault::Endless, "answered more than 2097152 bytes")
        .await;
}

#[tokio::test]
async fn a_content_length_that_lies_is_a_body_that_breaks_off() {
    every_attempt_fails_and_the_worker_goes_on(Fault::LyingLength, "body that breaks off").await;
}

#[tokio::test]
async fn a_service_that_never_answers_times_out() {
    every_attempt_fails_and_the_worker_goes_on(Fault::Hang, "did not answer within 1s").await;
}

#[tokio::test]
async fn a_trickling_first_answer_is_outlasted_by_the_next_rung() {
    let harness = start(Fault::Trickle, 1).await;
    harness
        .send(&task("t-retry", TaskKind::Text, "a chair"))
        .await;
    let result = harness.next_result().await;
    assert!(
        matches!(result.outcome, ResultOutcome::Ready { .. }),
        "{:?} after {:?}",
        result.outcome,
        result.attempts
    );
    let first = result.attempts[0].error.as_deref().unwrap_or_default();
    assert!(first.contains("did not answer within 1s"), "{first}");
    assert!(
        result.attempts[1].error.is_none(),
        "{:?}",
        result.attempts[1]
    );
    let (broker, config) = harness.stop().await;
    broker.close().await;
    delete_topology(&config.broker).await;
}
