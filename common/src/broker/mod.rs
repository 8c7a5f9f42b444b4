//! RabbitMQ: one connection per process with heartbeats and automatic recovery after a
//! broker restart, the queue topology, and typed publishing and consuming of [`Message`]s.
//!
//! [`Message`]: crate::messages::Message

mod connection;
mod consumer;
mod envelope;
mod publisher;
mod topology;

pub use connection::{Broker, BrokerError};
pub use consumer::{ConsumeError, Consumer, Disposition, Incoming};
pub use envelope::{decode, encode, DecodeError, Envelope, MAX_MESSAGE_BYTES};
pub use publisher::{PublishError, Publisher};
pub use topology::{queue_counts, QueueCounts, QueueKind, Topology};
