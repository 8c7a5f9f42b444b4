//! The one configuration shared by every role: a TOML file (`ops/splatfleet.example.toml`
//! documents every key) overridden by `SPLATFLEET__SECTION__KEY` environment variables.
//!
//! Loading is strict: a missing file, bad TOML, an unknown key, a wrong type or a value out of
//! range fails at start with an error naming the key. Secrets (database and wallet passwords,
//! AMQP credentials) are wrapped so `Debug` and logs never show them.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Environment variables starting with this and `__` override file keys.
pub const ENV_PREFIX: &str = "SPLATFLEET";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} does not exist (pass --config PATH or set SPLATFLEET_CONFIG)")]
    Missing { path: PathBuf },
    #[error("config file {path} could not be read: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

/// Every role's settings. Sections a role does not use are still validated, so one file
/// serves the whole fleet.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub log: LogSettings,
    pub broker: BrokerSettings,
    pub database: DatabaseSettings,
    pub shutdown: ShutdownSettings,
    pub puller: PullerSettings,
    pub worker: WorkerSettings,
    pub submitter: SubmitterSettings,
    pub object_store: ObjectStoreSettings,
    pub wallet: WalletSettings,
    pub discovery: DiscoverySettings,
    pub dendrite: DendriteConfig,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON otherwise.
    #[default]
    Auto,
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A tracing filter directive; `RUST_LOG` wins when set.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Auto,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    pub url: AmqpUrl,
    /// Queue and exchange name prefix, so two fleets can share one broker.
    pub prefix: String,
    /// Deliveries of one message before the quorum queue dead-letters it.
    pub delivery_limit: u32,
    pub heartbeat_secs: u16,
    /// How long a role waits for the broker at start before giving up.
    pub connect_timeout_secs: u64,
    /// Longest pause between reconnect tries after the broker goes away.
    pub reconnect_max_delay_secs: u64,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            url: AmqpUrl::new("amqp://guest:guest@127.0.0.1:5672/%2f"),
            prefix: "splatfleet".into(),
            delivery_limit: 5,
            heartbeat_secs: 30,
            connect_timeout_secs: 30,
            reconnect_max_delay_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<SecretString>,
    pub dbname: String,
    pub pool_max_size: usize,
    /// Longest wait for a free pooled connection.
    pub wait_timeout_ms: u64,
    /// Longest wait to open a new connection (also the TCP connect timeout).
    pub create_timeout_ms: u64,
    /// Longest wait to check a returned connection before reuse.
    pub recycle_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 5432,
            user: "postgres".into(),
            password: None,
            dbname: "splatfleet".into(),
            pool_max_size: 8,
            wait_timeout_ms: 5_000,
            create_timeout_ms: 5_000,
            recycle_timeout_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownSettings {
    /// After SIGTERM or Ctrl-C, how long a role may take to finish in-flight work.
    pub drain_timeout_secs: u64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            drain_timeout_secs: 30,
        }
    }
}

impl ShutdownSettings {
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }
}

/// Settings every role has; role-specific keys join these in later issues.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RoleSettings {
    /// Where `/metrics` is served; unset means `127.0.0.1:<the role's default port>`.
    pub metrics_addr: Option<SocketAddr>,
}

/// The worker's knobs (`[worker]`): its generation service, how many tasks at once, the
/// retry ladder and its time budget, and the fidelity gate's render size, weights and
/// threshold (DESIGN.md §6, §7).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Where `/metrics` is served; unset means `127.0.0.1:9472`.
    pub metrics_addr: Option<SocketAddr>,
    /// Generation service base URL per GPU: `--gpu N` uses entry N (`POST {url}/generate/`).
    pub generation_endpoints: Vec<String>,
    /// Tasks handled at once (the consumer's prefetch).
    pub slots: u16,
    /// Longest wait for one generation answer, milliseconds.
    pub generate_timeout_ms: u64,
    /// Largest generation answer accepted, bytes.
    pub max_response_bytes: u64,
    /// Time budget of a task is max(min_budget_ms, throttle_period − budget_margin_ms),
    /// never past the task's deadline.
    pub min_budget_ms: u64,
    pub budget_margin_ms: u64,
    /// Parameter sets tried in order, each sent as extra form fields (a seed is always sent).
    pub ladder: Vec<BTreeMap<String, String>>,
    /// What the gate judges an attempt by (DESIGN.md §7): `validator` (the validator's own
    /// score on our renders, the recommended mode, needs `[worker.scorer]`'s model files),
    /// `geometry` (the default for now: coverage, sharpness, floaters, SSIM; `full` is its
    /// old name) or `validity_only`, a benchmark and diagnostic mode that parses the model
    /// and applies the validator's hard-zero rules and SN17's PLY rules without rendering
    /// (never for mining).
    pub gate_mode: GateMode,
    /// Views and square size of the gate's render (the validator renders 16 at 518).
    pub gate_views: usize,
    pub gate_render_size: u32,
    /// Weights of the local score's terms: mean silhouette coverage (relative to
    /// `gate_coverage_target`), mean adjacent-view SSIM, one minus the floater fraction, and
    /// mean silhouette fill of its bounding box (relative to `gate_fill_target`).
    pub gate_coverage_weight: f64,
    pub gate_ssim_weight: f64,
    pub gate_floater_weight: f64,
    pub gate_fill_weight: f64,
    /// Mean coverage at which the coverage term reaches 1.
    pub gate_coverage_target: f64,
    /// Mean fill at which the fill term reaches 1 (solid objects fill 0.6–0.8 of their box).
    pub gate_fill_target: f64,
    /// Local score (0..1) an attempt needs to pass.
    pub gate_pass_threshold: f64,
    /// Score (tier 2's when it gave one, else the local score) at which the ladder stops
    /// climbing. Unset: stop at the first attempt that passes. Set higher, passing attempts
    /// under it are kept and the ladder goes on while the budget lasts; the best is submitted.
    pub gate_stop_score: Option<f64>,
    /// The fidelity gate's tier 2, the subnet's own validation service (DESIGN.md §7):
    /// base URL per GPU like `generation_endpoints` (as many entries; `--gpu N` uses entry N),
    /// or one URL that every GPU shares. Empty: tier 2 is off.
    pub validation_endpoints: Vec<String>,
    /// Longest wait for one validation answer, milliseconds (never past the task's deadline).
    pub validation_timeout_ms: u64,
    /// Tier-2 score (0..1) an attempt needs to pass; a task's own announced threshold wins
    /// when it is higher. The validator's default is 0.6.
    pub validation_pass_threshold: f64,
    /// What a tier-2 answer that never came (connect error, timeout, non-200, malformed)
    /// means for the attempt.
    pub validation_unavailable: ValidationUnavailable,
    /// `[worker.scorer]`: the model files and thresholds of `gate_mode = "validator"`.
    pub scorer: ScorerSettings,
}

/// What the gate judges an attempt by.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GateMode {
    /// The validator's own score computed on our renders (DINOv2 quality head, alignment,
    /// SSIM and LPIPS, aggregated as the validation service does) after the hard-zero and
    /// SN17 PLY rules: passes when the predicted score reaches `[worker.scorer] threshold +
    /// margin`. Needs the model files of `[worker.scorer] models_dir`. The recommended mode.
    Validator,
    /// Parse, the hard-zero and SN17 PLY rules, render the views and score their geometry
    /// (coverage, SSIM, floaters, fill) into a local score. Weight-free, but not a verdict
    /// the validator shares. Written `full` before `validator` existed; that name still loads.
    #[default]
    #[serde(alias = "full")]
    Geometry,
    /// Parse and the hard-zero and SN17 PLY rules only: no render, no local score measured
    /// (a model that passes is recorded with local score 1). For benchmarks of the rest of
    /// the fleet and for diagnosing it without a renderer; a mining fleet must not use it.
    ValidityOnly,
}

/// What the worker does when the validation service gives no score.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ValidationUnavailable {
    /// Trust tier 1 and pass the attempt, with a warning, a metric and a record.
    #[default]
    Tier1,
    /// Fail the attempt.
    Fail,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        let step = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        Self {
            metrics_addr: None,
            generation_endpoints: vec!["http://127.0.0.1:8093".into()],
            slots: 1,
            generate_timeout_ms: 60_000,
            max_response_bytes: 256 * 1024 * 1024,
            min_budget_ms: 20_000,
            budget_margin_ms: 3_000,
            ladder: vec![
                step(&[("enhance", "standard")]),
                step(&[("enhance", "extreme")]),
                step(&[("enhance", "extreme"), ("sampler", "alternate")]),
            ],
            gate_mode: GateMode::Geometry,
            gate_views: 16,
            gate_render_size: 518,
            gate_coverage_weight: 0.3,
            gate_ssim_weight: 0.3,
            gate_floater_weight: 0.1,
            gate_fill_weight: 0.3,
            gate_coverage_target: 0.1,
            gate_fill_target: 0.7,
            gate_pass_threshold: 0.5,
            gate_stop_score: None,
            validation_endpoints: Vec::new(),
            validation_timeout_ms: 30_000,
            validation_pass_threshold: 0.6,
            validation_unavailable: ValidationUnavailable::Tier1,
            scorer: ScorerSettings::default(),
        }
    }
}

impl WorkerSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| {
            Err(ConfigError::Invalid {
                key: format!("worker.{key}"),
                problem,
            })
        };
        if self.generation_endpoints.is_empty() {
            return invalid("generation_endpoints", "must name at least one URL".into());
        }
        for (key, endpoints) in [
            ("generation_endpoints", &self.generation_endpoints),
            ("validation_endpoints", &self.validation_endpoints),
        ] {
            for endpoint in endpoints {
                match url::Url::parse(endpoint) {
                    Ok(url) if url.scheme() == "http" => {}
                    Ok(url) => {
                        return invalid(
                            key,
                            format!("`{endpoint}`: scheme must be http, not `{}`", url.scheme()),
                        )
                    }
                    Err(err) => return invalid(key, format!("`{endpoint}` is not a URL: {err}")),
                }
            }
        }
        let (validation, generation) = (
            self.validation_endpoints.len(),
            self.generation_endpoints.len(),
        );
        if validation > 1 && validation != generation {
            return invalid(
                "validation_endpoints",
                format!(
                    "has {validation} URLs: give one shared by every GPU, or one per GPU as \
                     generation_endpoints does ({generation})"
                ),
            );
        }
        for (key, value) in [
            ("slots", u64::from(self.slots)),
            ("generate_timeout_ms", self.generate_timeout_ms),
            ("max_response_bytes", self.max_response_bytes),
            ("min_budget_ms", self.min_budget_ms),
            ("gate_views", self.gate_views as u64),
            ("gate_render_size", u64::from(self.gate_render_size)),
            ("validation_timeout_ms", self.validation_timeout_ms),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1".into());
            }
        }
        if self.gate_views > 64 {
            return invalid("gate_views", "must be at most 64".into());
        }
        if self.gate_render_size > 2048 {
            return invalid("gate_render_size", "must be at most 2048".into());
        }
        if self.ladder.is_empty() {
            return invalid("ladder", "must hold at least one parameter set".into());
        }
        if self.ladder.len() > 32 {
            return invalid("ladder", "must hold at most 32 parameter sets".into());
        }
        for (i, step) in self.ladder.iter().enumerate() {
            for name in step.keys() {
                if name == "prompt" || name == "seed" || name == "attempt" {
                    return invalid(
                        &format!("ladder[{i}].{name}"),
                        "is set by the worker itself".into(),
                    );
                }
            }
        }
        let weights = [
            ("gate_coverage_weight", self.gate_coverage_weight),
            ("gate_ssim_weight", self.gate_ssim_weight),
            ("gate_floater_weight", self.gate_floater_weight),
            ("gate_fill_weight", self.gate_fill_weight),
        ];
        for (key, value) in weights {
            if !(value.is_finite() && value >= 0.0) {
                return invalid(key, "must be a number at least 0".into());
            }
        }
        if weights.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
            return invalid(
                "gate_coverage_weight",
                "the gate weights must not all be 0".into(),
            );
        }
        if !(self.gate_coverage_target.is_finite()
            && self.gate_coverage_target > 0.0
            && self.gate_coverage_target <= 1.0)
        {
            return invalid(
                "gate_coverage_target",
                "must be above 0 and at most 1".into(),
            );
        }
        if !(self.gate_fill_target.is_finite()
            && self.gate_fill_target > 0.0
            && self.gate_fill_target <= 1.0)
        {
            return invalid("gate_fill_target", "must be above 0 and at most 1".into());
        }
        if !(0.0..=1.0).contains(&self.gate_pass_threshold) {
            return invalid("gate_pass_threshold", "must be between 0 and 1".into());
        }
        if let Some(stop) = self.gate_stop_score {
            if !(self.gate_pass_threshold..=1.0).contains(&stop) {
                return invalid(
                    "gate_stop_score",
                    "must lie between gate_pass_threshold and 1".into(),
                );
            }
        }
        if !(0.0..=1.0).contains(&self.validation_pass_threshold) {
            return invalid(
                "validation_pass_threshold",
                "must be between 0 and 1".into(),
            );
        }
        self.scorer.validate()
    }

    pub fn generate_timeout(&self) -> Duration {
        Duration::from_millis(self.generate_timeout_ms)
    }

    /// The local score at which the retry ladder stops.
    pub fn stop_score(&self) -> f64 {
        self.gate_stop_score.unwrap_or(self.gate_pass_threshold)
    }

    pub fn validation_timeout(&self) -> Duration {
        Duration::from_millis(self.validation_timeout_ms)
    }

    /// The validation service of GPU `gpu`: entry `gpu`, or the only entry when one URL is
    /// shared by every GPU; `None` when tier 2 is off or the list has no entry for `gpu`.
    pub fn validation_endpoint(&self, gpu: usize) -> Option<&str> {
        match self.validation_endpoints.as_slice() {
            [] => None,
            [shared] => Some(shared),
            many => many.get(gpu).map(String::as_str),
        }
    }
}

/// `[worker.scorer]`: what `gate_mode = "validator"` reads (DESIGN.md §7). The validator's
/// own constants (its 0.6 threshold, the score's weights) live in
/// `splatfleet_kernels::scorer::aggregate`; `threshold` unset means that one.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScorerSettings {
    /// The directory holding the scorer's model files under their upstream names.
    pub models_dir: PathBuf,
    /// Pinned sha256 digests (hex) of model files, by file name relative to `models_dir`;
    /// a file that differs refuses the worker's start. Empty: nothing pinned.
    pub sha256: BTreeMap<String, String>,
    /// The prompt-alignment score assumed until the worker measures alignment (recorded
    /// with `alignment_assumed = 1`). Under the validator's 0.3 cut-off it scores 0.
    pub assumed_alignment: f64,
    /// The validator's acceptance threshold; unset = the validator's own (0.6). Lowered only
    /// for demos and tests with random-weight models.
    pub threshold: Option<f64>,
    /// An attempt passes when its predicted score is at least `threshold + margin`.
    pub margin: f64,
    /// An attempt whose model has fewer gaussians than this does not stop the ladder even
    /// when it passes: it is kept as a candidate and the ladder climbs while the budget
    /// lasts (miners' logs show models under 150 k retried with better results).
    pub sparse_below_gaussians: u64,
}

/// `[worker.scorer] models_dir` unless the config says otherwise.
pub const DEFAULT_MODELS_DIR: &str = "/var/lib/splatfleet/models";

impl Default for ScorerSettings {
    fn default() -> Self {
        Self {
            models_dir: PathBuf::from(DEFAULT_MODELS_DIR),
            sha256: BTreeMap::new(),
            assumed_alignment: 1.0,
            threshold: None,
            margin: 0.05,
            sparse_below_gaussians: 150_000,
        }
    }
}

impl ScorerSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| {
            Err(ConfigError::Invalid {
                key: format!("worker.scorer.{key}"),
                problem,
            })
        };
        if self.models_dir.as_os_str().is_empty() {
            return invalid("models_dir", "must name a directory".into());
        }
        for (name, digest) in &self.sha256 {
            if name.is_empty() {
                return invalid("sha256", "a file name is empty".into());
            }
            if Path::new(name).is_absolute()
                || Path::new(name)
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return invalid(
                    &format!("sha256.\"{name}\""),
                    "must be a file name relative to models_dir, without `..`".into(),
                );
            }
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return invalid(
                    &format!("sha256.\"{name}\""),
                    format!("`{digest}` is not a sha256 digest (64 hex digits)"),
                );
            }
        }
        if !(self.assumed_alignment.is_finite() && self.assumed_alignment >= 0.0) {
            return invalid("assumed_alignment", "must be a number at least 0".into());
        }
        if let Some(threshold) = self.threshold {
            if !(threshold.is_finite() && (0.0..=2.0).contains(&threshold)) {
                return invalid("threshold", "must be between 0 and 2".into());
            }
        }
        if !(self.margin.is_finite() && (-1.0..=1.0).contains(&self.margin)) {
            return invalid("margin", "must be between -1 and 1".into());
        }
        Ok(())
    }

    /// `threshold`, or `validator_threshold` (the validator's own) when unset.
    pub fn threshold_or(&self, validator_threshold: f64) -> f64 {
        self.threshold.unwrap_or(validator_threshold)
    }
}

/// The puller's scheduling knobs (`[puller]`): whom to pull from, when, and how much.
#[derive(Debug, Clone, Deserialize)]
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
    /// First pause after a connect error, timeout or 5xx from a validator, milliseconds;
    /// doubles with each further failure.
    pub backoff_initial_ms: u64,
    /// Longest pause between pulls from a failing validator, milliseconds.
    pub backoff_max_ms: u64,
    /// How often the validator set is rediscovered, seconds.
    pub discovery_refresh_secs: u64,
    /// Skip validators without a validator permit.
    pub require_validator_permit: bool,
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
    /// Seconds after the deadline at which a task without a submission counts as lost and
    /// is released with an empty submission.
    pub lost_task_grace_secs: u64,
    /// Cooldown assumed when a validator's real one is unknown (a lost task it had already
    /// released), seconds.
    pub assumed_cooldown_secs: u64,
    /// Publish tries per pulled task before the row is left for the retry sweep.
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
            require_validator_permit: false,
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
            assumed_cooldown_secs: 300,
            publish_tries: 5,
        }
    }
}

impl PullerSettings {
    fn validate(&self) -> Result<(), ConfigError> {
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

/// The submitter's knobs (`[submitter]`): how many results at once, how long a
/// SubmitResults call may take, and how transient failures and a lost database are retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubmitterSettings {
    /// Where `/metrics` is served; unset means `127.0.0.1:9473`.
    pub metrics_addr: Option<SocketAddr>,
    /// Results handled at once (the consumer's prefetch).
    pub concurrency: u16,
    /// Limit on one SubmitResults call, seconds (the subnet's base miner uses 300).
    pub submit_timeout_secs: u64,
    /// Sends of one result at most, counting the first; only connect errors, timeouts and
    /// 5xx answers are tried again.
    pub max_send_tries: u32,
    /// First pause before sending again after a transient failure, milliseconds; doubles
    /// with each further failure.
    pub retry_initial_ms: u64,
    /// Longest pause between sends of one result, milliseconds.
    pub retry_max_ms: u64,
    /// A result is sent again only while the task's deadline plus this many seconds has not
    /// passed (afterwards the validator has most likely moved on).
    pub retry_past_deadline_secs: u64,
    /// First pause before retrying a PostgreSQL write that failed, milliseconds; doubles up
    /// to `db_retry_max_ms`. Writes are retried until they succeed or the role stops.
    pub db_retry_initial_ms: u64,
    pub db_retry_max_ms: u64,
    /// Largest PLY or SPZ artifact loaded, bytes.
    pub max_artifact_bytes: u64,
}

impl Default for SubmitterSettings {
    fn default() -> Self {
        Self {
            metrics_addr: None,
            concurrency: 8,
            submit_timeout_secs: 300,
            max_send_tries: 5,
            retry_initial_ms: 1_000,
            retry_max_ms: 30_000,
            retry_past_deadline_secs: 60,
            db_retry_initial_ms: 250,
            db_retry_max_ms: 5_000,
            max_artifact_bytes: 256 * 1024 * 1024,
        }
    }
}

impl SubmitterSettings {
    pub fn submit_timeout(&self) -> Duration {
        Duration::from_secs(self.submit_timeout_secs)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: &str| {
            Err(ConfigError::Invalid {
                key: format!("submitter.{key}"),
                problem: problem.into(),
            })
        };
        for (key, value) in [
            ("concurrency", u64::from(self.concurrency)),
            ("submit_timeout_secs", self.submit_timeout_secs),
            ("max_send_tries", u64::from(self.max_send_tries)),
            ("retry_initial_ms", self.retry_initial_ms),
            ("retry_max_ms", self.retry_max_ms),
            ("db_retry_initial_ms", self.db_retry_initial_ms),
            ("db_retry_max_ms", self.db_retry_max_ms),
            ("max_artifact_bytes", self.max_artifact_bytes),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return invalid("retry_max_ms", "must be at least retry_initial_ms");
        }
        if self.db_retry_max_ms < self.db_retry_initial_ms {
            return invalid("db_retry_max_ms", "must be at least db_retry_initial_ms");
        }
        if self.max_send_tries > 100 {
            return invalid("max_send_tries", "must be at most 100");
        }
        Ok(())
    }
}

/// Where artifacts (PLY, SPZ, previews) live (`[object_store]`): a local directory by
/// default, or an S3 bucket when `s3_bucket` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectStoreSettings {
    /// Local directory of the filesystem store (created if missing); every worker and
    /// submitter of a host must see the same one.
    pub root: PathBuf,
    /// Largest object stored or loaded, bytes.
    pub max_object_bytes: u64,
    /// S3 bucket; when set the store is S3 and `root` is ignored (needs the `s3` feature).
    pub s3_bucket: Option<String>,
    pub s3_region: Option<String>,
    /// Endpoint of an S3-compatible service (MinIO, Ceph); unset means AWS.
    pub s3_endpoint: Option<String>,
    pub s3_access_key_id: Option<String>,
    /// A secret; unset means the usual AWS environment and instance credentials.
    pub s3_secret_access_key: Option<SecretString>,
    /// Allow `http://` endpoints (local S3-compatible services).
    pub s3_allow_http: bool,
}

impl Default for ObjectStoreSettings {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/var/lib/splatfleet/artifacts"),
            max_object_bytes: 256 * 1024 * 1024,
            s3_bucket: None,
            s3_region: None,
            s3_endpoint: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_allow_http: false,
        }
    }
}

impl ObjectStoreSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| {
            Err(ConfigError::Invalid {
                key: format!("object_store.{key}"),
                problem,
            })
        };
        if self.root.as_os_str().is_empty() {
            return invalid("root", "must not be empty".into());
        }
        if self.max_object_bytes == 0 {
            return invalid("max_object_bytes", "must be at least 1".into());
        }
        if let Some(bucket) = &self.s3_bucket {
            let valid = (3..=63).contains(&bucket.len())
                && bucket.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-')
                });
            if !valid {
                return invalid(
                    "s3_bucket",
                    format!("`{bucket}` is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')"),
                );
            }
        }
        if let Some(endpoint) = &self.s3_endpoint {
            match url::Url::parse(endpoint) {
                Ok(url) if url.scheme() == "https" => {}
                Ok(url) if url.scheme() == "http" && self.s3_allow_http => {}
                Ok(url) if url.scheme() == "http" => {
                    return invalid(
                        "s3_endpoint",
                        "is http: set object_store.s3_allow_http = true to allow it".into(),
                    )
                }
                Ok(url) => {
                    return invalid(
                        "s3_endpoint",
                        format!("scheme must be http or https, not `{}`", url.scheme()),
                    )
                }
                Err(err) => return invalid("s3_endpoint", format!("not a URL: {err}")),
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalletSettings {
    /// Directory holding `<name>/hotkeys/<hotkey>`, as the Bittensor SDK lays it out.
    pub path: PathBuf,
    pub name: String,
    pub hotkey: String,
    /// Password of an encrypted (`$NACL`) hotkey file; also settable as the
    /// `SPLATFLEET__WALLET__PASSWORD` environment variable. At most one of this and
    /// `password_file`.
    pub password: Option<SecretString>,
    /// A file (mode 600) holding the password of an encrypted hotkey file; one trailing
    /// newline is ignored. Read only when the hotkey file is encrypted.
    pub password_file: Option<PathBuf>,
}

impl Default for WalletSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("~/.bittensor/wallets"),
            name: "default".into(),
            hotkey: "default".into(),
            password: None,
            password_file: None,
        }
    }
}

/// Where the validators come from.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DiscoverySource {
    /// `validators` below plus those in `validators_file`.
    #[default]
    Static,
    /// The metagraph, read from a subtensor node's JSON-RPC.
    Subtensor,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoverySettings {
    pub source: DiscoverySource,
    /// Static validators written inline as `[[discovery.validators]]`.
    pub validators: Vec<crate::discovery::ValidatorInfo>,
    /// A file of `[[validators]]` entries (what `splatfleet-sim validators` writes).
    pub validators_file: Option<PathBuf>,
    /// Subtensor JSON-RPC endpoint (http only).
    pub subtensor_url: String,
    pub netuid: u16,
    /// Validators with less stake (TAO) are not pulled from, as the base miner does.
    pub min_stake: f64,
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        Self {
            source: DiscoverySource::Static,
            validators: Vec::new(),
            validators_file: None,
            subtensor_url: "http://127.0.0.1:9944".into(),
            netuid: 17,
            min_stake: 1000.0,
        }
    }
}

/// Settings of the Bittensor dendrite (the HTTP client that calls validators' axons).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DendriteConfig {
    /// The IP announced in `bt_header_dendrite_ip`.
    pub external_ip: String,
    /// Largest validator response accepted, bytes.
    pub max_response_bytes: usize,
    pub connect_timeout_secs: u64,
}

impl Default for DendriteConfig {
    fn default() -> Self {
        let defaults = crate::bittensor::DendriteSettings::default();
        Self {
            external_ip: defaults.external_ip,
            max_response_bytes: defaults.max_response_bytes,
            connect_timeout_secs: defaults.connect_timeout.as_secs(),
        }
    }
}

impl DendriteConfig {
    pub fn settings(&self) -> crate::bittensor::DendriteSettings {
        crate::bittensor::DendriteSettings {
            external_ip: self.external_ip.clone(),
            max_response_bytes: self.max_response_bytes,
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
        }
    }
}

/// An AMQP URL whose credentials never print: `Display` and `Debug` mask the password.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct AmqpUrl(SecretString);

impl AmqpUrl {
    pub fn new(url: &str) -> Self {
        Self(SecretString::from(url))
    }

    /// The URL with credentials, for the client library only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with the password replaced by `***`.
    pub fn redacted(&self) -> String {
        match url::Url::parse(self.expose()) {
            Ok(mut url) => {
                if url.password().is_some() {
                    // Setting a password only fails for URLs that cannot carry one.
                    let _ = url.set_password(Some("***"));
                }
                url.to_string()
            }
            Err(_) => "<unparsable AMQP URL>".into(),
        }
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpUrl({})", self.redacted())
    }
}

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Config {
    /// Reads `path`, applies `SPLATFLEET__SECTION__KEY` variables from the process
    /// environment, and validates the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment, so tests need not touch the
    /// process's own.
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::Missing {
                    path: path.to_owned(),
                })
            }
            Err(source) => {
                return Err(ConfigError::Unreadable {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        Self::from_toml_with_env(&text, path, env)
    }

    /// Parses TOML text (named `origin` in errors) with environment overrides.
    pub fn from_toml_with_env(
        text: &str,
        origin: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        // Parse once ourselves so a syntax error is reported as such, with its line.
        let table = text
            .parse::<toml::Table>()
            .map_err(|err| ConfigError::Syntax {
                path: origin.to_owned(),
                message: err.to_string(),
            })?;
        let prefix = format!("{ENV_PREFIX}__");
        let overrides: config::Map<String, String> = env
            .into_iter()
            .filter(|(key, _)| key.starts_with(&prefix))
            .collect();
        check_types_strictly(table, &overrides)?;
        let layered = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(overrides)),
            )
            .build()
            .map_err(|err| ConfigError::Syntax {
                path: origin.to_owned(),
                message: err.to_string(),
            })?;
        let config: Config = serde_path_to_error::deserialize(layered).map_err(|err| {
            let key = err.path().to_string();
            ConfigError::Invalid {
                key: if key == "." { "<root>".into() } else { key },
                problem: clean_problem(&err.inner().to_string()),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| {
            Err(ConfigError::Invalid {
                key: key.into(),
                problem,
            })
        };
        match url::Url::parse(self.broker.url.expose()) {
            Ok(url) if matches!(url.scheme(), "amqp" | "amqps") => {}
            Ok(url) => {
                return invalid(
                    "broker.url",
                    format!("scheme must be amqp or amqps, not `{}`", url.scheme()),
                )
            }
            Err(err) => return invalid("broker.url", format!("not a URL: {err}")),
        }
        let prefix = &self.broker.prefix;
        if prefix.is_empty()
            || prefix.len() > 100
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return invalid(
                "broker.prefix",
                format!("`{prefix}` must be 1-100 characters of letters, digits, '.', '-' or '_'"),
            );
        }
        if self.broker.delivery_limit == 0 {
            return invalid("broker.delivery_limit", "must be at least 1".into());
        }
        if self.broker.connect_timeout_secs == 0 {
            return invalid("broker.connect_timeout_secs", "must be at least 1".into());
        }
        if self.broker.reconnect_max_delay_secs == 0 {
            return invalid(
                "broker.reconnect_max_delay_secs",
                "must be at least 1".into(),
            );
        }
        if self.database.pool_max_size == 0 {
            return invalid("database.pool_max_size", "must be at least 1".into());
        }
        for (key, value) in [
            ("database.wait_timeout_ms", self.database.wait_timeout_ms),
            (
                "database.create_timeout_ms",
                self.database.create_timeout_ms,
            ),
            (
                "database.recycle_timeout_ms",
                self.database.recycle_timeout_ms,
            ),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1".into());
            }
        }
        if self.database.host.is_empty() {
            return invalid("database.host", "must not be empty".into());
        }
        if self.database.dbname.is_empty() {
            return invalid("database.dbname", "must not be empty".into());
        }
        if self.wallet.password.is_some() && self.wallet.password_file.is_some() {
            return invalid(
                "wallet.password_file",
                "set either wallet.password (or SPLATFLEET__WALLET__PASSWORD) or \
                 wallet.password_file, not both"
                    .into(),
            );
        }
        let inline = crate::discovery::static_list::StaticValidatorList {
            validators: self.discovery.validators.clone(),
        };
        if let Err(err) = inline.validate() {
            return invalid("discovery.validators", err.to_string());
        }
        if self.discovery.min_stake.is_nan() || self.discovery.min_stake < 0.0 {
            return invalid("discovery.min_stake", "must be a number at least 0".into());
        }
        if self
            .dendrite
            .external_ip
            .parse::<std::net::IpAddr>()
            .is_err()
        {
            return invalid(
                "dendrite.external_ip",
                format!("`{}` is not an IP address", self.dendrite.external_ip),
            );
        }
        if self.dendrite.max_response_bytes == 0 {
            return invalid("dendrite.max_response_bytes", "must be at least 1".into());
        }
        if self.dendrite.connect_timeout_secs == 0 {
            return invalid("dendrite.connect_timeout_secs", "must be at least 1".into());
        }
        self.puller.validate()?;
        self.worker.validate()?;
        self.submitter.validate()?;
        self.object_store.validate()?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return invalid(
                "log.level",
                format!(
                    "`{}` is not a tracing filter (try info or debug)",
                    self.log.level
                ),
            );
        }
        Ok(())
    }
}

/// serde's messages mention Rust types; keep the part an operator needs.
/// The `config` crate appends its own " for key `...`"; the key is already ours to name.
/// Deserializes the file, with the environment's overrides laid over it, straight from TOML
/// values, which convert nothing: the layered `config` crate below would round `2.5` into an
/// integer key and read `true` or `"yes"` as 1, so a wrong type would pass unnoticed. An
/// override is taken as the TOML value it spells (`5`, `2.5`, `true`) and, when its key wants
/// text (a password of digits), as the string itself.
fn check_types_strictly(
    file: toml::Table,
    overrides: &config::Map<String, String>,
) -> Result<(), ConfigError> {
    // (path in the config, the override's value)
    let overrides: Vec<(Vec<String>, &String)> = overrides
        .iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(ENV_PREFIX)?.strip_prefix("__")?;
            let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            Some((path, value))
        })
        .collect();
    let mut as_text = vec![false; overrides.len()];
    loop {
        let mut merged = file.clone();
        for ((path, value), text) in overrides.iter().zip(&as_text) {
            let typed = if *text {
                toml::Value::String((*value).clone())
            } else {
                format!("v = {value}")
                    .parse::<toml::Table>()
                    .ok()
                    .and_then(|mut t| t.remove("v"))
                    .unwrap_or_else(|| toml::Value::String((*value).clone()))
            };
            insert_at(&mut merged, path, typed);
        }
        let Err(err) = serde_path_to_error::deserialize::<_, Config>(toml::Value::Table(merged))
        else {
            return Ok(());
        };
        let key = err.path().to_string();
        let retry = overrides
            .iter()
            .zip(as_text.iter_mut())
            .find(|((path, _), text)| !**text && path.join(".") == key);
        match retry {
            Some((_, text)) => *text = true,
            None => {
                return Err(ConfigError::Invalid {
                    key: if key == "." { "<root>".into() } else { key },
                    problem: clean_problem(&err.inner().to_string()),
                })
            }
        }
    }
}

/// Sets `table[path[0]][path[1]]… = value`, creating tables on the way (a non-table in the way
/// is replaced, as the override replaces it).
fn insert_at(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = table;
    for name in parents {
        let entry = current
            .entry(name.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        current = next;
    }
    current.insert(last.clone(), value);
}

fn clean_problem(message: &str) -> String {
    let message = message.split(" for key `").next().unwrap_or(message);
    message.replace("invalid type: ", "wrong type: ")
}
