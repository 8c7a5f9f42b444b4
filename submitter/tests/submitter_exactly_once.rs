//! Every ResultMsg leads to exactly one submission seen by the validator and one row in
//! Postgres: duplicated deliveries are not resent, and a send interrupted by a dead
//! submitter is completed.

mod support;

use std::time::Duration;

use splatfleet_common::ledger::{self, Claim, ClaimRequest, Finish};
use splatfleet_tests::harness::{PulledTask, World};

/// The live submitter of the last test.
const OTHER: &str = "other-host:2:cafebabe";

/// Another submitter (`claimed_by`) claimed the task and counted one send; its lease runs
/// out `lease_secs` from now (already, when negative).
async fn hold(world: &World, task: &PulledTask, claimed_by: &str, lease_secs: f64) {
    let request = ClaimRequest {
        claimed_by: Some(claimed_by),
        lease_secs,
        empty_reason: None,
        worker: None,
        local_score: None,
        result_finished_unix_ms: None,
    };
    assert_eq!(
        ledger::claim(&world.pool, task.row, &request)
            .await
            .expect("claim"),
        Claim::Claimed { tries: 0 }
    );
    assert_eq!(
        ledger::mark_sending(&world.pool, task.row, claimed_by, lease_secs)
            .await
            .expect("send counted"),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_result_is_submitted_once_and_recorded_once_even_when_delivered_twice() {
    let world = support::start(3).await;
    let with_spz = world.pull(0).await;
    let ply_only = world.pull(1).await;
    let empty = world.pull(2).await;
    let results = [
        world.ready_result(&with_spz, true, 1).await,
        world.ready_result(&ply_only, false, 2).await,
        world.empty_result(&empty),
    ];
    for result in results.iter().chain(results.iter()) {
        world.publish(result).await;
    }
    world
        .wait_count(
            "SELECT count(*) FROM submissions WHERE state = 'completed'",
            3,
            Duration::from_secs(30),
        )
        .await;
    // Give the duplicates time to be handled (and, wrongly, resent).
    tokio::time::sleep(Duration::from_secs(2)).await;
    for task in [&with_spz, &ply_only, &empty] {
        assert_eq!(
            world.events_about("submit", &task.task_id).len(),
            1,
            "{}",
            task.task_id
        );
    }
    let client = world.pool.get().await.expect("client");
    let rows = client
        .query(
            "SELECT t.task_id, t.status, s.tries, s.empty, s.task_fidelity_score,
                    s.cooldown_until IS NOT NULL, s.attempt_id IS NOT NULL,
                    vs.cooldown_until >= s.cooldown_until,
                    (SELECT count(*) FROM attempts a WHERE a.task_id = t.id),
                    (extract(epoch FROM s.result_finished_at) * 1000)::float8
             FROM submissions s JOIN tasks t ON t.id = s.task_id
             JOIN validator_state vs ON vs.validator_id = t.validator_id
             ORDER BY t.id",
            &[],
        )
        .await
        .expect("rows");
    assert_eq!(rows.len(), 3);
    for ((row, task), result) in rows
        .iter()
        .zip([&with_spz, &ply_only, &empty])
        .zip(&results)
    {
        let task_id: String = row.get(0);
        assert_eq!(task_id, task.task_id);
        let status: String = row.get(1);
        let tries: i16 = row.get(2);
        let is_empty: bool = row.get(3);
        let fidelity: Option<f32> = row.get(4);
        assert_eq!(tries, 1, "{task_id}");
        assert!(row.get::<_, bool>(5), "cooldown recorded");
        assert!(row.get::<_, bool>(7), "validator cooldown pushed");
        assert_eq!(row.get::<_, i64>(8), 2, "both attempts recorded once");
        let finished: f64 = row.get(9);
        assert!(
            (finished - result.finished_at_unix_ms as f64).abs() < 1.0,
            "{task_id}: result_finished_at {finished} vs {}",
            result.finished_at_unix_ms
        );
        if task.task_id == empty.task_id {
            assert_eq!(status, "submitted_empty");
            assert!(is_empty);
            assert!(!row.get::<_, bool>(6));
        } else {
            assert_eq!(status, "submitted");
            assert!(!is_empty);
            assert!(fidelity.is_some_and(|f| f > 0.0), "{task_id}: {fidelity:?}");
            assert!(row.get::<_, bool>(6), "chosen attempt linked");
        }
    }
    let accepted = world.events("verdict");
    assert_eq!(
        accepted
            .iter()
            .filter(|e| e["outcome"] == "accepted")
            .count(),
        2,
        "{accepted:?}"
    );
    drop(client);
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_interrupted_by_a_dead_submitter_is_completed_once() {
    let world = support::start(1).await;
    let task = world.pull(0).await;
    // A submitter claimed the task, counted one send and died before the answer: its lease
    // ran out a second ago.
    hold(&world, &task, "dead-host:1:deadbeef", -1.0).await;
    let result = world.ready_result(&task, true, 3).await;
    world.publish(&result).await;
    world
        .wait_count(
            "SELECT count(*) FROM submissions WHERE state = 'completed' AND tries = 2",
            1,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(world.events_about("submit", &task.task_id).len(), 1);
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_whose_sender_still_holds_the_lease_is_not_sent_twice() {
    let world = support::start(1).await;
    let task = world.pull(0).await;
    // Another live submitter is sending it and finishes while we wait.
    hold(&world, &task, OTHER, 3600.0).await;
    let result = world.ready_result(&task, true, 4).await;
    world.publish(&result).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(world.events_about("submit", &task.task_id).is_empty());
    let refused = Finish::Refused {
        status: Some(403),
        error: "refused".into(),
        latency_ms: 10,
    };
    assert!(
        ledger::finish(&world.pool, task.row, OTHER, &result, &refused)
            .await
            .expect("other submitter finishes")
            .is_some(),
        "the other submitter's row"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(world.events_about("submit", &task.task_id).is_empty());
    world.finish().await;
}
