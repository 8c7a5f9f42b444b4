//! The worker end to end against real RabbitMQ and the simulated generation service (CPU
//! renderer, small models, a 4-view 64×64 gate): a task becomes a Ready result whose stored
//! artifacts match their hashes; a generator that always fails ends Empty with every attempt
//! recorded; a broken image prompt ends Empty without calling the generator. The Ready test
//! also checks the task was acked (nothing left after the worker stops); a task whose result
//! cannot be published is never acked: it is requeued until the broker dead-letters it.

mod support;

use std::time::Duration;

use splatfleet_common::{
    artifacts::{sha256_hex, ArtifactStore},
    broker::QueueKind,
    messages::{ResultOutcome, TaskKind},
};
use splatfleet_tests::{delete_topology, sim::Fault};
use support::{queue_state, small_models, task, Harness, WAIT};

#[tokio::test]
async fn task_becomes_ready_result_with_artifacts_matching_their_hashes() {
    let harness = Harness::start(small_models(Fault::None)).await;
    harness
        .send(&task("t-ready", TaskKind::Text, "a red teapot"))
        .await;
    let result = harness.next_result().await;
    assert_eq!(result.task_id, "t-ready");
    assert_eq!(result.prompt, "a red teapot");
    let ResultOutcome::Ready {
        ply,
        spz,
        preview,
        local_score,
        chosen_attempt,
    } = &result.outcome
    else {
        panic!(
            "expected Ready, got {:?} after {:?}",
            result.outcome, result.attempts
        );
    };
    assert_eq!(*chosen_attempt, 0);
    assert!(*local_score >= 0.3, "{local_score}");
    let chosen = &result.attempts[0];
    assert_eq!(chosen.gate_passed, Some(true));
    assert_eq!(chosen.gaussian_count, Some(8_000));
    assert_eq!(chosen.ply.as_ref(), Some(ply));
    assert!(chosen.stage_ms.contains_key("generate") && chosen.stage_ms.contains_key("gate"));
    let on_disk = std::fs::read(harness.config.object_store.root.join(&ply.key)).expect("PLY file");
    assert_eq!(sha256_hex(&on_disk), ply.sha256);
    assert!(on_disk.starts_with(b"ply\n"));
    let store = ArtifactStore::open(&harness.config.object_store).expect("store");
    let spz = spz.as_ref().expect("SPZ stored");
    store.get(spz).await.expect("SPZ matches its hash");
    let preview = preview.as_ref().expect("preview stored");
    let png = store.get(preview).await.expect("preview matches its hash");
    assert!(png.starts_with(b"\x89PNG"));
    let (broker, config) = harness.stop().await;
    let tasks_left = queue_state(&broker, &broker.topology().queue(QueueKind::Tasks))
        .await
        .0;
    assert_eq!(tasks_left, 0, "the task was acked");
    broker.close().await;
    delete_topology(&config.broker).await;
}

async fn always_failing_generator_ends_empty(fault: Fault, expected: &str) {
    let harness = Harness::start(small_models(fault)).await;
    harness
        .send(&task("t-bad", TaskKind::Text, "a chair"))
        .await;
    let result = harness.next_result().await;
    let ResultOutcome::Empty { reason } = &result.outcome else {
        panic!("expected Empty, got {:?}", result.outcome);
    };
    assert!(reason.contains(expected), "{reason}");
    assert_eq!(result.attempts.len(), 3, "every rung of the ladder tried");
    for (i, attempt) in result.attempts.iter().enumerate() {
        assert_eq!(attempt.params.get("attempt"), Some(&i.to_string()));
        assert!(attempt.params.contains_key("seed"));
        let error = attempt.error.as_deref().unwrap_or_default();
        assert!(error.contains(expected), "attempt {i}: {error}");
    }
    assert_eq!(harness.generator.requests(), 3);
    let (broker, config) = harness.stop().await;
    broker.close().await;
    delete_topology(&config.broker).await;
}

#[tokio::test]
async fn generator_answering_garbage_ends_empty_with_every_attempt_recorded() {
    always_failing_generator_ends_empty(Fault::Garbage, "not a PLY").await;
}

#[tokio::test]
async fn generator_answering_500_ends_empty_with_every_attempt_recorded() {
    always_failing_generator_ends_empty(Fault::Error500, "HTTP 500").await;
}

#[tokio::test]
async fn broken_image_prompt_ends_empty_without_calling_the_generator() {
    let harness = Harness::start(small_models(Fault::None)).await;
    harness
        .send(&task("t-image", TaskKind::Image, "this is not base64 !!"))
        .await;
    let result = harness.next_result().await;
    let ResultOutcome::Empty { reason } = &result.outcome else {
        panic!("expected Empty, got {:?}", result.outcome);
    };
    assert!(reason.contains("base64"), "{reason}");
    assert!(result.attempts.is_empty());
    assert_eq!(harness.generator.requests(), 0);
    let (broker, config) = harness.stop().await;
    broker.close().await;
    delete_topology(&config.broker).await;
}

#[tokio::test]
async fn a_task_whose_result_cannot_be_published_is_never_acked() {
    let harness = Harness::start(small_models(Fault::None)).await;
    let topology = harness.broker.topology().clone();
    let tasks = topology.queue(QueueKind::Tasks);
    // Wait until the worker consumes, so its own topology declaration is behind us.
    let deadline = tokio::time::Instant::now() + WAIT;
    while queue_state(&harness.broker, &tasks).await.1 == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker never consumed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No route for results: every publish is returned, so the worker must requeue the task
    // each time, and after the delivery limit the broker dead-letters it rather than lose it.
    let channel = harness.broker.channel().await.expect("channel");
    channel
        .queue_delete(
            topology.queue(QueueKind::Results).into(),
            Default::default(),
        )
        .await
        .expect("delete the results queue");
    harness
        .send(&task("t-unroutable", TaskKind::Text, "a lamp"))
        .await;
    let dead = topology.dead_queue();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while queue_state(&harness.broker, &dead).await.0 == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the task neither stayed queued nor reached {dead}: it was acked without a result"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let letter = channel
        .basic_get(dead.as_str().into(), Default::default())
        .await
        .expect("get")
        .expect("a dead letter");
    assert_eq!(
        letter
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str()),
        Some("t-unroutable")
    );
    let limit = u64::from(harness.config.broker.delivery_limit);
    assert_eq!(
        harness.generator.requests(),
        limit + 1,
        "one generation per delivery, then dead-lettered"
    );
    let (broker, config) = harness.stop().await;
    broker.close().await;
    delete_topology(&config.broker).await;
}
