//! A publish the broker cannot route (the tasks queue unbound from the exchange, so the
//! mandatory message comes back) is retried: the task row records the failed tries, and once
//! the binding is back the sweep (not the pull job, which gives up after `publish_tries`)
//! publishes it and a worker gets it exactly once.

mod support;

use std::{sync::atomic::Ordering, time::Duration};

use lapin::{options::QueueBindOptions, types::FieldTable};
use splatfleet_common::broker::QueueKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unroutable_publish_is_retried_and_recorded() {
    let mut world = support::start(1).await;
    world.edit_config(|config| {
        config.puller.task_deadline_secs = 60;
        config.puller.publish_tries = 1;
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
                "SELECT publish_attempts, status_reason FROM tasks
                 WHERE published_at IS NULL AND status_reason LIKE 'publish failed%'",
                &[],
            )
            .await
            .expect("query");
        if let Some(row) = row {
            refused = Some((row.get::<_, i32>(0), row.get::<_, String>(1)));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (tries, reason) = refused.expect("the failed publish is recorded on the task row");
    assert!(tries >= 1, "{tries} tries");
    assert!(reason.contains("unroutable"), "{reason}");
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
    assert!(delivered, "the sweep never republished the task");
    let deliveries = work.deliveries.lock().expect("log").clone();
    assert!(deliveries.values().all(|&n| n == 1), "{deliveries:?}");
    let row = client
        .query_one(
            "SELECT publish_attempts, published_at IS NOT NULL FROM tasks ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .expect("query");
    assert!(
        row.get::<_, i32>(0) > tries,
        "the successful try is counted too"
    );
    assert!(row.get::<_, bool>(1));
    assert!(world.violations().is_empty());
    drop(client);
    world.finish().await;
}
