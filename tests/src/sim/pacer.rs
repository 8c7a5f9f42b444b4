//! A supply limit for benchmarks: the whole simulated network hands out at most `rate` PullTask
//! answers per second, evenly spaced. A pull that arrives before its slot is held until then
//! (like a validator that is slow to answer), so a fleet pulling as fast as it can sees a
//! steady stream of tasks at the chosen rate instead of bursts.

use std::time::Duration;

use tokio::{sync::Mutex, time::Instant};

/// Evenly spaced slots shared by every validator of a network.
#[derive(Debug)]
pub struct TaskPacer {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl TaskPacer {
    /// `rate`: answers per second, above 0.
    pub fn new(rate: f64) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / rate.max(1e-6)),
            next: Mutex::new(None),
        }
    }

    /// Waits for the next free slot. A slot left unused does not accumulate: after a pause
    /// the first caller goes at once and the spacing starts again from there.
    pub async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn callers_are_spaced_by_the_interval_and_idle_slots_are_not_banked() {
        let pacer = std::sync::Arc::new(TaskPacer::new(100.0));
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..10 {
            let pacer = pacer.clone();
            handles.push(tokio::spawn(async move {
                pacer.wait().await;
                Instant::now() - start
            }));
        }
        let mut times = Vec::new();
        for handle in handles {
            times.push(handle.await.expect("join"));
        }
        times.sort();
        // The k-th caller never goes before its slot, k intervals after the first.
        assert!(times[0] < Duration::from_millis(30), "{times:?}");
        for (k, time) in times.iter().enumerate() {
            assert!(*time >= Duration::from_millis(10) * k as u32, "{times:?}");
        }
        // After a pause the first caller goes at once, the second one interval later.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = Instant::now();
        pacer.wait().await;
        assert!(before.elapsed() < Duration::from_millis(5));
        pacer.wait().await;
        assert!(before.elapsed() >= Duration::from_millis(9));
    }
}
