//! The broker node restarting under a running publisher and consumer (the whole node stopped,
//! then started again on the same data): both recover by themselves and no confirmed message
//! is lost. The node is a private one (`splatfleet_tests::private_broker`, as the fault suite
//! uses): the machine's shared RabbitMQ, and any fleet on it, is never touched.
//!
//! A full node restart, not `stop_app`/`start_app`: on RabbitMQ 3.10.8 `start_app` leaves the
//! at-least-once dead-letter supervisor (`rabbit_fifo_dlx_sup`) stopped, after which every
//! new queue with `x-dead-letter-strategy=at-least-once` fails to declare with
//! INTERNAL_ERROR until the node restarts.

use std::{collections::HashSet, time::Duration};

use splatfleet_common::{
    broker::{Broker, Disposition},
    config::AmqpUrl,
    messages::{TaskKind, TaskMsg, ValidatorRef},
};
use splatfleet_tests::{broker_settings, private_broker::PrivateBroker, unique_name};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn task(id: String) -> TaskMsg {
    TaskMsg {
        task_id: id,
        validator: ValidatorRef {
            uid: 1,
            hotkey: "5Hk".into(),
            ip: "127.0.0.1".into(),
            port: 1,
        },
        kind: TaskKind::Text,
        prompt: "a lamp".into(),
        validation_threshold: 0.6,
        throttle_period_secs: 30,
        pulled_at_unix_ms: 0,
        deadline_unix_ms: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_and_consumer_survive_a_broker_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let node = PrivateBroker::start(&dir.path().join("rabbitmq"))
        .unwrap_or_else(|err| panic!("private RabbitMQ node: {err}"));
    let settings = splatfleet_common::config::BrokerSettings {
        url: AmqpUrl::new(&node.amqp_url()),
        ..broker_settings()
    };
    let broker = Broker::connect(&settings, &unique_name())
        .await
        .expect("connect");
    broker.declare_topology().await.expect("topology");
    let publisher = broker.publisher::<TaskMsg>().await.expect("publisher");
    let stop = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = broker
        .consumer::<TaskMsg>(4, "tasks")
        .await
        .expect("consumer");
    let consumer_loop = tokio::spawn(consumer.run(stop.clone(), move |incoming| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(incoming.body.task_id);
            Disposition::Ack
        }
    }));

    let mut sent = Vec::new();
    for i in 0..10 {
        let id = format!("before-{i}");
        publisher
            .publish(&task(id.clone()))
            .await
            .expect("publish before the restart");
        sent.push(id);
    }
    node.stop();
    // Published while the broker is down: waits for recovery, then goes through.
    let during = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..5 {
            let id = format!("during-{i}");
            publisher
                .publish(&task(id.clone()))
                .await
                .expect("publish across the restart");
            ids.push(id);
        }
        (publisher, ids)
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let node = tokio::task::spawn_blocking(move || {
        node.start_again()
            .unwrap_or_else(|err| panic!("starting the node again: {err}"));
        node
    })
    .await
    .expect("join");
    let (publisher, during_ids) = tokio::time::timeout(Duration::from_secs(60), during)
        .await
        .expect("publisher recovered within 60 s")
        .expect("join");
    sent.extend(during_ids);
    for i in 0..10 {
        let id = format!("after-{i}");
        publisher
            .publish(&task(id.clone()))
            .await
            .expect("publish after the restart");
        sent.push(id);
    }

    let mut received = HashSet::new();
    while received.len() < sent.len() {
        let id = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "consumer recovered; still missing {:?}",
                    sent.iter()
                        .filter(|id| !received.contains(*id))
                        .collect::<Vec<_>>()
                )
            })
            .expect("channel open");
        received.insert(id);
    }
    assert!(sent.iter().all(|id| received.contains(id)));
    stop.cancel();
    consumer_loop
        .await
        .expect("join")
        .expect("consumer stopped cleanly");
    broker.close().await;
    drop(node);
}
