//! Queue and exchange names under the configured prefix, and their declaration: quorum
//! queues with an explicit delivery limit and at-least-once dead-lettering into
//! `<prefix>.dead`.

use lapin::{
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, ShortString},
    Channel, ExchangeKind,
};

/// The queues messages travel on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    Tasks,
    Results,
}

impl QueueKind {
    pub fn suffix(self) -> &'static str {
        match self {
            QueueKind::Tasks => "tasks",
            QueueKind::Results => "results",
        }
    }
}

/// Every name the fleet declares, derived from one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub prefix: String,
    pub delivery_limit: u32,
}

impl Topology {
    pub fn new(prefix: &str, delivery_limit: u32) -> Self {
        Self {
            prefix: prefix.to_owned(),
            delivery_limit,
        }
    }

    /// The direct exchange that routes tasks and results to their queues.
    pub fn exchange(&self) -> String {
        self.prefix.clone()
    }

    /// The fanout exchange that collects dead letters.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    pub fn queue(&self, kind: QueueKind) -> String {
        format!("{}.{}", self.prefix, kind.suffix())
    }

    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// Declares exchanges, queues and bindings; idempotent when the arguments match.
    pub(crate) async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let durable_queue = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                self.exchange().into(),
                ExchangeKind::Direct,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                self.dead_letter_exchange().into(),
                ExchangeKind::Fanout,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;

        let mut dead_args = FieldTable::default();
        dead_args.insert("x-queue-type".into(), text("quorum"));
        channel
            .queue_declare(self.dead_queue().into(), durable_queue, dead_args)
            .await?;
        channel
            .queue_bind(
                self.dead_queue().into(),
                self.dead_letter_exchange().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        for kind in [QueueKind::Tasks, QueueKind::Results] {
            channel
                .queue_declare(
                    self.queue(kind).into(),
                    durable_queue,
                    self.work_queue_args(),
                )
                .await?;
            channel
                .queue_bind(
                    self.queue(kind).into(),
                    self.exchange().into(),
                    kind.suffix().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    fn work_queue_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), text("quorum"));
        // RabbitMQ 3.10 has no default delivery limit: without one a poison message loops forever.
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            text(&self.dead_letter_exchange()),
        );
        // At-least-once dead-lettering needs reject-publish overflow on the source queue.
        args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        args.insert("x-overflow".into(), text("reject-publish"));
        args
    }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

/// What a passive declare reports about a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    /// Messages ready for delivery (not counting unacknowledged ones).
    pub ready: u32,
    pub consumers: u32,
}

/// Reads a queue's counts with a passive declare; an error if the queue does not exist.
pub async fn queue_counts(channel: &Channel, queue: &str) -> lapin::Result<QueueCounts> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let declared = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await?;
    Ok(QueueCounts {
        ready: declared.message_count(),
        consumers: declared.consumer_count(),
    })
}

/// Kept for callers that need the routing key type.
pub(crate) fn routing_key(kind: QueueKind) -> ShortString {
    kind.suffix().into()
}
