//! The pull policy's decisions, free of I/O, async and clocks (facts and times come in as
//! arguments), so the scheduler benchmark runs the very code the puller runs: the one
//! acceptance formula, the automatic blacklist thresholds and the capacity arithmetic. The
//! control loop reads the facts (the ledger's submission figures, the tasks queue's counts),
//! asks this module, and writes the outcome; [`crate::scheduler`] orders the validators.

use std::collections::HashMap;

use splatfleet_common::{config::PullerSettings, ledger::SubmissionStats};

/// How often the control loop re-reads the figures the policy judges (blacklist, acceptance,
/// lost tasks), seconds; the benchmark keeps the same cadence.
pub const HOUSEKEEPING_EVERY_SECS: f64 = 2.0;

/// The acceptance a validator gets before any of its submissions has been judged: neither a
/// good nor a bad record.
pub const UNKNOWN_ACCEPTANCE: f64 = 0.5;

/// The one acceptance formula: the fraction of a validator's judged submissions (verdict
/// `accepted`, `penalised` or `validation_failed` in the `submission_verdicts` view, migration
/// 0007) that it accepted (scored above 0) — the validators' own verdict, and the
/// `acceptance_rate` of `sql/reports/acceptance.sql`. `None` before anything was judged.
pub fn acceptance(stats: SubmissionStats) -> Option<f64> {
    (stats.completed > 0).then(|| f64::from(stats.accepted) / f64::from(stats.completed))
}

/// The acceptance the scheduler weighs a validator by: [`acceptance`], or
/// [`UNKNOWN_ACCEPTANCE`] before anything was judged.
pub fn acceptance_estimate(stats: SubmissionStats) -> f64 {
    acceptance(stats).unwrap_or(UNKNOWN_ACCEPTANCE)
}

/// The automatic blacklist's thresholds (`[puller] auto_blacklist_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlacklistRule {
    /// Judged submissions needed before acceptance alone can blacklist.
    pub window: u32,
    /// Acceptance below this over a full window blacklists.
    pub min_acceptance: f64,
    /// This many penalties within the window blacklist (however few were judged).
    pub max_penalties: u32,
    /// How long an automatic blacklisting lasts, seconds.
    pub secs: u64,
}

/// A validator to blacklist, with the reason recorded beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blacklisting {
    pub hotkey: String,
    pub reason: String,
}

impl BlacklistRule {
    pub fn from_settings(settings: &PullerSettings) -> Self {
        Self {
            window: settings.auto_blacklist_window,
            min_acceptance: settings.auto_blacklist_min_acceptance,
            max_penalties: settings.auto_blacklist_max_penalties,
            secs: settings.auto_blacklist_secs,
        }
    }

    /// Why `stats` (the validator's last `window` judged submissions) blacklist it, if they do.
    pub fn reason(&self, stats: SubmissionStats) -> Option<String> {
        if stats.penalised >= self.max_penalties {
            return Some(format!(
                "{} penalties in the last {} submissions",
                stats.penalised, stats.completed
            ));
        }
        let acceptance = acceptance(stats)?;
        (stats.completed >= self.window && acceptance < self.min_acceptance).then(|| {
            format!(
                "acceptance {acceptance:.2} over the last {} submissions",
                stats.completed
            )
        })
    }

    /// The validators `judged` blacklists now, skipping those already blacklisted (by us or
    /// by an operator), in hotkey order.
    pub fn blacklistings(
        &self,
        judged: &HashMap<String, SubmissionStats>,
        already: &HashMap<String, String>,
    ) -> Vec<Blacklisting> {
        let mut out: Vec<Blacklisting> = judged
            .iter()
            .filter(|(hotkey, _)| !already.contains_key(*hotkey))
            .filter_map(|(hotkey, stats)| {
                Some(Blacklisting {
                    hotkey: hotkey.clone(),
                    reason: self.reason(*stats)?,
                })
            })
            .collect();
        out.sort_by(|a, b| a.hotkey.cmp(&b.hotkey));
        out
    }
}

/// What the tasks queue says right now (read by [`crate::capacity::probe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapacitySignal {
    /// Messages ready for delivery (not yet handed to a worker).
    pub ready: u32,
    /// Workers consuming the queue.
    pub consumers: u32,
}

/// How much may be pulled (`[puller] backlog_factor`, `max_concurrent_pulls`): a task that
/// waits in the queue costs cooldown time, so the ready backlog stays under consumers ×
/// `backlog_factor`, counting pulls still in flight as tasks about to be ready.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapacityRule {
    pub backlog_factor: f64,
    pub max_concurrent_pulls: usize,
}

impl CapacityRule {
    pub fn from_settings(settings: &PullerSettings) -> Self {
        Self {
            backlog_factor: settings.backlog_factor,
            max_concurrent_pulls: settings.max_concurrent_pulls,
        }
    }

    /// Largest ready backlog allowed.
    pub fn backlog_limit(&self, signal: CapacitySignal) -> u32 {
        (f64::from(signal.consumers) * self.backlog_factor).floor() as u32
    }

    /// How many new pulls may start, given the pulls already in flight (each may become a
    /// ready task) and the concurrency cap.
    pub fn free_slots(&self, signal: CapacitySignal, pulls_in_flight: usize) -> usize {
        let limit = self.backlog_limit(signal) as usize;
        let by_backlog = limit.saturating_sub(signal.ready as usize + pulls_in_flight);
        let by_concurrency = self.max_concurrent_pulls.saturating_sub(pulls_in_flight);
        by_backlog.min(by_concurrency)
    }
}

/// The whole pull policy, built once from `[puller]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PullPolicy {
    pub blacklist: BlacklistRule,
    pub capacity: CapacityRule,
    /// Recent judged submissions the acceptance estimate reads (`acceptance_window`).
    pub acceptance_window: u32,
}

impl PullPolicy {
    pub fn from_settings(settings: &PullerSettings) -> Self {
        Self {
            blacklist: BlacklistRule::from_settings(settings),
            capacity: CapacityRule::from_settings(settings),
            acceptance_window: settings.acceptance_window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(completed: u32, accepted: u32, penalised: u32) -> SubmissionStats {
        SubmissionStats {
            completed,
            accepted,
            penalised,
        }
    }

    fn rule() -> BlacklistRule {
        BlacklistRule::from_settings(&PullerSettings::default())
    }

    #[test]
    fn acceptance_is_the_fraction_of_judged_submissions_accepted() {
        assert_eq!(acceptance(stats(0, 0, 0)), None);
        assert_eq!(acceptance(stats(4, 3, 1)), Some(0.75));
        assert_eq!(acceptance(stats(20, 0, 20)), Some(0.0));
        assert_eq!(acceptance(stats(1, 1, 0)), Some(1.0));
        // No prior pulls the figure toward one half once something was judged.
        assert_eq!(acceptance_estimate(stats(1, 1, 0)), 1.0);
        assert_eq!(acceptance_estimate(stats(10, 0, 0)), 0.0);
        assert_eq!(acceptance_estimate(stats(0, 0, 0)), UNKNOWN_ACCEPTANCE);
    }

    #[test]
    fn penalties_blacklist_at_the_threshold() {
        let rule = rule();
        assert_eq!(rule.max_penalties, 5);
        assert_eq!(rule.reason(stats(10, 6, 4)), None);
        assert_eq!(
            rule.reason(stats(10, 5, 5)).as_deref(),
            Some("5 penalties in the last 10 submissions")
        );
        // Penalties need no full window.
        assert!(rule.reason(stats(5, 0, 5)).is_some());
    }

    #[test]
    fn low_acceptance_blacklists_only_over_a_full_window() {
        let rule = rule();
        assert_eq!((rule.window, rule.min_acceptance), (20, 0.3));
        // 5 of 20 = 0.25 < 0.3; 6 of 20 = 0.3 is not below.
        assert_eq!(
            rule.reason(stats(20, 5, 0)).as_deref(),
            Some("acceptance 0.25 over the last 20 submissions")
        );
        assert_eq!(rule.reason(stats(20, 6, 0)), None);
        // Too few judged: no verdict on acceptance, however bad.
        assert_eq!(rule.reason(stats(19, 0, 0)), None);
        assert_eq!(rule.reason(stats(0, 0, 0)), None);
    }

    #[test]
    fn blacklistings_skip_the_already_blacklisted_in_hotkey_order() {
        let rule = rule();
        let judged: HashMap<String, SubmissionStats> = [
            ("c".to_owned(), stats(20, 0, 0)),
            ("a".to_owned(), stats(8, 2, 6)),
            ("b".to_owned(), stats(20, 20, 0)),
            ("d".to_owned(), stats(20, 1, 0)),
        ]
        .into_iter()
        .collect();
        let already: HashMap<String, String> = [("d".to_owned(), "operator".to_owned())]
            .into_iter()
            .collect();
        let hotkeys: Vec<String> = rule
            .blacklistings(&judged, &already)
            .into_iter()
            .map(|b| b.hotkey)
            .collect();
        assert_eq!(hotkeys, ["a", "c"]);
    }

    #[test]
    fn slots_count_ready_tasks_and_pulls_in_flight() {
        let rule = |backlog_factor, max_concurrent_pulls| CapacityRule {
            backlog_factor,
            max_concurrent_pulls,
        };
        let signal = CapacitySignal {
            ready: 1,
            consumers: 2,
        };
        assert_eq!(rule(1.0, 8).free_slots(signal, 0), 1);
        assert_eq!(rule(1.0, 8).free_slots(signal, 1), 0);
        assert_eq!(rule(2.0, 8).free_slots(signal, 0), 3);
        assert_eq!(rule(2.0, 2).free_slots(signal, 0), 2);
        assert_eq!(rule(1.5, 8).backlog_limit(signal), 3, "floored");
        let idle = CapacitySignal {
            ready: 0,
            consumers: 0,
        };
        assert_eq!(rule(4.0, 8).free_slots(idle, 0), 0, "no workers, no pulls");
        let flooded = CapacitySignal {
            ready: 10,
            consumers: 2,
        };
        assert_eq!(rule(1.0, 8).free_slots(flooded, 3), 0, "never negative");
    }
}
