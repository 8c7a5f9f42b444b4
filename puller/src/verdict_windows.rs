//! Each validator's recent verdicts, kept in memory: seeded from the ledger
//! (`ledger::recent_verdicts`, whose cost is validators × window), then fed by the close
//! notices, so the automatic blacklist and the acceptance estimate get their figures every
//! round without a query that grows with the tables. Pure: the control loop does the I/O.

use std::collections::{HashMap, VecDeque};

use splatfleet_common::ledger::{SubmissionStats, Verdict};

/// The last `cap` judged verdicts of each validator, newest first.
#[derive(Debug, Default)]
pub struct VerdictWindows {
    cap: usize,
    by_hotkey: HashMap<String, VecDeque<Verdict>>,
    /// Verdicts until then (unix seconds) do not count: the validator's automatic blacklisting
    /// starts its window afresh when it ends, as the ledger's read does.
    ignore_until: HashMap<String, f64>,
}

impl VerdictWindows {
    /// Windows of `cap` verdicts (the largest window any figure needs).
    pub fn new(cap: u32) -> Self {
        Self {
            cap: cap as usize,
            ..Self::default()
        }
    }

    /// The window size, for the ledger's seed read.
    pub fn cap(&self) -> u32 {
        u32::try_from(self.cap).unwrap_or(u32::MAX)
    }

    /// Replaces every window with the ledger's (newest first).
    pub fn seed(&mut self, recent: HashMap<String, Vec<Verdict>>) {
        self.by_hotkey = recent
            .into_iter()
            .map(|(hotkey, verdicts)| {
                let window: VecDeque<Verdict> = verdicts
                    .into_iter()
                    .filter(|v| Verdict::JUDGED.contains(v))
                    .take(self.cap)
                    .collect();
                (hotkey, window)
            })
            .collect();
    }

    /// A submission of `hotkey` closed with `verdict` at `now`.
    pub fn record(&mut self, hotkey: &str, verdict: Verdict, now: f64) {
        if !Verdict::JUDGED.contains(&verdict)
            || self
                .ignore_until
                .get(hotkey)
                .is_some_and(|&until| now <= until)
        {
            return;
        }
        let window = self.by_hotkey.entry(hotkey.to_owned()).or_default();
        window.push_front(verdict);
        window.truncate(self.cap);
    }

    /// `hotkey` is blacklisted until `until`: its window starts afresh after that.
    pub fn blacklisted(&mut self, hotkey: &str, until: f64) {
        self.by_hotkey.remove(hotkey);
        self.ignore_until.insert(hotkey.to_owned(), until);
    }

    /// Each validator's figures over its last `window` verdicts.
    pub fn stats(&self, window: u32) -> HashMap<String, SubmissionStats> {
        self.by_hotkey
            .iter()
            .filter(|(_, verdicts)| !verdicts.is_empty())
            .map(|(hotkey, verdicts)| {
                let stats = SubmissionStats::of(verdicts.iter().take(window as usize));
                (hotkey.clone(), stats)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::{Accepted, Empty, Penalised, ValidationFailed};

    #[test]
    fn windows_slide_skip_the_unjudged_and_restart_after_a_blacklisting() {
        let mut w = VerdictWindows::new(3);
        w.seed(HashMap::from([(
            "a".to_owned(),
            vec![Accepted, Empty, Penalised, Accepted, Accepted],
        )]));
        // Newest first, unjudged dropped, capped at 3: accepted, penalised, accepted.
        let stats = |w: &VerdictWindows, n| w.stats(n).get("a").copied().unwrap_or_default();
        let fig = |completed, accepted, penalised| SubmissionStats {
            completed,
            accepted,
            penalised,
        };
        assert_eq!(stats(&w, 3), fig(3, 2, 1));
        assert_eq!(stats(&w, 1), fig(1, 1, 0));
        w.record("a", Penalised, 10.0);
        w.record("a", Empty, 11.0);
        w.record("a", ValidationFailed, 12.0);
        // validation_failed, penalised, accepted: the oldest two slid out.
        assert_eq!(stats(&w, 3), fig(3, 1, 1));
        w.blacklisted("a", 100.0);
        assert!(w.stats(3).is_empty());
        w.record("a", Accepted, 50.0);
        assert!(
            w.stats(3).is_empty(),
            "closed while blacklisted: not counted"
        );
        w.record("a", Accepted, 101.0);
        assert_eq!(stats(&w, 3), fig(1, 1, 0));
        w.record("b", Penalised, 1.0);
        assert_eq!(w.stats(3).len(), 2);
    }
}
