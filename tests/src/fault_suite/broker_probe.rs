//! Probes of the private broker's dead-lettering around `rabbitmqctl stop_app` / `start_app`.
//! RabbitMQ 3.10.8 is known to leave `rabbit_fifo_dlx_sup` stopped after `start_app`; these
//! probes find out what that breaks: declaring a new quorum queue with at-least-once
//! dead-lettering (what a fleet with a new prefix, or a role redeclaring after the queues were
//! deleted, does), and dead-lettering out of a queue declared before the restart (what the
//! fleet's existing queues do when a message passes its delivery limit).

use std::time::Duration;

use lapin::{
    options::{
        BasicGetOptions, BasicPublishOptions, BasicRejectOptions, ExchangeDeclareOptions,
        QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
    BasicProperties, Connection, ConnectionProperties, ExchangeKind,
};

const DLX: &str = "sf-probe.dlx";
const DEAD: &str = "sf-probe.dead";
const EXISTING: &str = "sf-probe.existing";

fn quorum_args(delivery_limit: i64) -> FieldTable {
    let mut args = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(s.into());
    args.insert(ShortString::from("x-queue-type"), text("quorum"));
    args.insert(ShortString::from("x-dead-letter-exchange"), text(DLX));
    args.insert(
        ShortString::from("x-dead-letter-strategy"),
        text("at-least-once"),
    );
    args.insert(ShortString::from("x-overflow"), text("reject-publish"));
    args.insert(
        ShortString::from("x-delivery-limit"),
        AMQPValue::LongLongInt(delivery_limit),
    );
    args
}

async fn connect(url: &str) -> Result<Connection, String> {
    tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|e| format!("connect: {e}"))
}

/// Declares the dead-letter exchange and queue and a quorum queue dead-lettering into them,
/// before any restart, so later probes can test dead-lettering out of an old queue.
pub async fn prepare(url: &str) -> Result<(), String> {
    let connection = connect(url).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    channel
        .exchange_declare(
            DLX.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("declare {DLX}: {e}"))?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let mut dead_args = FieldTable::default();
    dead_args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(DEAD.into(), durable, dead_args)
        .await
        .map_err(|e| format!("declare {DEAD}: {e}"))?;
    channel
        .queue_bind(
            DEAD.into(),
            DLX.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("bind {DEAD}: {e}"))?;
    channel
        .queue_declare(EXISTING.into(), durable, quorum_args(1))
        .await
        .map_err(|e| format!("declare {EXISTING}: {e}"))?;
    let _ = connection.close(200, "probe ready".into()).await;
    Ok(())
}

/// Declares (then deletes) a new quorum queue with at-least-once dead-lettering.
pub async fn declare_new_queue(url: &str, name: &str) -> Result<(), String> {
    let connection = connect(url).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    let declared = channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            quorum_args(5),
        )
        .await;
    let outcome = match declared {
        Ok(_) => {
            let _ = channel
                .queue_delete(name.into(), QueueDeleteOptions::default())
                .await;
            Ok(())
        }
        Err(e) => Err(format!("declaring a new at-least-once quorum queue: {e}")),
    };
    let _ = connection.close(200, "probe done".into()).await;
    outcome
}

/// Publishes one message to the queue declared by [`prepare`], rejects it without requeue,
/// and checks that it reaches the dead-letter queue within a few seconds.
pub async fn dead_letter_from_existing_queue(url: &str) -> Result<(), String> {
    let connection = connect(url).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    let dead_before = channel
        .queue_declare(
            DEAD.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("passive declare {DEAD}: {e}"))?
        .message_count();
    channel
        .basic_publish(
            "".into(),
            EXISTING.into(),
            BasicPublishOptions::default(),
            b"probe",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .map_err(|e| format!("publish: {e}"))?
        .await
        .map_err(|e| format!("publish confirm: {e}"))?;
    let mut rejected = false;
    for _ in 0..50 {
        let got = channel
            .basic_get(EXISTING.into(), BasicGetOptions::default())
            .await
            .map_err(|e| format!("get: {e}"))?;
        if let Some(message) = got {
            message
                .delivery
                .acker
                .reject(BasicRejectOptions { requeue: false })
                .await
                .map_err(|e| format!("reject: {e}"))?;
            rejected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut outcome = if rejected {
        Err("a rejected message did not reach the dead-letter queue".to_owned())
    } else {
        Err("the probe message never reached its queue".to_owned())
    };
    if rejected {
        for _ in 0..50 {
            let dead_now = channel
                .queue_declare(
                    DEAD.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| format!("passive declare {DEAD}: {e}"))?
                .message_count();
            if dead_now > dead_before {
                outcome = Ok(());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let _ = connection.close(200, "probe done".into()).await;
    outcome
}
