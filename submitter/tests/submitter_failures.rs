//! Failures: a 500 is sent again and recorded once; a 403 is recorded and not sent again; a
//! result whose model cannot be loaded is recorded and dead-lettered.

mod support;

use std::time::Duration;

use splatfleet_common::messages::{ArtifactRef, ResultOutcome, TaskKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_sent_again_and_recorded_once() {
    let world = support::start(1).await;
    let task = world.pull(0).await;
    world.network.validators[0].fail_next_submits(&[500]);
    let result = world.ready_result(&task, true, 5).await;
    world.publish(&result).await;
    world
        .wait_count(
            "SELECT count(*) FROM submissions WHERE state = 'completed' AND tries = 2
                 AND http_status = 200 AND task_fidelity_score > 0",
            1,
            Duration::from_secs(30),
        )
        .await;
    let rejected = world.events("rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["status"], 500);
    assert_eq!(world.events_about("submit", &task.task_id).len(), 1);
    world
        .wait_count(
            "SELECT count(*) FROM tasks WHERE status = 'submitted'",
            1,
            Duration::from_secs(5),
        )
        .await;
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_is_recorded_with_its_reason_and_not_sent_again() {
    let world = support::start(1).await;
    // The validator never assigned this task to us: its axon answers 403.
    let task = world
        .record_task(0, "never-assigned", "a blue teapot", TaskKind::Text)
        .await;
    let result = world.ready_result(&task, true, 6).await;
    world.publish(&result).await;
    world
        .wait_count(
            "SELECT count(*) FROM submissions WHERE state = 'failed' AND tries = 1
                 AND http_status = 403 AND error LIKE '%no task assigned%'",
            1,
            Duration::from_secs(30),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rejected = world.events("rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    world.wait_count(
        "SELECT count(*) FROM tasks WHERE status = 'failed' AND status_reason LIKE 'submission refused%'",
        1,
        Duration::from_secs(5),
    )
    .await;
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_cannot_be_loaded_is_recorded_and_dead_lettered() {
    let world = support::start(1).await;
    let task = world.pull(0).await;
    let missing = ArtifactRef {
        key: "ply/00/0000000000000000000000000000000000000000000000000000000000000000.ply".into(),
        sha256: "0".repeat(64),
        bytes: 10,
    };
    let result = world.result(
        &task,
        ResultOutcome::Ready {
            ply: missing.clone(),
            spz: None,
            preview: None,
            local_score: 0.9,
            chosen_attempt: 1,
        },
        Some(&missing),
    );
    world.publish(&result).await;
    world.wait_count(
        "SELECT count(*) FROM tasks WHERE status = 'generated'
             AND status_reason LIKE 'submitter could not load the result: artifact%not in the store'",
        1,
        Duration::from_secs(30),
    )
    .await;
    world
        .wait_count("SELECT count(*) FROM attempts", 2, Duration::from_secs(5))
        .await;
    world.wait_dead_letters(1).await;
    assert!(world.events_about("submit", &task.task_id).is_empty());
    let client = world.pool.get().await.expect("client");
    let submissions: i64 = client
        .query_one("SELECT count(*) FROM submissions", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(submissions, 0, "left for the puller to release");
    drop(client);
    world.finish().await;
}
