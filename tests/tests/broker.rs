//! The broker against a real RabbitMQ: typed round trips, unroutable publishes, poison
//! messages, the delivery limit, and recovery from a server-side connection close. Each test
//! uses its own queue prefix.

use std::{sync::Arc, time::Duration};

use lapin::{options::BasicPublishOptions, BasicProperties};
use splatfleet_common::{
    broker::{queue_counts, Broker, Disposition, PublishError, QueueKind},
    messages::{
        ArtifactRef, AttemptRecord, ResultMsg, ResultOutcome, TaskKind, TaskMsg, ValidatorRef,
    },
};
use splatfleet_tests::{
    broker_connection_heartbeat, broker_settings, close_broker_connection, delete_topology,
    unique_name,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

fn validator() -> ValidatorRef {
    ValidatorRef {
        uid: 7,
        hotkey: "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi".into(),
        ip: "127.0.0.1".into(),
        port: 9000,
    }
}

fn task(id: &str) -> TaskMsg {
    TaskMsg {
        task_id: id.into(),
        validator: validator(),
        kind: TaskKind::Image,
        prompt: "iVBORw0KGgo=".repeat(1000),
        validation_threshold: 0.6,
        throttle_period_secs: 30,
        pulled_at_unix_ms: 1_700_000_000_000,
        deadline_unix_ms: 1_700_000_600_000,
    }
}

fn result(id: &str) -> ResultMsg {
    let ply = ArtifactRef {
        key: "ply/ab".into(),
        sha256: "ab".repeat(32),
        bytes: 1234,
    };
    ResultMsg {
        task_id: id.into(),
        validator: validator(),
        kind: TaskKind::Text,
        prompt: "a wooden chair".into(),
        outcome: ResultOutcome::Ready {
            ply: ply.clone(),
            spz: None,
            preview: None,
            local_score: 0.81,
            chosen_attempt: 0,
        },
        attempts: vec![AttemptRecord {
            params: [("seed".to_string(), "42".to_string())].into(),
            started_at_unix_ms: 1,
            stage_ms: [("generate".to_string(), 9000)].into(),
            gaussian_count: Some(250_000),
            local_score: Some(0.81),
            gate_passed: Some(true),
            gate_metrics: [("coverage".to_string(), 0.4)].into(),
            ply: Some(ply),
            error: None,
        }],
        worker: "host/gpu0".into(),
        finished_at_unix_ms: 2,
    }
}

type ConsumerLoop = tokio::task::JoinHandle<Result<(), splatfleet_common::broker::ConsumeError>>;

/// Runs a consumer of `M` that forwards bodies to a channel and answers `disposition`.
fn spawn_collector<M: splatfleet_common::messages::Message + Clone>(
    consumer: splatfleet_common::broker::Consumer<M>,
    stop: CancellationToken,
    disposition: Disposition,
) -> (mpsc::UnboundedReceiver<(M, u32)>, ConsumerLoop) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = tokio::spawn(consumer.run(stop, move |incoming| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((incoming.body, incoming.delivery_count));
            disposition
        }
    }));
    (rx, handle)
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("message arrives in time")
        .expect("channel open")
}

/// Counts messages waiting in `queue` (passive declare).
async fn ready_count(broker: &Broker, queue: &str) -> u32 {
    let channel = broker.channel().await.expect("channel");
    queue_counts(&channel, queue)
        .await
        .expect("queue exists")
        .ready
}

async fn wait_for_count(broker: &Broker, queue: &str, want: u32) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let count = ready_count(broker, queue).await;
        if count == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue} has {count} messages, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn task_and_result_round_trip_through_their_queues() {
    let settings = broker_settings();
    let broker = Broker::connect(&settings, &unique_name())
        .await
        .expect("connect");
    broker.declare_topology().await.expect("topology");
    // Declaring twice is harmless: every role does it at start.
    broker.declare_topology().await.expect("topology again");

    broker
        .publisher::<TaskMsg>()
        .await
        .expect("publisher")
        .publish(&task("t-1"))
        .await
        .expect("task published");
    broker
        .publisher::<ResultMsg>()
        .await
        .expect("publisher")
        .publish(&result("t-1"))
        .await
        .expect("result published");

    let stop = CancellationToken::new();
    let (mut tasks, task_loop) = spawn_collector(
        broker
            .consumer::<TaskMsg>(1, "tasks")
            .await
            .expect("consumer"),
        stop.clone(),
        Disposition::Ack,
    );
    let (mut results, result_loop) = spawn_collector(
        broker
            .consumer::<ResultMsg>(4, "results")
            .await
            .expect("consumer"),
        stop.clone(),
        Disposition::Ack,
    );
    assert_eq!(recv(&mut tasks).await.0, task("t-1"));
    assert_eq!(recv(&mut results).await.0, result("t-1"));
    stop.cancel();
    task_loop.await.expect("join").expect("clean stop");
    result_loop.await.expect("join").expect("clean stop");

    let topology = broker.topology().clone();
    wait_for_count(&broker, &topology.queue(QueueKind::Tasks), 0).await;
    wait_for_count(&broker, &topology.queue(QueueKind::Results), 0).await;
    broker.close().await;
    delete_topology(&settings).await;
}

#[tokio::test]
async fn unroutable_publish_is_an_error() {
    let settings = broker_settings();
    let broker = Broker::connect(&settings, &unique_name())
        .await
        .expect("connect");
    broker.declare_topology().await.expect("topology");
    let channel = broker.channel().await.expect("channel");
    channel
        .queue_delete(
            broker.topology().queue(QueueKind::Tasks).into(),
            Default::default(),
        )
        .await
        .expect("delete the tasks queue");

    let err = broker
        .publisher::<TaskMsg>()
        .await
        .expect("publisher")
        .publish(&task("t-lost"))
        .await
        .expect_err("must not vanish");
    assert!(
        matches!(err, PublishError::Unroutable { ref message_id, .. } if message_id == "t-lost"),
        "{err:?}"
    );
    assert!(err.to_string().contains("t-lost"), "{err}");
    broker.close().await;
    delete_topology(&settings).await;
}

#[tokio::test]
async fn undecodable_message_is_dead_lettered_and_the_consumer_keeps_running() {
    let settings = broker_settings();
    let broker = Broker::connect(&settings, &unique_name())
        .await
        .expect("connect");
    broker.declare_topology().await.expect("topology");
    let topology = broker.topology().clone();
    let raw = broker.channel().await.expect("channel");
    raw.basic_publish(
        topology.exchange().into(),
        "tasks".into(),
        BasicPublishOptions::default(),
        b"definitely not bincode",
        BasicProperties::default().with_message_id("poison-1".into()),
    )
    .await
    .expect("publish garbage");

    let stop = CancellationToken::new();
    let (mut tasks, consumer_loop) = spawn_collector(
        broker
            .consumer::<TaskMsg>(1, "tasks")
            .await
            .expect("consumer"),
        stop.clone(),
        Disposition::Ack,
    );
    wait_for_count(&broker, &topology.dead_queue(), 1).await;

    broker
        .publisher::<TaskMsg>()
        .await
        .expect("publisher")
        .publish(&task("t-after"))
        .await
        .expect("publish");
    assert_eq!(recv(&mut tasks).await.0.task_id, "t-after");
    assert!(
        !consumer_loop.is_finished(),
        "consumer must survive a poison message"
    );

    let dead = raw
        .basic_get(topology.dead_queue().into(), Default::default())
        .await
        .expect("get")
        .expect("a dead letter");
    assert_eq!(dead.delivery.data, b"definitely not bincode");
    assert_eq!(
        dead.delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str()),
        Some("poison-1")
    );
    stop.cancel();
    consumer_loop.await.expect("join").expect("clean stop");
    broker.close().await;
    delete_topology(&settings).await;
}

#[tokio::test]
async fn message_requeued_past_the_delivery_limit_is_dead_lettered() {
    let settings = broker_settings();
    let limit = settings.delivery_limit;
    let broker = Broker::connect(&settings, &unique_name())
        .await
        .expect("connect");
    broker.declare_topology().await.expect("topology");
    let topology = broker.topology().clone();
    broker
        .publisher::<TaskMsg>()
        .await
        .expect("publisher")
        .publish(&task("t-retry"))
        .await
        .expect("publish");

    let stop = CancellationToken::new();
    let (mut tasks, consumer_loop) = spawn_collector(
        broker
            .consumer::<TaskMsg>(1, "tasks")
            .await
            .expect("consumer"),
        stop.clone(),
        Disposition::Requeue,
    );
    // The first delivery plus `limit` redeliveries, then the broker dead-letters it.
    let mut counts = Vec::new();
    for _ in 0..=limit {
        counts.push(recv(&mut tasks).await.1);
    }
    wait_for_count(&broker, &topology.dead_queue(), 1).await;
    assert_eq!(counts.first(), Some(&0));
    assert_eq!(counts.last(), Some(&limit));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), tasks.recv())
            .await
            .is_err(),
        "no delivery after the limit"
    );
    stop.cancel();
    consumer_loop.await.expect("join").expect("clean stop");
    broker.close().await;
    delete_topology(&settings).await;
}

#[tokio::test]
async fn connection_closed_by_the_broker_recovers_and_loses_no_message() {
    let settings = broker_settings();
    let name = unique_name();
    let broker = Arc::new(Broker::connect(&settings, &name).await.expect("connect"));
    broker.declare_topology().await.expect("topology");
    let publisher = broker.publisher::<TaskMsg>().await.expect("publisher");
    let stop = CancellationToken::new();
    let (mut tasks, consumer_loop) = spawn_collector(
        broker
            .consumer::<TaskMsg>(4, "tasks")
            .await
            .expect("consumer"),
        stop.clone(),
        Disposition::Ack,
    );

    const BEFORE: usize = 20;
    const AFTER: usize = 20;
    for i in 0..BEFORE {
        publisher
            .publish(&task(&format!("before-{i}")))
            .await
            .expect("publish before the failure");
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < BEFORE {
        seen.insert(recv(&mut tasks).await.0.task_id);
    }

    assert_eq!(
        broker_connection_heartbeat(&name),
        Some(u32::from(settings.heartbeat_secs)),
        "heartbeats negotiated as configured"
    );
    assert_eq!(
        close_broker_connection(&name),
        1,
        "exactly our connection is closed"
    );
    for i in 0..AFTER {
        publisher
            .publish(&task(&format!("after-{i}")))
            .await
            .expect("publish after the failure");
    }
    while seen.len() < BEFORE + AFTER {
        seen.insert(recv(&mut tasks).await.0.task_id);
    }
    for i in 0..AFTER {
        assert!(seen.contains(&format!("after-{i}")));
    }
    assert!(
        !consumer_loop.is_finished(),
        "consumer survived the failure"
    );
    stop.cancel();
    consumer_loop.await.expect("join").expect("clean stop");
    wait_for_count(&broker, &broker.topology().queue(QueueKind::Tasks), 0).await;
    broker.close().await;
    delete_topology(&settings).await;
}
