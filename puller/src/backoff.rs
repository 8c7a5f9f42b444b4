//! Per-validator exponential backoff after failed pulls (connect errors, timeouts, 5xx,
//! malformed answers), so one sick or hostile validator costs a few requests instead of a
//! pull slot every tick. The pause grows with the validator's failures of the last hour, not
//! only the consecutive ones: a good answer ends the current pause but not the record, so a
//! validator that alternates garbage with good answers is not pulled more often than an
//! honest one (it was, when any answer reset the backoff).

use std::collections::{HashMap, VecDeque};

/// How far back failures count towards the pause.
pub const FAILURE_MEMORY_SECS: f64 = 3600.0;
/// Failures remembered per validator (more would not lengthen a pause already at its cap).
const REMEMBERED: usize = 32;

#[derive(Debug, Clone, Default)]
struct Record {
    /// When recent failures happened (unix seconds), oldest first.
    failed_at: VecDeque<f64>,
    /// Until when the validator is not tried (0: not backing off).
    until: f64,
}

/// Recent failures and the resulting pause, by validator hotkey.
#[derive(Debug, Clone)]
pub struct BackoffBook {
    initial_secs: f64,
    max_secs: f64,
    records: HashMap<String, Record>,
}

impl BackoffBook {
    pub fn new(initial_secs: f64, max_secs: f64) -> Self {
        Self {
            initial_secs,
            max_secs: max_secs.max(initial_secs),
            records: HashMap::new(),
        }
    }

    /// Records a failure at `now`; returns when the validator may be tried again: the initial
    /// pause doubled for each other failure of the last hour, up to the cap.
    pub fn failed(&mut self, hotkey: &str, now: f64) -> f64 {
        let record = self.records.entry(hotkey.to_owned()).or_default();
        while record
            .failed_at
            .front()
            .is_some_and(|&at| at < now - FAILURE_MEMORY_SECS)
        {
            record.failed_at.pop_front();
        }
        record.failed_at.push_back(now);
        if record.failed_at.len() > REMEMBERED {
            record.failed_at.pop_front();
        }
        let exponent = u32::try_from(record.failed_at.len().saturating_sub(1))
            .unwrap_or(30)
            .min(30);
        let pause = (self.initial_secs * f64::from(1u32 << exponent)).min(self.max_secs);
        record.until = now + pause;
        record.until
    }

    /// A good answer ends the current pause; the failures stay on record for the hour.
    pub fn succeeded(&mut self, hotkey: &str) {
        if let Some(record) = self.records.get_mut(hotkey) {
            record.until = 0.0;
        }
    }

    /// When the validator may be tried again (0 when not backing off).
    pub fn until(&self, hotkey: &str) -> f64 {
        self.records.get(hotkey).map_or(0.0, |r| r.until)
    }

    /// Failures on record (those of the last hour, as of the latest one).
    pub fn recent_failures(&self, hotkey: &str) -> usize {
        self.records.get(hotkey).map_or(0, |r| r.failed_at.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_a_good_answer_ends_the_pause() {
        let mut book = BackoffBook::new(5.0, 30.0);
        assert_eq!(book.failed("a", 0.0), 5.0);
        assert_eq!(book.failed("a", 0.0), 10.0);
        assert_eq!(book.failed("a", 0.0), 20.0);
        assert_eq!(book.failed("a", 0.0), 30.0);
        assert_eq!(book.failed("a", 100.0), 130.0);
        book.succeeded("a");
        assert_eq!(book.until("a"), 0.0);
        // An hour after the last failure the record is clean again: the initial pause.
        let later = 100.0 + FAILURE_MEMORY_SECS + 1.0;
        assert_eq!(book.failed("a", later), later + 5.0);
        assert_eq!(book.recent_failures("a"), 1);
    }

    #[test]
    fn alternating_garbage_and_good_answers_still_backs_off_further_each_time() {
        let mut book = BackoffBook::new(5.0, 300.0);
        let mut pauses = Vec::new();
        let mut now = 0.0;
        for _ in 0..5 {
            let until = book.failed("hostile", now);
            pauses.push(until - now);
            now = until;
            book.succeeded("hostile");
            now += 1.0;
        }
        assert_eq!(pauses, [5.0, 10.0, 20.0, 40.0, 80.0]);
        // An honest validator's first failure in an hour pauses it the least.
        assert_eq!(book.failed("honest", now), now + 5.0);
    }
}
