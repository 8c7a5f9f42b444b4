//! Failures: a 500 is sent again and recorded once; a 403 is recorded and not sent again; a
//! result whose model cannot be loaded is recorded and dead-lettered.

mod support;

use std::time::Duration;

use splatfleet_common::broker::queue_counts;
use splatfleet_common::messages::{ArtifactRef, ResultOutcome, TaskKind};
use support::Rig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_sent_again_and_recorded_once() {
    let rig = Rig::start(1, &[]).await;
    let task = rig.pull(0).await;
    rig.network.validators[0].fail_next_submits(&[500]);
    let result = rig.ready_result(&task, true, 5).await;
    rig.publish(&result).await;
    rig.wait_count(
        "SELECT count(*) FROM submissions WHERE state = 'completed' AND tries = 2
             AND http_status = 200 AND task_fidelity_score > 0",
        1,
        Duration::from_secs(30),
    )
    .await;
    let rejected = rig.network.events.of_kind("rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["status"], 500);
    assert_eq!(rig.events("submit", &task.task_id).len(), 1);
    rig.wait_count(
        "SELECT count(*) FROM tasks WHERE status = 'submitted'",
        1,
        Duration::from_secs(5),
    )
    .await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_is_recorded_with_its_reason_and_not_sent_again() {
    let rig = Rig::start(1, &[]).await;
    // The validator never assigned this task to us: its axon answers 403.
    let task = rig
        .record_task(0, "never-assigned", "a blue teapot", TaskKind::Text)
        .await;
    let result = rig.ready_result(&task, true, 6).await;
    rig.publish(&result).await;
    rig.wait_count(
        "SELECT count(*) FROM submissions WHERE state = 'failed' AND tries = 1
             AND http_status = 403 AND error LIKE '%no task assigned%'",
        1,
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rejected = rig.network.events.of_kind("rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    rig.wait_count(
        "SELECT count(*) FROM tasks WHERE status = 'failed' AND status_reason LIKE 'submission refused%'",
        1,
        Duration::from_secs(5),
    )
    .await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_cannot_be_loaded_is_recorded_and_dead_lettered() {
    let rig = Rig::start(1, &[]).await;
    let task = rig.pull(0).await;
    let missing = ArtifactRef {
        key: "ply/00/0000000000000000000000000000000000000000000000000000000000000000.ply".into(),
        sha256: "0".repeat(64),
        bytes: 10,
    };
    let result = rig.result(
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
    rig.publish(&result).await;
    rig.wait_count(
        "SELECT count(*) FROM tasks WHERE status = 'generated'
             AND status_reason LIKE 'submitter could not load the result: artifact%not in the store'",
        1,
        Duration::from_secs(30),
    )
    .await;
    rig.wait_count("SELECT count(*) FROM attempts", 2, Duration::from_secs(5))
        .await;
    let channel = rig.broker.channel().await.expect("channel");
    let started = std::time::Instant::now();
    loop {
        let dead = queue_counts(&channel, &rig.broker.topology().dead_queue())
            .await
            .expect("dead queue");
        if dead.ready == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(rig.events("submit", &task.task_id).is_empty());
    let client = rig.pool.get().await.expect("client");
    let submissions: i64 = client
        .query_one("SELECT count(*) FROM submissions", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(submissions, 0, "left for the puller to release");
    drop(client);
    rig.stop().await;
}
