//! `[puller]`: whom to pull from and when (cooldowns, backoff, blacklists, reward weights),
//! how much (backlog, concurrent pulls), and when a task is lost.

use std::{collections::BTreeMap, net::SocketAddr};

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::discovery::{AxonVersions, RankFactor};

/// The puller's scheduling knobs (`[puller]`): whom to pull from, when, and how much.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PullerSettings {
    /// Where `/metrics` is served; unset means `127.0.0.1:9471`.
    pub metrics_addr: Option<SocketAddr>,
    /// How often the scheduler looks at capacity, cooldowns and Postgres, milliseconds.
    pub tick_ms: u64,
    /// Ready tasks allowed in `<prefix>.tasks` per consuming worker (at least 1): the puller
    /// pulls only while ready + in-flight pulls < consumers × this.
    pub backlog_factor: f64,
    /// Pull requests in flight at once, over all validators (one per validator at most).
    pub max_concurrent_pulls: usize,
    /// Limit on one PullTask or empty SubmitResults call, milliseconds.
    pub pull_timeout_ms: u64,
    /// Wait after a validator's `cooldown_until` before pulling again (clock skew), ms.
    pub cooldown_margin_ms: u64,
    /// First pause after a failed pull (connect error, timeout, 5xx, malformed answer),
    /// milliseconds; doubles with each other failure of the validator in the last hour (a
    /// good answer ends the pause, not the record).
    pub backoff_initial_ms: u64,
    /// Longest pause between pulls from a failing validator, milliseconds.
    pub backoff_max_ms: u64,
    /// How often the validator set is rediscovered, seconds.
    pub discovery_refresh_secs: u64,
    /// Skip validators without a validator permit.
    pub require_validator_permit: bool,
    /// Validators kept after the filters, the best by `rank_by` first (the seeds keep 50).
    pub top_validators: usize,
    /// The figures whose product ranks validators for `top_validators`; equal products (all
    /// 0, say) are ranked by stake, then uid.
    pub rank_by: Vec<RankFactor>,
    /// The SDK versions a validator's axon may announce on chain (a semver range): others
    /// do not speak the protocol this fleet speaks (v45) and are excluded.
    pub axon_versions: AxonVersions,
    /// Validator uids never pulled from.
    pub blacklist_uids: Vec<u16>,
    /// Validator hotkeys (SS58) never pulled from.
    pub blacklist_hotkeys: Vec<String>,
    /// Completed non-empty submissions per validator judged by the automatic blacklist.
    pub auto_blacklist_window: u32,
    /// A validator accepting fewer than this fraction of the window is blacklisted.
    pub auto_blacklist_min_acceptance: f64,
    /// A validator penalising this many submissions within the window is blacklisted.
    pub auto_blacklist_max_penalties: u32,
    /// How long an automatic blacklisting lasts, seconds.
    pub auto_blacklist_secs: u64,
    /// Recent completed submissions used to estimate a validator's acceptance.
    pub acceptance_window: u32,
    /// Reward weight of validators not named in `reward_weights`.
    pub default_reward_weight: f64,
    /// Reward weight per validator hotkey: expected value = acceptance × weight.
    pub reward_weights: BTreeMap<String, f64>,
    /// Seconds after the pull at which a task is no longer worth submitting (`TaskMsg`).
    pub task_deadline_secs: u64,
    /// Seconds after the deadline at which a task without a submission counts as lost: the
    /// puller records a request to release it, which a submitter sends as an empty
    /// submission.
    pub lost_task_grace_secs: u64,
    /// Publish tries per pulled task; after the last the task is not recorded (the pull counts
    /// as failed and the validator, still holding it, hands it out again on the next pull).
    pub publish_tries: u32,
}

impl Default for PullerSettings {
    fn default() -> Self {
        Self {
            metrics_addr: None,
            tick_ms: 250,
            backlog_factor: 1.0,
            max_concurrent_pulls: 8,
            pull_timeout_ms: 12_000,
            cooldown_margin_ms: 2_000,
            backoff_initial_ms: 5_000,
            backoff_max_ms: 300_000,
            discovery_refresh_secs: 600,
            require_validator_permit: true,
            top_validators: 50,
            rank_by: vec![RankFactor::Stake, RankFactor::Trust, RankFactor::Consensus],
            axon_versions: AxonVersions::default(),
            blacklist_uids: Vec::new(),
            blacklist_hotkeys: Vec::new(),
            auto_blacklist_window: 20,
            auto_blacklist_min_acceptance: 0.3,
            auto_blacklist_max_penalties: 5,
            auto_blacklist_secs: 3_600,
            acceptance_window: 50,
            default_reward_weight: 1.0,
            reward_weights: BTreeMap::new(),
            task_deadline_secs: 300,
            lost_task_grace_secs: 60,
            publish_tries: 5,
        }
    }
}

impl PullerSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: &str| {
            Err(ConfigError::Invalid {
                key: format!("puller.{key}"),
                problem: problem.into(),
            })
        };
        for (key, value) in [
            ("tick_ms", self.tick_ms),
            ("pull_timeout_ms", self.pull_timeout_ms),
            ("backoff_initial_ms", self.backoff_initial_ms),
            ("backoff_max_ms", self.backoff_max_ms),
            ("discovery_refresh_secs", self.discovery_refresh_secs),
            ("auto_blacklist_secs", self.auto_blacklist_secs),
            ("task_deadline_secs", self.task_deadline_secs),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            return invalid("backoff_max_ms", "must be at least backoff_initial_ms");
        }
        if !(1.0..=1000.0).contains(&self.backlog_factor) {
            return invalid(
                "backlog_factor",
                "must be between 1 and 1000 (below 1 a worker waits for every pull)",
            );
        }
        if self.top_validators == 0 {
            return invalid("top_validators", "must be at least 1");
        }
        if self.rank_by.is_empty() {
            return invalid(
                "rank_by",
                "must name at least one of stake, trust, consensus, validator_trust (\"stake\" alone ranks by stake)",
            );
        }
        if self.max_concurrent_pulls == 0 {
            return invalid("max_concurrent_pulls", "must be at least 1");
        }
        if self.publish_tries == 0 {
            return invalid("publish_tries", "must be at least 1");
        }
        if self.auto_blacklist_window == 0 {
            return invalid("auto_blacklist_window", "must be at least 1");
        }
        if self.acceptance_window == 0 {
            return invalid("acceptance_window", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.auto_blacklist_min_acceptance) {
            return invalid("auto_blacklist_min_acceptance", "must be between 0 and 1");
        }
        if !(self.default_reward_weight.is_finite() && self.default_reward_weight > 0.0) {
            return invalid("default_reward_weight", "must be a number above 0");
        }
        for (hotkey, weight) in &self.reward_weights {
            if !(weight.is_finite() && *weight > 0.0) {
                return invalid(
                    &format!("reward_weights.{hotkey}"),
                    "must be a number above 0",
                );
            }
        }
        for hotkey in self
            .blacklist_hotkeys
            .iter()
            .chain(self.reward_weights.keys())
        {
            if let Err(err) = crate::bittensor::ss58::decode_bittensor(hotkey) {
                let key = if self.blacklist_hotkeys.contains(hotkey) {
                    "blacklist_hotkeys".to_owned()
                } else {
                    format!("reward_weights.{hotkey}")
                };
                return invalid(&key, &format!("`{hotkey}` is not an SS58 hotkey: {err}"));
            }
        }
        Ok(())
    }
}
