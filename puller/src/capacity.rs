//! The fleet capacity signal: how many tasks the workers can start soon. Read from
//! `<prefix>.tasks` with a passive declare (ready messages and consumer count); a task that
//! waits in the queue costs cooldown time, so the puller keeps the ready backlog under
//! consumers × `backlog_factor`, counting pulls still in flight as tasks about to be ready.

use lapin::Channel;

/// What the tasks queue says right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapacitySignal {
    /// Messages ready for delivery (not yet handed to a worker).
    pub ready: u32,
    /// Workers consuming the queue.
    pub consumers: u32,
}

impl CapacitySignal {
    /// Largest ready backlog allowed.
    pub fn backlog_limit(&self, backlog_factor: f64) -> u32 {
        (f64::from(self.consumers) * backlog_factor).floor() as u32
    }

    /// How many new pulls may start, given the pulls already in flight (each may become a
    /// ready task) and the concurrency cap.
    pub fn free_slots(
        &self,
        backlog_factor: f64,
        pulls_in_flight: usize,
        max_concurrent_pulls: usize,
    ) -> usize {
        let limit = self.backlog_limit(backlog_factor) as usize;
        let by_backlog = limit.saturating_sub(self.ready as usize + pulls_in_flight);
        let by_concurrency = max_concurrent_pulls.saturating_sub(pulls_in_flight);
        by_backlog.min(by_concurrency)
    }
}

/// Reads the queue's counts with a passive declare (fails if the queue does not exist).
pub async fn probe(channel: &Channel, queue: &str) -> lapin::Result<CapacitySignal> {
    let counts = splatfleet_common::broker::queue_counts(channel, queue).await?;
    Ok(CapacitySignal {
        ready: counts.ready,
        consumers: counts.consumers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_ready_tasks_and_pulls_in_flight() {
        let signal = CapacitySignal {
            ready: 1,
            consumers: 2,
        };
        assert_eq!(signal.free_slots(1.0, 0, 8), 1);
        assert_eq!(signal.free_slots(1.0, 1, 8), 0);
        assert_eq!(signal.free_slots(2.0, 0, 8), 3);
        assert_eq!(signal.free_slots(2.0, 0, 2), 2);
        let idle = CapacitySignal {
            ready: 0,
            consumers: 0,
        };
        assert_eq!(idle.free_slots(4.0, 0, 8), 0, "no workers, no pulls");
    }
}
