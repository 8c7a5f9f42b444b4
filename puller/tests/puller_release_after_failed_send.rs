//! A result the submitter gave up on (every send failed: the link to the validator was down
//! longer than `max_send_tries` lasted) leaves its task `failed` with a non-empty `failed`
//! submission, while the validator still holds the task and hands it back on every pull. The
//! puller must request its release (the submitter signs and sends the empty submission) so
//! the validator hands out the next task;
//! found by the fault suite (tests/RELIABILITY.md), where three of four validators stayed
//! stuck on such tasks for the rest of the run, pulled every tick.

mod support;

use std::time::Duration;

use splatfleet_common::{
    broker::Disposition,
    db::Pool,
    ledger,
    messages::{ArtifactRef, ResultMsg, ResultOutcome, TaskMsg},
};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_whose_send_failed_for_good_is_released_when_the_validator_still_holds_it() {
    let world = support::start(1).await;
    // A stand-in for worker + submitter: the first task's send "fails for good", recorded as
    // the submitter records a give-up; later tasks are acked and left alone.
    let consumer = world
        .broker
        .consumer::<TaskMsg>(1, "gave-up-submitter")
        .await
        .expect("consumer");
    let (pool, stop) = (world.pool.clone(), CancellationToken::new());
    let first_task = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let seen = first_task.clone();
    let consuming = tokio::spawn(consumer.run(stop.clone(), move |incoming| {
        let (pool, seen) = (pool.clone(), seen.clone());
        async move {
            let task = incoming.body;
            let first = {
                let mut seen = seen.lock().expect("first task");
                let first = seen.is_none();
                if first {
                    *seen = Some(task.task_id.clone());
                }
                first
            };
            if first {
                give_up_like_the_submitter(&pool, &task).await;
            }
            Disposition::Ack
        }
    }));
    let _submitter = support::spawn_submitter(&world);
    let mut puller = support::spawn_puller(&world);

    let mut released = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(task_id) = first_task.lock().expect("first task").clone() else {
            continue;
        };
        let empty_verdict = world
            .events("verdict")
            .iter()
            .any(|v| v["task_id"] == task_id.as_str() && v["outcome"] == "empty");
        let next_task = world
            .events("pull")
            .iter()
            .filter(|p| p["outcome"] == "new")
            .count()
            >= 2;
        if empty_verdict && next_task {
            released = true;
            break;
        }
    }
    puller.terminate();
    let _ = puller.wait_exit(Duration::from_secs(15));
    stop.cancel();
    let _ = consuming.await;
    let task_id = first_task
        .lock()
        .expect("first task")
        .clone()
        .expect("a task was pulled");
    assert!(
        released,
        "the validator never got the task back (and never handed out another); pulls: {:?}; puller log:\n{}",
        world.events("pull").len(),
        puller.log.join("\n")
    );
    let row = world
        .pool
        .get()
        .await
        .expect("db")
        .query_one(
            "SELECT t.status, s.state, s.empty, s.empty_reason, s.claimed_by,
                    s.validation_failed, s.task_fidelity_score
             FROM tasks t JOIN submissions s ON s.task_id = t.id WHERE t.task_id = $1",
            &[&task_id],
        )
        .await
        .expect("the task's submission");
    assert_eq!(row.get::<_, String>(0), "submitted_empty");
    assert_eq!(row.get::<_, String>(1), "completed");
    assert!(row.get::<_, bool>(2), "the release is an empty submission");
    let reason: String = row.get(3);
    assert!(
        reason.contains("connection closed before message completed"),
        "the failed send's error is kept: {reason}"
    );
    assert!(row.get::<_, Option<String>>(4).is_none());
    // The validator's feedback on the empty submission is recorded like any other.
    assert_eq!(row.get::<_, Option<bool>>(5), Some(false));
    assert_eq!(row.get::<_, Option<f32>>(6), Some(0.0));
    let same = world
        .events("pull")
        .iter()
        .filter(|p| p["outcome"] == "same")
        .count();
    assert!(same <= 3, "the held task was pulled {same} times");
    assert!(world.violations().is_empty(), "{:?}", world.violations());
    world.finish().await;
}

/// Records, through the ledger, what the submitter records when every send of a result
/// failed: its claim, then a give-up (the task `failed`, the submission `failed`).
async fn give_up_like_the_submitter(pool: &Pool, task: &TaskMsg) {
    const ME: &str = "submitter-test";
    let request = ledger::ClaimRequest {
        claimed_by: Some(ME),
        lease_secs: 60.0,
        empty_reason: None,
        worker: Some("w/gpu0"),
        local_score: Some(0.8),
        result_finished_unix_ms: Some(task.pulled_at_unix_ms),
    };
    let claimed = ledger::claim_first(pool, &task.validator.hotkey, &task.task_id, &request)
        .await
        .expect("claim");
    let ledger::FirstClaim::Claimed(row) = claimed else {
        panic!("the stand-in could not claim the task: {claimed:?}");
    };
    let model = ArtifactRef {
        key: "ply/w.ply".into(),
        sha256: "b".repeat(64),
        bytes: 1,
    };
    let result = ResultMsg {
        task_id: task.task_id.clone(),
        validator: task.validator.clone(),
        kind: task.kind,
        prompt: task.prompt.clone(),
        outcome: ResultOutcome::Ready {
            ply: model,
            spz: None,
            preview: None,
            local_score: 0.8,
            chosen_attempt: 0,
        },
        attempts: Vec::new(),
        worker: "w/gpu0".into(),
        finished_at_unix_ms: task.pulled_at_unix_ms,
    };
    let gave_up = ledger::Finish::GaveUp {
        status: None,
        error: "connection closed before message completed".into(),
    };
    let verdict = ledger::finish(pool, row.id, ME, &result, &gave_up)
        .await
        .expect("give-up recorded");
    assert_eq!(verdict, Some(ledger::Verdict::Lost));
}
