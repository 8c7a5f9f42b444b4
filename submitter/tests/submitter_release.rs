//! The release loop: the submitter, the one role that signs, sends the empty releases the
//! puller requests for tasks the fleet lost. A held task is given back (`submitted_empty`,
//! the validator's cooldown recorded); one the validator no longer holds answers 403 and is
//! recorded `expired` with the assumed cooldown; a validator that does not answer is tried
//! again later, never given up; a release another submitter holds is left to it until its
//! hold is handed back.

mod support;

use std::time::Duration;

use splatfleet_common::{
    config::Config,
    ledger::{self, ReleaseRecord},
    messages::TaskKind,
};
use splatfleet_tests::harness::World;

/// Releases polled every 100 ms; a 7 s cooldown assumed after one the validator no longer held.
fn fast_release(config: &mut Config) {
    config.submitter.release_poll_ms = 100;
    config.submitter.assumed_cooldown_secs = 7;
}

async fn one(world: &World, query: &str, task_row: i64) -> f64 {
    world
        .pool
        .get()
        .await
        .expect("db")
        .query_one(query, &[&task_row])
        .await
        .expect("query")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_release_of_a_held_task_is_signed_sent_and_recorded_once() {
    let world = support::start_with(1, fast_release).await;
    let task = world.pull(0).await;
    assert!(
        ledger::request_release(&world.pool, task.row, "lost: no result by the deadline")
            .await
            .expect("request")
    );
    // A second request of the same task is refused: one submission per task.
    assert!(!ledger::request_release(&world.pool, task.row, "again")
        .await
        .expect("request"));
    world
        .wait_count(
            "SELECT count(*) FROM tasks t JOIN submissions s ON s.task_id = t.id
             WHERE t.status = 'submitted_empty' AND s.state = 'completed' AND s.empty
               AND s.tries = 1 AND s.http_status = 200 AND s.claimed_by IS NULL
               AND s.released_by IS NOT NULL AND s.lease_until IS NULL
               AND s.empty_reason = 'lost: no result by the deadline'",
            1,
            Duration::from_secs(20),
        )
        .await;
    let submits = world.events_about("submit", &task.task_id);
    assert_eq!(submits.len(), 1, "{submits:?}");
    // The validator's cooldown after the release is what the puller will wait for.
    let cooldown_left = one(
        &world,
        "SELECT extract(epoch FROM vs.cooldown_until - now())::float8
         FROM validator_state vs JOIN tasks t ON t.validator_id = vs.validator_id
         WHERE t.id = $1",
        task.row,
    )
    .await;
    assert!(cooldown_left > 0.0, "cooldown left {cooldown_left}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        world.events_about("submit", &task.task_id).len(),
        1,
        "sent twice"
    );
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_the_validator_no_longer_holds_is_expired_with_the_assumed_cooldown() {
    let world = support::start_with(1, fast_release).await;
    // Recorded, never assigned: the validator answers the release with 403.
    let task = world
        .record_task(0, "given-up-already", "a red kettle", TaskKind::Text)
        .await;
    assert!(ledger::request_release(&world.pool, task.row, "lost")
        .await
        .expect("request"));
    world
        .wait_count(
            "SELECT count(*) FROM tasks t JOIN submissions s ON s.task_id = t.id
             WHERE t.status = 'expired' AND s.state = 'completed' AND s.http_status = 403",
            1,
            Duration::from_secs(20),
        )
        .await;
    let assumed_left = one(
        &world,
        "SELECT extract(epoch FROM s.cooldown_until - s.completed_at)::float8
         FROM submissions s WHERE s.task_id = $1",
        task.row,
    )
    .await;
    assert!(
        (assumed_left - 7.0).abs() < 1.0,
        "assumed cooldown {assumed_left} s, configured 7"
    );
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_the_validator_did_not_answer_waits_and_is_sent_again() {
    let world = support::start_with(1, fast_release).await;
    let task = world.pull(0).await;
    world.network.validators[0].fail_next_submits(&[500, 503]);
    assert!(ledger::request_release(&world.pool, task.row, "lost")
        .await
        .expect("request"));
    world
        .wait_count(
            "SELECT count(*) FROM tasks t JOIN submissions s ON s.task_id = t.id
             WHERE t.status = 'submitted_empty' AND s.state = 'completed' AND s.tries = 3
               AND s.http_status = 200",
            1,
            Duration::from_secs(30),
        )
        .await;
    let rejected = world.events("rejected");
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_another_submitter_holds_is_left_to_it_until_handed_back() {
    let world = support::start_with(1, fast_release).await;
    let task = world.pull(0).await;
    assert!(ledger::request_release(&world.pool, task.row, "lost")
        .await
        .expect("request"));
    // Another submitter takes it first (before our submitter's loop can: a long hold).
    let mut taken = Vec::new();
    for _ in 0..50 {
        taken = ledger::take_releases(&world.pool, "other-submitter", 3600.0, 8)
            .await
            .expect("take");
        if !taken.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if taken.is_empty() {
        // Our submitter's loop was quicker: then it must have sent it, once.
        world
            .wait_count(
                "SELECT count(*) FROM tasks WHERE status = 'submitted_empty'",
                1,
                Duration::from_secs(20),
            )
            .await;
        world.finish().await;
        return;
    }
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].task_id, task.task_id);
    assert_eq!(taken[0].prompt, task.prompt);
    assert_eq!(taken[0].tries, 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        world.events_about("submit", &task.task_id).is_empty(),
        "our submitter sent a release another submitter holds"
    );
    // Nobody else may record it either.
    assert!(!ledger::finish_release(
        &world.pool,
        task.row,
        "a-third-submitter",
        &ReleaseRecord::Interrupted
    )
    .await
    .expect("finish"));
    // The holder stops before sending: the request is due again at once.
    assert!(ledger::finish_release(
        &world.pool,
        task.row,
        "other-submitter",
        &ReleaseRecord::Interrupted
    )
    .await
    .expect("finish"));
    world
        .wait_count(
            "SELECT count(*) FROM tasks t JOIN submissions s ON s.task_id = t.id
             WHERE t.status = 'submitted_empty' AND s.tries = 2",
            1,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(world.events_about("submit", &task.task_id).len(), 1);
    world.finish().await;
}
