//! Bad-input suite, the submitter's side of the validator: each of four validators takes the
//! submission (its rules judge it) and then answers badly: JSON cut off, the other synapse's
//! JSON, wrong field types quoting a megabyte, a 10 MB body sent chunked. The answer cannot
//! be trusted and the validator has the submission already, so sending again would only be a
//! duplicate: each is recorded once as a failed submission with the typed error (its quote of
//! the validator cut short), the task gets its terminal status, and the submitter goes on to
//! submit the next result to a validator that answers properly.

mod support;

use std::time::Duration;

use splatfleet_tests::sim::Misbehaviour;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_submit_answers_are_recorded_once_and_the_submitter_goes_on() {
    let world = support::start(5).await;
    let cases = [
        (Misbehaviour::TruncatedJson, "EOF while parsing"),
        (Misbehaviour::WrongSynapse, "names itself `PullTask`"),
        (
            Misbehaviour::WrongFieldTypes { chars: 1 << 20 },
            "not the synapse's JSON",
        ),
        (
            Misbehaviour::OversizedChunked {
                bytes: 10 * 1024 * 1024,
            },
            "over the 8388608-byte cap",
        ),
    ];
    let mut tasks = Vec::new();
    for (index, (how, _)) in cases.iter().enumerate() {
        let task = world.pull(index).await;
        world.network.validators[index].misbehave_on_submit(Some(how.clone()));
        world
            .publish(&world.ready_result(&task, true, index as u32).await)
            .await;
        tasks.push(task);
    }
    let healthy = world.pull(4).await;
    world
        .publish(&world.ready_result(&healthy, true, 9).await)
        .await;

    world
        .wait_count(
            "SELECT count(*) FROM submissions WHERE state = 'failed'",
            4,
            Duration::from_secs(30),
        )
        .await;
    world
        .wait_count(
            "SELECT count(*) FROM submissions WHERE state = 'completed' AND http_status = 200",
            1,
            Duration::from_secs(30),
        )
        .await;
    let client = world.pool.get().await.expect("client");
    for ((how, expected), task) in cases.iter().zip(&tasks) {
        let row = client
            .query_one(
                "SELECT s.tries, s.error, t.status FROM submissions s
                 JOIN tasks t ON t.id = s.task_id WHERE t.id = $1",
                &[&task.row],
            )
            .await
            .expect("submission row");
        let tries: i16 = row.get(0);
        let error: Option<String> = row.get(1);
        let status: String = row.get(2);
        let error = error.unwrap_or_default();
        assert_eq!(tries, 1, "{}: sent again", how.label());
        assert!(
            error.contains(expected),
            "{}: recorded {error:?}",
            how.label()
        );
        assert!(error.len() < 4096, "{}: {} bytes", how.label(), error.len());
        assert_eq!(status, "failed", "{}", how.label());
        // The validator saw exactly one submission.
        assert_eq!(world.events_about("submit", &task.task_id).len(), 1);
    }
    drop(client);
    assert_eq!(world.events_about("submit", &healthy.task_id).len(), 1);
    world.finish().await;
}
