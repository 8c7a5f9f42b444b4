//! The scheduling policy, free of I/O so the benchmark runs the very code the puller runs:
//! which validators may be pulled now (in the set, off cooldown, no task held, no pull in
//! flight, not backing off, not stopped after a 401) and in what order (expected value =
//! recent acceptance × reward weight, ties to whoever has waited longest). Times are unix
//! seconds (or simulated seconds in the benchmark). The acceptance formula, the automatic
//! blacklist and the capacity arithmetic are in [`crate::policy`].

use std::collections::{BTreeMap, HashMap};

use splatfleet_common::{config::PullerSettings, ledger::SubmissionStats};

use crate::{backoff::BackoffBook, cooldown_book::CooldownBook, policy};

/// Expected values closer than this count as equal, so a validator with one more accepted
/// submission in its history does not starve the others; waiting time decides among them.
pub const EXPECTED_VALUE_STEP: f64 = 0.05;

/// What the scheduler knows about one validator besides its cooldown and backoff.
#[derive(Debug, Clone, Default)]
pub struct ValidatorStanding {
    /// The validator's task we hold (pulled, not yet submitted or released).
    pub held_task: Option<String>,
    /// The last task closed that we did not hold yet: a close can be announced before the
    /// pull that took the task reports it held (zero-time generation), and must win.
    pub closed_unheld: Option<String>,
    /// A pull (or an empty release) to this validator is in flight.
    pub busy: bool,
    /// Why pulls stopped for good (a 401: our keys or clock are wrong).
    pub stopped: Option<String>,
    /// Estimated probability that a submission is accepted ([`policy::acceptance_estimate`]).
    pub acceptance: f64,
    pub reward_weight: f64,
    /// When we last pulled (0: never).
    pub last_pull_at: f64,
}

impl ValidatorStanding {
    fn new(reward_weight: f64) -> Self {
        Self {
            acceptance: policy::UNKNOWN_ACCEPTANCE,
            reward_weight,
            ..Self::default()
        }
    }

    pub fn expected_value(&self) -> f64 {
        self.acceptance * self.reward_weight
    }
}

/// What an answer without a task made of the validator ([`Scheduler::answered_without_task`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NoTask {
    /// On cooldown until the time it gave.
    Cooldown,
    /// Nothing on offer and no cooldown: backed off until then.
    NothingOffered { backoff_until: f64 },
}

/// The scheduler: standings, cooldowns and backoff of every validator in the set.
#[derive(Debug, Clone)]
pub struct Scheduler {
    standings: BTreeMap<String, ValidatorStanding>,
    pub cooldowns: CooldownBook,
    pub backoff: BackoffBook,
    default_reward_weight: f64,
}

impl Scheduler {
    pub fn new(cooldowns: CooldownBook, backoff: BackoffBook, default_reward_weight: f64) -> Self {
        Self {
            standings: BTreeMap::new(),
            cooldowns,
            backoff,
            default_reward_weight,
        }
    }

    /// The scheduler `[puller]` describes (cooldown margin, backoff, default reward weight),
    /// with no validators yet.
    pub fn from_settings(settings: &PullerSettings) -> Self {
        Self::new(
            CooldownBook::new(settings.cooldown_margin_ms as f64 / 1000.0),
            BackoffBook::new(
                settings.backoff_initial_ms as f64 / 1000.0,
                settings.backoff_max_ms as f64 / 1000.0,
            ),
            settings.default_reward_weight,
        )
    }

    /// Makes the eligible set exactly `hotkeys` with their reward weights; validators that
    /// left keep their cooldown (they may come back) but are no longer chosen.
    pub fn set_validators(&mut self, hotkeys: impl IntoIterator<Item = (String, f64)>) {
        let mut next = BTreeMap::new();
        for (hotkey, weight) in hotkeys {
            let mut standing = self
                .standings
                .remove(&hotkey)
                .unwrap_or_else(|| ValidatorStanding::new(weight));
            standing.reward_weight = weight;
            next.insert(hotkey, standing);
        }
        self.standings = next;
    }

    pub fn standing(&self, hotkey: &str) -> Option<&ValidatorStanding> {
        self.standings.get(hotkey)
    }

    pub fn standing_mut(&mut self, hotkey: &str) -> Option<&mut ValidatorStanding> {
        self.standings.get_mut(hotkey)
    }

    pub fn validators(&self) -> impl Iterator<Item = (&String, &ValidatorStanding)> {
        self.standings.iter()
    }

    /// Sets every validator's acceptance from its recent judged submissions (`recent`, by
    /// hotkey; a validator missing from it has none).
    pub fn set_acceptances(&mut self, recent: &HashMap<String, SubmissionStats>) {
        for (hotkey, standing) in &mut self.standings {
            let stats = recent.get(hotkey).copied().unwrap_or_default();
            standing.acceptance = policy::acceptance_estimate(stats);
        }
    }

    pub fn default_reward_weight(&self) -> f64 {
        self.default_reward_weight
    }

    /// When `hotkey` becomes pullable as far as time goes (cooldown and backoff), or `None`
    /// while something other than time blocks it.
    pub fn pullable_at(&self, hotkey: &str) -> Option<f64> {
        let standing = self.standings.get(hotkey)?;
        if standing.held_task.is_some() || standing.busy || standing.stopped.is_some() {
            return None;
        }
        Some(
            self.cooldowns
                .cool_at(hotkey)
                .max(self.backoff.until(hotkey)),
        )
    }

    /// Up to `slots` validators to pull from now, best first.
    pub fn choose(&self, now: f64, slots: usize) -> Vec<String> {
        if slots == 0 {
            return Vec::new();
        }
        let mut ready: Vec<(i64, f64, &String)> = self
            .standings
            .iter()
            .filter_map(|(hotkey, standing)| {
                let at = self.pullable_at(hotkey)?;
                if at > now {
                    return None;
                }
                // Waiting since it became pullable (or since its last pull, if later).
                let since = at.max(standing.last_pull_at);
                let step = (standing.expected_value() / EXPECTED_VALUE_STEP).floor() as i64;
                Some((step, since, hotkey))
            })
            .collect();
        ready.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(b.2)));
        ready
            .into_iter()
            .take(slots)
            .map(|(_, _, hotkey)| hotkey.clone())
            .collect()
    }

    /// The earliest time any validator becomes pullable (for the benchmark's clock).
    pub fn next_pullable_at(&self) -> Option<f64> {
        self.standings
            .keys()
            .filter_map(|hotkey| self.pullable_at(hotkey))
            .min_by(f64::total_cmp)
    }

    /// A pull to `hotkey` starts.
    pub fn pull_started(&mut self, hotkey: &str, now: f64) {
        if let Some(standing) = self.standings.get_mut(hotkey) {
            standing.busy = true;
            standing.last_pull_at = now;
        }
    }

    /// The pull (or release) finished, whatever its outcome.
    pub fn call_finished(&mut self, hotkey: &str) {
        if let Some(standing) = self.standings.get_mut(hotkey) {
            standing.busy = false;
        }
    }

    /// The validator handed us `task_id`: we hold it until it is submitted or released.
    pub fn task_held(&mut self, hotkey: &str, task_id: &str) {
        self.backoff.succeeded(hotkey);
        if let Some(standing) = self.standings.get_mut(hotkey) {
            if standing.closed_unheld.as_deref() == Some(task_id) {
                // Already closed: the announcement overtook the pull's report.
                standing.closed_unheld = None;
                standing.held_task = None;
            } else {
                standing.held_task = Some(task_id.to_owned());
            }
        }
    }

    /// `task_id` was submitted or released; the validator's cooldown is `cooldown_until`.
    pub fn task_closed(&mut self, hotkey: &str, task_id: &str, cooldown_until: Option<f64>) {
        if let Some(until) = cooldown_until {
            self.cooldowns.raise(hotkey, until);
        }
        if let Some(standing) = self.standings.get_mut(hotkey) {
            if standing.held_task.as_deref() == Some(task_id) {
                standing.held_task = None;
            } else {
                standing.closed_unheld = Some(task_id.to_owned());
            }
        }
    }

    /// The validator answered without a task, on cooldown until `until`.
    pub fn cooldown_reported(&mut self, hotkey: &str, until: f64) {
        self.backoff.succeeded(hotkey);
        self.cooldowns.raise(hotkey, until);
    }

    /// The validator answered without a task, with its cooldown (`until`, unix seconds) and
    /// the violations it counted: a cooldown still to run (or any violation) is recorded; no
    /// cooldown and no violation means it has nothing for us now, so it is backed off rather
    /// than asked again every tick.
    pub fn answered_without_task(
        &mut self,
        hotkey: &str,
        until: f64,
        violations: i64,
        now: f64,
    ) -> NoTask {
        if violations == 0 && until <= now {
            NoTask::NothingOffered {
                backoff_until: self.pull_failed(hotkey, now),
            }
        } else {
            self.cooldown_reported(hotkey, until);
            NoTask::Cooldown
        }
    }

    /// A connect error, timeout or 5xx: back off. Returns when to try again.
    pub fn pull_failed(&mut self, hotkey: &str, now: f64) -> f64 {
        self.backoff.failed(hotkey, now)
    }

    /// A 401: stop pulling from this validator.
    pub fn stop(&mut self, hotkey: &str, reason: String) {
        if let Some(standing) = self.standings.get_mut(hotkey) {
            standing.stopped = Some(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduler(hotkeys: &[&str]) -> Scheduler {
        let mut s = Scheduler::new(CooldownBook::new(1.0), BackoffBook::new(5.0, 60.0), 1.0);
        s.set_validators(hotkeys.iter().map(|h| ((*h).to_owned(), 1.0)));
        s
    }

    #[test]
    fn skips_cooldown_held_busy_backoff_and_stopped() {
        let mut s = scheduler(&["a", "b", "c", "d", "e", "f"]);
        s.cooldown_reported("a", 100.0);
        s.task_held("b", "t1");
        s.pull_started("c", 0.0);
        s.pull_failed("d", 0.0);
        s.stop("e", "401".into());
        assert_eq!(s.choose(1.0, 10), vec!["f".to_owned()]);
        assert!(!s.choose(100.5, 10).contains(&"a".to_owned()), "margin");
        assert!(s.choose(101.0, 10).contains(&"a".to_owned()));
        s.task_closed("b", "t1", Some(200.0));
        assert!(!s.choose(150.0, 10).contains(&"b".to_owned()));
        assert!(s.choose(201.0, 10).contains(&"b".to_owned()));
    }

    #[test]
    fn a_close_announced_before_the_pull_reports_the_task_held_wins() {
        let mut s = scheduler(&["a"]);
        s.pull_started("a", 0.0);
        s.call_finished("a");
        // The submitter closed t1 before the pull job's report came back to the loop.
        s.task_closed("a", "t1", Some(50.0));
        s.task_held("a", "t1");
        assert_eq!(s.standing("a").and_then(|v| v.held_task.clone()), None);
        assert!(s.choose(51.0, 1).contains(&"a".to_owned()));
        // The next task is held as usual; an old close does not release it.
        s.task_held("a", "t2");
        s.task_closed("a", "t1", None);
        assert_eq!(
            s.standing("a").and_then(|v| v.held_task.clone()).as_deref(),
            Some("t2")
        );
        assert!(s.choose(60.0, 1).is_empty());
    }

    #[test]
    fn prefers_expected_value_then_longest_wait() {
        let mut s = scheduler(&["a", "b", "c"]);
        s.cooldown_reported("a", 10.0);
        s.cooldown_reported("b", 20.0);
        s.cooldown_reported("c", 30.0);
        assert_eq!(s.choose(100.0, 2), vec!["a".to_owned(), "b".to_owned()]);
        if let Some(c) = s.standing_mut("c") {
            c.acceptance = 0.9;
        }
        assert_eq!(s.choose(100.0, 1), vec!["c".to_owned()]);
    }

    #[test]
    fn judged_acceptance_orders_validators_and_the_unknown_sit_between() {
        let mut s = scheduler(&["good", "new", "poor"]);
        let stats = |completed, accepted| SubmissionStats {
            completed,
            accepted,
            penalised: completed - accepted,
        };
        let recent: HashMap<String, SubmissionStats> = [
            ("good".to_owned(), stats(4, 3)),
            ("poor".to_owned(), stats(4, 1)),
        ]
        .into_iter()
        .collect();
        s.set_acceptances(&recent);
        let acceptance = |s: &Scheduler, h: &str| s.standing(h).map(|v| v.acceptance);
        assert_eq!(acceptance(&s, "good"), Some(0.75));
        assert_eq!(acceptance(&s, "poor"), Some(0.25));
        assert_eq!(acceptance(&s, "new"), Some(policy::UNKNOWN_ACCEPTANCE));
        assert_eq!(s.choose(0.0, 3), ["good", "new", "poor"]);
        s.set_acceptances(&HashMap::new());
        assert_eq!(
            acceptance(&s, "good"),
            Some(policy::UNKNOWN_ACCEPTANCE),
            "window emptied"
        );
    }

    #[test]
    fn an_answer_without_task_or_cooldown_backs_off() {
        let mut s = scheduler(&["a", "b", "c"]);
        assert_eq!(
            s.answered_without_task("a", 50.0, 0, 100.0),
            NoTask::NothingOffered {
                backoff_until: 105.0
            }
        );
        assert_eq!(s.pullable_at("a"), Some(105.0));
        assert_eq!(
            s.answered_without_task("b", 200.0, 0, 100.0),
            NoTask::Cooldown
        );
        assert_eq!(s.pullable_at("b"), Some(201.0), "cooldown plus the margin");
        // A counted violation is a cooldown answer even when the time has passed.
        assert_eq!(
            s.answered_without_task("c", 50.0, 1, 100.0),
            NoTask::Cooldown
        );
        assert_eq!(s.pullable_at("c"), Some(51.0));
    }
}
