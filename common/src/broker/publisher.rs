//! Typed publishing: persistent, `mandatory`, confirmed by the broker. An unroutable
//! (returned) message or a nack is an error, never a silent loss. A publish interrupted by a
//! connection failure waits for recovery and is sent again (at-least-once).

use std::{marker::PhantomData, time::Instant};

use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    BasicProperties, Channel, Confirmation,
};

use super::{
    envelope::{encode, CONTENT_TYPE},
    topology::{routing_key, Topology},
};
use crate::messages::Message;

/// How many times one publish waits for recovery before giving up.
const MAX_RECOVERY_WAITS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("message {message_id} could not be encoded: {source}")]
    Encode {
        message_id: String,
        source: bincode::Error,
    },
    #[error("message {message_id} was returned as unroutable by exchange `{exchange}` ({reply}); is the queue declared?")]
    Unroutable {
        message_id: String,
        exchange: String,
        reply: String,
    },
    #[error(
        "the broker refused message {message_id} (nack): the queue may be full or unavailable"
    )]
    Nacked { message_id: String },
    #[error("publishing message {message_id} failed: {source}")]
    Broker {
        message_id: String,
        source: lapin::Error,
    },
}

/// Publishes `M` to its queue through the fleet's exchange.
#[derive(Debug)]
pub struct Publisher<M> {
    channel: Channel,
    exchange: String,
    queue: String,
    _message: PhantomData<fn(M)>,
}

impl<M: Message> Publisher<M> {
    pub(crate) async fn open(channel: Channel, topology: &Topology) -> lapin::Result<Self> {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            exchange: topology.exchange(),
            queue: topology.queue(M::QUEUE),
            _message: PhantomData,
        })
    }

    /// Publishes and waits for the broker's confirm.
    pub async fn publish(&self, message: &M) -> Result<(), PublishError> {
        let message_id = message.message_id().to_owned();
        let payload = encode(message).map_err(|source| PublishError::Encode {
            message_id: message_id.clone(),
            source,
        })?;
        let started = Instant::now();
        let mut recoveries = 0;
        loop {
            match self.try_publish(&payload, &message_id).await {
                Ok(confirmation) => {
                    self.check(confirmation, &message_id)?;
                    let queue = self.queue.clone();
                    metrics::counter!("splatfleet_broker_published_total", "queue" => queue.clone()).increment(1);
                    metrics::histogram!("splatfleet_broker_publish_seconds", "queue" => queue.clone())
                        .record(started.elapsed().as_secs_f64());
                    metrics::histogram!("splatfleet_broker_message_bytes", "queue" => queue)
                        .record(payload.len() as f64);
                    return Ok(());
                }
                Err(source) if recoveries < MAX_RECOVERY_WAITS && source.can_be_recovered() => {
                    recoveries += 1;
                    tracing::warn!(%message_id, err = %source, "publish interrupted; waiting for the broker to recover");
                    metrics::counter!("splatfleet_broker_recoveries_total").increment(1);
                    self.channel
                        .wait_for_recovery(source)
                        .await
                        .map_err(|source| PublishError::Broker {
                            message_id: message_id.clone(),
                            source,
                        })?;
                }
                Err(source) => return Err(PublishError::Broker { message_id, source }),
            }
        }
    }

    async fn try_publish(&self, payload: &[u8], message_id: &str) -> lapin::Result<Confirmation> {
        let properties = BasicProperties::default()
            .with_content_type(CONTENT_TYPE.into())
            .with_message_id(message_id.into())
            .with_delivery_mode(2)
            .with_timestamp(chrono::Utc::now().timestamp().max(0).unsigned_abs());
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        self.channel
            .basic_publish(
                self.exchange.as_str().into(),
                routing_key(M::QUEUE),
                options,
                payload,
                properties,
            )
            .await?
            .await
    }

    fn check(&self, confirmation: Confirmation, message_id: &str) -> Result<(), PublishError> {
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(PublishError::Unroutable {
                    message_id: message_id.to_owned(),
                    exchange: self.exchange.clone(),
                    reply: format!("{} {}", returned.reply_code, returned.reply_text),
                })
            }
            Confirmation::Nack(None) => Err(PublishError::Nacked {
                message_id: message_id.to_owned(),
            }),
            // Confirm mode is enabled on open, so the broker always confirms.
            Confirmation::NotRequested => Ok(()),
        }
    }
}
