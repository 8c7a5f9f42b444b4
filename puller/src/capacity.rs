//! The fleet capacity signal, read from `<prefix>.tasks` with a passive declare (ready
//! messages and consumer count). What it allows (the backlog limit and the free pull slots)
//! is decided in [`crate::policy::CapacityRule`].

use lapin::Channel;

pub use crate::policy::CapacitySignal;

/// Reads the queue's counts with a passive declare (fails if the queue does not exist).
pub async fn probe(channel: &Channel, queue: &str) -> lapin::Result<CapacitySignal> {
    let counts = splatfleet_common::broker::queue_counts(channel, queue).await?;
    Ok(CapacitySignal {
        ready: counts.ready,
        consumers: counts.consumers,
    })
}
