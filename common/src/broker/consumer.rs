//! Typed consuming with manual acks and a per-consumer prefetch (`basic.qos`,
//! `global = false`). Each delivery is decoded and handed to the role's handler, whose
//! [`Disposition`] decides ack, requeue or dead-letter. A delivery that does not decode is
//! rejected without requeue so it dead-letters, and is logged with its message id: a poison
//! message never crash-loops a consumer. On shutdown, handlers still running after the
//! consumer's drain deadline are abandoned and their deliveries nacked for redelivery.

use std::{future::Future, marker::PhantomData, sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
        BasicQosOptions, BasicRejectOptions,
    },
    types::{AMQPValue, FieldTable},
    Channel,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{envelope::decode, topology::Topology};
use crate::messages::Message;

/// What to do with a delivery once its handler is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done; remove it from the queue.
    Ack,
    /// Not done; deliver again (counts towards the delivery limit).
    Requeue,
    /// Will never succeed; send it to the dead-letter queue.
    DeadLetter,
}

/// One decoded delivery.
#[derive(Debug)]
pub struct Incoming<M> {
    pub body: M,
    pub message_id: Option<String>,
    pub redelivered: bool,
    /// Earlier deliveries of this message (quorum queues count them).
    pub delivery_count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("consuming from {queue} failed and the connection did not recover: {source}")]
    Broker { queue: String, source: lapin::Error },
    #[error("the broker cancelled the consumer on {queue} (was the queue deleted?)")]
    Cancelled { queue: String },
}

/// A consumer of `M` on its queue, started but not yet handling deliveries.
#[derive(Debug)]
pub struct Consumer<M> {
    channel: Channel,
    inner: lapin::Consumer,
    queue: String,
    /// How long handlers may run on after a stop before they are abandoned and nacked.
    drain: Option<Duration>,
    _message: PhantomData<fn() -> M>,
}

impl<M: Message> Consumer<M> {
    pub(crate) async fn open(
        channel: Channel,
        topology: &Topology,
        prefetch: u16,
        tag: &str,
    ) -> lapin::Result<Self> {
        let queue = topology.queue(M::QUEUE);
        channel
            .basic_qos(prefetch.max(1), BasicQosOptions { global: false })
            .await?;
        let inner = channel
            .basic_consume(
                queue.as_str().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Self {
            channel,
            inner,
            queue,
            drain: None,
            _message: PhantomData,
        })
    }

    /// After a stop, wait at most `drain` for running handlers; then drop them and nack their
    /// deliveries so another consumer takes them (default: wait for them however long).
    #[must_use]
    pub fn drain_within(mut self, drain: Duration) -> Self {
        self.drain = Some(drain);
        self
    }

    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Handles deliveries until `stop` is cancelled, then stops consuming and waits for the
    /// handlers in flight. Handlers run concurrently, at most `prefetch` at once.
    pub async fn run<H, F>(
        mut self,
        stop: CancellationToken,
        handler: H,
    ) -> Result<(), ConsumeError>
    where
        H: Fn(Incoming<M>) -> F + Send + Sync + 'static,
        F: Future<Output = Disposition> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let abandon = CancellationToken::new();
        let mut in_flight = JoinSet::new();
        let result = loop {
            let next = tokio::select! {
                () = stop.cancelled() => break Ok(()),
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
                next = self.inner.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    if let Some(incoming) = self.decode(&delivery).await {
                        let handler = Arc::clone(&handler);
                        let queue = self.queue.clone();
                        let abandon = abandon.clone();
                        in_flight.spawn(async move {
                            let disposition = tokio::select! {
                                disposition = handler(incoming) => disposition,
                                () = abandon.cancelled() => {
                                    tracing::warn!(queue, "drain deadline passed; nacking an unfinished delivery for redelivery");
                                    Disposition::Requeue
                                }
                            };
                            settle(delivery, disposition, &queue).await;
                        });
                    }
                }
                Some(Err(err)) => {
                    tracing::warn!(queue = %self.queue, %err, "consumer interrupted; waiting for the broker to recover");
                    metrics::counter!("splatfleet_broker_recoveries_total").increment(1);
                    if let Err(source) = self.channel.wait_for_recovery(err).await {
                        break Err(ConsumeError::Broker {
                            queue: self.queue.clone(),
                            source,
                        });
                    }
                }
                None => {
                    break Err(ConsumeError::Cancelled {
                        queue: self.queue.clone(),
                    })
                }
            }
        };
        // Stop new deliveries first; unacked prefetched ones return to the queue on close.
        let _ = self
            .channel
            .basic_cancel(self.inner.tag(), BasicCancelOptions::default())
            .await;
        let drained = async { while in_flight.join_next().await.is_some() {} };
        match self.drain {
            Some(deadline) => {
                if tokio::time::timeout(deadline, drained).await.is_err() {
                    abandon.cancel();
                    while in_flight.join_next().await.is_some() {}
                }
            }
            None => drained.await,
        }
        let _ = self.channel.close(200, "consumer stopped".into()).await;
        result
    }

    /// Decodes a delivery, or rejects it to the dead-letter queue and returns `None`.
    async fn decode(&self, delivery: &Delivery) -> Option<Incoming<M>> {
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string());
        match decode::<M>(&delivery.data) {
            Ok(body) => Some(Incoming {
                body,
                message_id,
                redelivered: delivery.redelivered,
                delivery_count: delivery_count(delivery),
            }),
            Err(err) => {
                tracing::warn!(
                    queue = %self.queue,
                    message_id = message_id.as_deref().unwrap_or("<none>"),
                    bytes = delivery.data.len(),
                    %err,
                    "undecodable message; dead-lettering it"
                );
                metrics::counter!("splatfleet_broker_consumed_total", "queue" => self.queue.clone(), "outcome" => "undecodable")
                    .increment(1);
                if let Err(err) = delivery
                    .acker
                    .reject(BasicRejectOptions { requeue: false })
                    .await
                {
                    tracing::warn!(%err, "rejecting an undecodable message failed; it will be redelivered");
                }
                None
            }
        }
    }
}

async fn settle(delivery: Delivery, disposition: Disposition, queue: &str) {
    let (outcome, result) = match disposition {
        Disposition::Ack => ("ack", delivery.acker.ack(BasicAckOptions::default()).await),
        Disposition::Requeue => (
            "requeue",
            delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await,
        ),
        Disposition::DeadLetter => (
            "dead_letter",
            delivery
                .acker
                .reject(BasicRejectOptions { requeue: false })
                .await,
        ),
    };
    metrics::counter!("splatfleet_broker_consumed_total", "queue" => queue.to_owned(), "outcome" => outcome)
        .increment(1);
    if let Err(err) = result {
        // The channel died under us: the broker requeues the message, and handlers are
        // idempotent, so the next delivery finishes the job.
        tracing::warn!(queue, outcome, %err, "settling a delivery failed; it will be redelivered");
    }
}

fn delivery_count(delivery: &Delivery) -> u32 {
    let Some(headers) = delivery.properties.headers() else {
        return 0;
    };
    match headers.inner().get("x-delivery-count") {
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n).unwrap_or(u32::MAX),
        Some(AMQPValue::LongInt(n)) => u32::try_from(*n).unwrap_or(u32::MAX),
        Some(AMQPValue::ShortInt(n)) => u32::try_from(*n).unwrap_or(u32::MAX),
        _ => 0,
    }
}
