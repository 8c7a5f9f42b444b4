//! One simulated validator's v45 rules (`neurons/validator/validator.py` and `miner_data.py`
//! at three-gen-subnet 5fc61f1): one task per miner, cooldown `max(now + cooldown − throttle,
//! assigned + cooldown)`, cooldown violations (+penalty past the threshold), a 600 s penalty
//! for a bad license signature or a score under the threshold, empty results without
//! penalty, the validation lock, the resubmit guard and the feedback fields. Durations are
//! divided by the time scale so tests can run 300 s cooldowns in seconds.

use std::{
    collections::{HashMap, VecDeque},
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::json;
use splatfleet_common::protocol::sn17::{
    verify_license, Feedback, LicenseError, ProtocolTask, PullTask, SubmitResults,
};

use super::{
    events::EventLog,
    scorer::{score_submission, ScoreSettings},
    tasks::TaskFactory,
};

/// Unix time in seconds, fractional.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The validator's `generation.*` and `validation.*` settings (v45 defaults), before scaling.
#[derive(Debug, Clone)]
pub struct RuleSettings {
    pub task_cooldown_secs: f64,
    pub throttle_period_secs: f64,
    pub cooldown_penalty_secs: f64,
    pub cooldown_violation_penalty_secs: f64,
    pub cooldown_violations_threshold: i64,
    pub quality_threshold: f64,
    pub validation_lock_secs: f64,
    pub moving_average_alpha: f64,
    /// Observation window for `generations_within_the_window` (4 h).
    pub observation_window_secs: f64,
    /// Cooldown given to an unregistered hotkey (1 h).
    pub unregistered_cooldown_secs: f64,
    /// The simulator has no duels; every miner gets this rating.
    pub duel_rating: f64,
    /// Divides every duration above.
    pub time_scale: f64,
}

impl Default for RuleSettings {
    fn default() -> Self {
        Self {
            task_cooldown_secs: 300.0,
            throttle_period_secs: 30.0,
            cooldown_penalty_secs: 600.0,
            cooldown_violation_penalty_secs: 10.0,
            cooldown_violations_threshold: 100,
            quality_threshold: 0.6,
            validation_lock_secs: 30.0,
            moving_average_alpha: 0.05,
            observation_window_secs: 4.0 * 3600.0,
            unregistered_cooldown_secs: 3600.0,
            duel_rating: 1.0,
            time_scale: 1.0,
        }
    }
}

impl RuleSettings {
    fn scaled(&self, secs: f64) -> f64 {
        secs / self.time_scale.max(1e-9)
    }
}

/// What the validator knows about one miner (`MinerData`).
#[derive(Debug, Clone)]
struct MinerData {
    observations: VecDeque<f64>,
    fidelity_score: f64,
    assigned_task: Option<ProtocolTask>,
    assignment_time: Option<f64>,
    cooldown_until: i64,
    cooldown_violations: i64,
    validation_locked_until: f64,
    last_submit_time: f64,
}

impl Default for MinerData {
    fn default() -> Self {
        Self {
            observations: VecDeque::new(),
            fidelity_score: 1.0,
            assigned_task: None,
            assignment_time: None,
            cooldown_until: 0,
            cooldown_violations: 0,
            validation_locked_until: 0.0,
            last_submit_time: 0.0,
        }
    }
}

impl MinerData {
    fn reset_task(&mut self, now: f64, throttle: f64, cooldown: f64) {
        self.cooldown_until = match self.assignment_time {
            None => (now + cooldown) as i64,
            Some(assigned) => (now + cooldown - throttle).max(assigned + cooldown) as i64,
        };
        self.assigned_task = None;
        self.assignment_time = None;
    }

    fn is_on_cooldown(&self, now: f64) -> bool {
        self.cooldown_until != 0 && now < self.cooldown_until as f64
    }

    fn expire(&mut self, now: f64, window: f64) {
        while self
            .observations
            .front()
            .is_some_and(|&t| t <= now - window)
        {
            self.observations.pop_front();
        }
    }
}

/// Why a submission could not be processed at all (the axon answers 500).
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("license signature: {0}")]
    License(#[from] LicenseError),
}

/// State of one validator.
#[derive(Debug)]
pub struct ValidatorRules {
    uid: u16,
    hotkey: String,
    settings: RuleSettings,
    scoring: ScoreSettings,
    tasks: TaskFactory,
    miners: HashMap<String, MinerData>,
    /// Miner uids in order of first contact (the simulator has no metagraph).
    uids: HashMap<String, u16>,
    /// `None`: every hotkey counts as registered.
    registered: Option<Vec<String>>,
    events: EventLog,
}

impl ValidatorRules {
    pub fn new(
        uid: u16,
        hotkey: String,
        settings: RuleSettings,
        scoring: ScoreSettings,
        tasks: TaskFactory,
        events: EventLog,
    ) -> Self {
        Self {
            uid,
            hotkey,
            settings,
            scoring,
            tasks,
            miners: HashMap::new(),
            uids: HashMap::new(),
            registered: None,
            events,
        }
    }

    /// Hands out these tasks, in order, before the generated ones.
    pub fn hand_out_first(&mut self, tasks: Vec<ProtocolTask>) {
        self.tasks.hand_out_first(tasks);
    }

    /// Restricts the miners this validator recognises (others are "not registered").
    pub fn set_registered(&mut self, hotkeys: Option<Vec<String>>) {
        self.registered = hotkeys;
    }

    pub fn is_registered(&self, hotkey: &str) -> bool {
        self.registered
            .as_ref()
            .is_none_or(|r| r.iter().any(|h| h == hotkey))
    }

    /// The uid this validator gives a miner (assigned on first contact).
    pub fn miner_uid(&mut self, hotkey: &str) -> u16 {
        let next = u16::try_from(self.uids.len()).unwrap_or(u16::MAX);
        *self.uids.entry(hotkey.to_owned()).or_insert(next)
    }

    /// Whether this miner has a task assigned (the submit blacklist's second check).
    pub fn has_assigned_task(&self, hotkey: &str) -> bool {
        self.miners
            .get(hotkey)
            .is_some_and(|m| m.assigned_task.is_some())
    }

    fn throttle(&self) -> f64 {
        self.settings.scaled(self.settings.throttle_period_secs)
    }

    fn cooldown(&self) -> f64 {
        self.settings.scaled(self.settings.task_cooldown_secs)
    }

    fn record(&self, event: &str, miner: &str, mut fields: serde_json::Value) {
        if let Some(map) = fields.as_object_mut() {
            map.insert("validator_uid".into(), json!(self.uid));
            map.insert("validator".into(), json!(self.hotkey));
            map.insert("miner".into(), json!(miner));
        }
        self.events.record(event, fields);
    }

    /// `pull_task`.
    pub fn pull(&mut self, miner_hotkey: Option<&str>, mut synapse: PullTask) -> PullTask {
        let now = now_secs();
        let Some(hotkey) = miner_hotkey.filter(|h| self.is_registered(h)) else {
            synapse.cooldown_until =
                (now + self
                    .settings
                    .scaled(self.settings.unregistered_cooldown_secs)) as i64;
            self.record(
                "pull",
                miner_hotkey.unwrap_or("None"),
                json!({"outcome": "unregistered"}),
            );
            return synapse;
        };
        let threshold = self.settings.quality_threshold;
        let throttle_reported = self.throttle().round() as i64;
        let violation_penalty = self
            .settings
            .scaled(self.settings.cooldown_violation_penalty_secs);
        let violations_threshold = self.settings.cooldown_violations_threshold;
        let miner = self.miners.entry(hotkey.to_owned()).or_default();
        if miner.is_on_cooldown(now) {
            miner.cooldown_violations += 1;
            let penalised = miner.cooldown_violations > violations_threshold;
            if penalised {
                miner.cooldown_until += violation_penalty.ceil() as i64;
            }
            synapse.cooldown_violations = miner.cooldown_violations;
            synapse.cooldown_until = miner.cooldown_until;
            let fields = json!({
                "violations": miner.cooldown_violations,
                "cooldown_until": miner.cooldown_until,
                "penalised": penalised,
            });
            self.record("violation", hotkey, fields);
            return synapse;
        }
        let (task, outcome) = match &miner.assigned_task {
            Some(task) => (task.clone(), "same"),
            None => {
                let task = self.tasks.next_task();
                let miner = self.miners.entry(hotkey.to_owned()).or_default();
                miner.assigned_task = Some(task.clone());
                miner.assignment_time = Some(now);
                (task, "new")
            }
        };
        synapse.task = Some(task.clone());
        synapse.validation_threshold = threshold;
        synapse.throttle_period = throttle_reported;
        self.record(
            "pull",
            hotkey,
            json!({"outcome": outcome, "task_id": task.id(), "task_type": task.task_type().as_str()}),
        );
        synapse
    }

    /// `submit_results` for a request the blacklist let through. `validator_in_body` is the
    /// body's `axon.hotkey`, which the validator puts into the license message.
    pub fn submit(
        &mut self,
        miner_hotkey: Option<&str>,
        validator_in_body: Option<&str>,
        mut synapse: SubmitResults,
    ) -> Result<SubmitResults, RuleError> {
        let now = now_secs();
        let Some(hotkey) = miner_hotkey
            .filter(|h| self.is_registered(h))
            .map(str::to_owned)
        else {
            synapse.cooldown_until =
                (now + self
                    .settings
                    .scaled(self.settings.unregistered_cooldown_secs)) as i64;
            return Ok(synapse);
        };
        let task_id = synapse.effective_task_id().to_owned();
        let payload_chars = synapse.results.len();
        self.record(
            "submit",
            &hotkey,
            json!({"task_id": task_id, "payload_chars": payload_chars}),
        );
        let miner = self.miners.entry(hotkey.clone()).or_default().clone();
        let task = match &miner.assigned_task {
            Some(task) if task.id() == task_id => task.clone(),
            other => {
                let assigned = other.as_ref().map(|t| t.id().to_owned());
                self.record(
                    "verdict",
                    &hotkey,
                    json!({"task_id": task_id, "outcome": "wrong_task", "assigned": assigned}),
                );
                return Ok(self.feedback_and_strip(&hotkey, synapse, 0.0, now, false));
            }
        };

        let validator = validator_in_body.unwrap_or("None");
        let signed = verify_license(
            &synapse.signature,
            synapse.submit_time,
            task.prompt(),
            validator,
            &hotkey,
        );
        let signed = match signed {
            Ok(ok) => ok,
            // An undecodable signature raises in the validator: the axon answers 500.
            Err(LicenseError::NotBase64) => {
                return Err(RuleError::License(LicenseError::NotBase64))
            }
            Err(LicenseError::Key(_)) => false,
        };
        if !signed {
            let penalty = self.settings.scaled(self.settings.cooldown_penalty_secs);
            self.record(
                "penalty",
                &hotkey,
                json!({"task_id": task_id, "reason": "bad_signature", "seconds": penalty}),
            );
            return Ok(self.fail(
                &hotkey,
                &task,
                synapse,
                now,
                0.0,
                penalty,
                false,
                "bad_signature",
            ));
        }
        if let Some(m) = self.miners.get_mut(&hotkey) {
            m.cooldown_violations = (m.cooldown_violations - 1).max(0);
        }
        if synapse.results.is_empty() {
            return Ok(self.fail(&hotkey, &task, synapse, now, 0.0, 0.0, false, "empty"));
        }

        let lock = self.settings.scaled(self.settings.validation_lock_secs);
        if let Some(m) = self.miners.get_mut(&hotkey) {
            if m.validation_locked_until > now {
                self.record(
                    "verdict",
                    &hotkey,
                    json!({"task_id": task_id, "outcome": "validation_locked"}),
                );
                return Ok(self.feedback_and_strip(&hotkey, synapse, 0.0, now, false));
            }
            m.validation_locked_until = now + lock;
        }

        let scored = score_submission(&synapse.results, &self.scoring);
        let Some(score) = scored.score else {
            return Ok(self.fail(
                &hotkey,
                &task,
                synapse,
                now,
                0.0,
                0.0,
                true,
                "validation_failed",
            ));
        };
        let resubmit_guard = self.cooldown() - self.throttle();
        if miner.last_submit_time + resubmit_guard > now {
            self.record(
                "verdict",
                &hotkey,
                json!({"task_id": task_id, "outcome": "resubmitted_too_quickly", "score": score}),
            );
            return Ok(self.feedback_and_strip(&hotkey, synapse, 0.0, now, false));
        }
        if score < self.settings.quality_threshold {
            let penalty = self.settings.scaled(self.settings.cooldown_penalty_secs);
            self.record(
                "penalty",
                &hotkey,
                json!({"task_id": task_id, "reason": "low_score", "score": score, "seconds": penalty}),
            );
            return Ok(self.fail(
                &hotkey, &task, synapse, now, score, penalty, false, "rejected",
            ));
        }

        let fidelity = score.min(1.0);
        let (throttle, cooldown) = (self.throttle(), self.cooldown());
        let alpha = self.settings.moving_average_alpha;
        let window = self.settings.observation_window_secs;
        if let Some(m) = self.miners.get_mut(&hotkey) {
            m.reset_task(now, throttle, cooldown);
            m.observations.push_back(now);
            m.expire(now, window);
            m.fidelity_score = m.fidelity_score * (1.0 - alpha) + alpha * fidelity;
            m.last_submit_time = now;
        }
        self.record(
            "verdict",
            &hotkey,
            json!({
                "task_id": task_id,
                "task_type": task.task_type().as_str(),
                "outcome": "accepted",
                "score": score,
                "payload_bytes": scored.payload_bytes,
            }),
        );
        Ok(self.feedback_and_strip(&hotkey, synapse, fidelity, now, false))
    }

    #[allow(clippy::too_many_arguments)]
    fn fail(
        &mut self,
        hotkey: &str,
        task: &ProtocolTask,
        synapse: SubmitResults,
        now: f64,
        score: f64,
        penalty: f64,
        validation_failed: bool,
        outcome: &str,
    ) -> SubmitResults {
        let (throttle, cooldown) = (self.throttle(), self.cooldown());
        if let Some(m) = self.miners.get_mut(hotkey) {
            m.reset_task(now, throttle, cooldown + penalty);
        }
        self.record(
            "verdict",
            hotkey,
            json!({
                "task_id": task.id(),
                "task_type": task.task_type().as_str(),
                "outcome": outcome,
                "score": score,
                "validation_failed": validation_failed,
            }),
        );
        self.feedback_and_strip(hotkey, synapse, 0.0, now, validation_failed)
    }

    fn feedback_and_strip(
        &mut self,
        hotkey: &str,
        mut synapse: SubmitResults,
        fidelity: f64,
        now: f64,
        validation_failed: bool,
    ) -> SubmitResults {
        let rating = self.settings.duel_rating;
        let window = self.settings.observation_window_secs;
        let miner = self.miners.entry(hotkey.to_owned()).or_default();
        miner.expire(now, window);
        synapse.results = String::new();
        synapse.signature = String::new();
        synapse.feedback = Some(Feedback {
            validation_failed,
            task_fidelity_score: fidelity,
            average_fidelity_score: miner.fidelity_score,
            generations_within_the_window: miner.observations.len() as i64,
            current_duel_rating: rating,
            current_miner_reward: miner.observations.len() as f64 * rating,
        });
        synapse.cooldown_until = miner.cooldown_until;
        synapse
    }
}
