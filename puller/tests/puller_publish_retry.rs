//! A publish the broker cannot route (the tasks queue unbound from the exchange, so the
//! mandatory message comes back) leaves no task row: the task is recorded and published in
//! one transaction, so the record rolls back with the publish. The pull is recorded as failed
//! (the validator backs off), and the validator, still holding the task, hands it out again;
//! once the binding is back that pull publishes it and a worker gets it exactly once.

mod support;

use std::{sync::atomic::Ordering, time::Duration};

use lapin::{options::QueueBindOptions, types::FieldTable};
use splatfleet_common::broker::QueueKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unroutable_publish_leaves_no_row_and_the_task_comes_again() {
    let mut world = support::start(1).await;
    world.edit_config(|config| {
        config.puller.task_deadline_secs = 60;
        config.puller.publish_tries = 1;
        config.puller.backoff_initial_ms = 200;
        config.puller.backoff_max_ms = 400;
    });
    let _submitter = support::spawn_submitter(&world);
    let topology = world.broker.topology().clone();
    let (queue, exchange) = (topology.queue(QueueKind::Tasks), topology.exchange());
    // No workers yet, so no pulls: the puller declares (and binds) its topology at start,
    // then waits for capacity.
    let puller = support::spawn_puller(&world);
    let channel = world.broker.channel().await.expect("channel");
    channel
        .queue_unbind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "tasks".into(),
            FieldTable::default(),
        )
        .await
        .expect("unbind");
    let work = world
        .spawn_stand_in_workers(1, Duration::from_millis(50), None)
        .await;

    let client = world.pool.get().await.expect("db");
    let mut refused = None;
    for _ in 0..100 {
        let row = client
            .query_opt(
                "SELECT last_pull_error FROM validator_state
                 WHERE last_pull_error LIKE 'publishing task%'",
                &[],
            )
            .await
            .expect("query");
        if let Some(row) = row {
            refused = Some(row.get::<_, String>(0));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reason = refused.expect("the failed publish is recorded as the pull's error");
    assert!(reason.contains("unroutable"), "{reason}");
    let rows: i64 = client
        .query_one("SELECT count(*) FROM tasks", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 0, "a task whose publish failed has no row");
    assert!(work.deliveries.lock().expect("log").is_empty());

    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "tasks".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind again");
    let mut delivered = false;
    for _ in 0..100 {
        if work.submitted.load(Ordering::SeqCst) >= 1 {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(puller);
    assert!(
        delivered,
        "the task was never published once the binding was back"
    );
    let deliveries = work.deliveries.lock().expect("log").clone();
    assert!(deliveries.values().all(|&n| n == 1), "{deliveries:?}");
    let row = client
        .query_one(
            "SELECT publish_attempts, published_at IS NOT NULL FROM tasks ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .expect("query");
    assert_eq!(
        row.get::<_, i32>(0),
        1,
        "the row records the try that was confirmed"
    );
    assert!(row.get::<_, bool>(1));
    assert!(world.violations().is_empty());
    drop(client);
    world.finish().await;
}
