//! Per-validator exponential backoff after connect errors, timeouts and 5xx answers, so one
//! sick validator costs a few requests instead of a pull slot every tick.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, Default)]
struct Failures {
    count: u32,
    until: f64,
}

/// Consecutive failures and the resulting pause, by validator hotkey.
#[derive(Debug, Clone)]
pub struct BackoffBook {
    initial_secs: f64,
    max_secs: f64,
    failures: HashMap<String, Failures>,
}

impl BackoffBook {
    pub fn new(initial_secs: f64, max_secs: f64) -> Self {
        Self {
            initial_secs,
            max_secs: max_secs.max(initial_secs),
            failures: HashMap::new(),
        }
    }

    /// Records a failure at `now`; returns when the validator may be tried again.
    pub fn failed(&mut self, hotkey: &str, now: f64) -> f64 {
        let entry = self.failures.entry(hotkey.to_owned()).or_default();
        entry.count = entry.count.saturating_add(1);
        let exponent = entry.count.saturating_sub(1).min(30);
        let pause = (self.initial_secs * f64::from(1u32 << exponent)).min(self.max_secs);
        entry.until = now + pause;
        entry.until
    }

    /// A good answer ends the backoff.
    pub fn succeeded(&mut self, hotkey: &str) {
        self.failures.remove(hotkey);
    }

    /// When the validator may be tried again (0 when not backing off).
    pub fn until(&self, hotkey: &str) -> f64 {
        self.failures.get(hotkey).map_or(0.0, |f| f.until)
    }

    pub fn consecutive_failures(&self, hotkey: &str) -> u32 {
        self.failures.get(hotkey).map_or(0, |f| f.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut book = BackoffBook::new(5.0, 30.0);
        assert_eq!(book.failed("a", 0.0), 5.0);
        assert_eq!(book.failed("a", 0.0), 10.0);
        assert_eq!(book.failed("a", 0.0), 20.0);
        assert_eq!(book.failed("a", 0.0), 30.0);
        assert_eq!(book.failed("a", 100.0), 130.0);
        book.succeeded("a");
        assert_eq!(book.until("a"), 0.0);
        assert_eq!(book.failed("a", 0.0), 5.0);
    }
}
