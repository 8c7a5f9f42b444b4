//! Dendrite nonces: wall-clock nanoseconds, strictly increasing within the process even when
//! the clock steps back, as the SDK's axon rejects a nonce not above the last one it saw from
//! the same `(hotkey, uuid)`.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

/// Hands out nonces; share one per dendrite identity (hotkey and uuid).
#[derive(Debug, Default)]
pub struct NonceClock {
    last: AtomicU64,
}

impl NonceClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next nonce: now in ns, or one more than the last nonce if the clock has not advanced.
    pub fn next(&self) -> u64 {
        self.next_at(wall_clock_ns())
    }

    /// The next nonce given the current clock reading (the testable core of [`Self::next`]).
    pub fn next_at(&self, now_ns: u64) -> u64 {
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let candidate = now_ns.max(last.saturating_add(1));
            match self.last.compare_exchange_weak(
                last,
                candidate,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return candidate,
                Err(seen) => last = seen,
            }
        }
    }
}

/// Unix time in nanoseconds (0 if the clock is before 1970).
pub fn wall_clock_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_when_clock_steps_back() {
        let clock = NonceClock::new();
        assert_eq!(clock.next_at(1_000), 1_000);
        assert_eq!(clock.next_at(500), 1_001);
        assert_eq!(clock.next_at(1_001), 1_002);
        assert_eq!(clock.next_at(5_000), 5_000);
    }
}
