//! `[worker]` and its `[worker.scorer]` sub-table: the generation service, slots, the retry
//! ladder and its time budget, the gate's mode, render size, weights and thresholds, the
//! validation service (tier 2), and the scorer's model files.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The worker's knobs (`[worker]`): its generation service, how many tasks at once, the
/// retry ladder and its time budget, and the fidelity gate's render size, weights and
/// threshold (ARCHITECTURE.md: the generation service, the gate).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Where `/metrics` is served; unset means `127.0.0.1:9472`.
    pub metrics_addr: Option<SocketAddr>,
    /// Generation service base URL per GPU: `--gpu N` uses entry N (`POST {url}/generate/`).
    pub generation_endpoints: Vec<String>,
    /// Refuse to start (exit 78) when `--gpu N` cannot be used and only the CPU reference
    /// renderer is left, instead of gating at CPU speed (too slow at 518 px: every task would
    /// time out). On by default; the demo and the tests, on machines without a GPU, set it off.
    pub require_gpu: bool,
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
    /// What the gate judges an attempt by (ARCHITECTURE.md, the gate): `validator` (the validator's own
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
    /// The fidelity gate's tier 2, the subnet's own validation service (ARCHITECTURE.md, the gate):
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
#[derive(Debug, Clone, Copy, Deserialize, Serialize, Default, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, Deserialize, Serialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ValidationUnavailable {
    /// Trust tier 1 and pass the attempt, with a warning, a metric and a record (fail open).
    Tier1,
    /// Fail the attempt (fail closed): an operator who runs tier 2 runs it to keep models
    /// under the threshold from being submitted, and an outage must not quietly stop that.
    #[default]
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
            require_gpu: true,
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
            validation_unavailable: ValidationUnavailable::Fail,
            scorer: ScorerSettings::default(),
        }
    }
}

impl WorkerSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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

/// `[worker.scorer]`: what `gate_mode = "validator"` reads (ARCHITECTURE.md, the gate). The validator's
/// own constants (its 0.6 threshold, the score's weights) live in
/// `splatfleet_kernels::scorer::aggregate`; `threshold` unset means that one.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScorerSettings {
    /// The directory holding the scorer's model files under their upstream names.
    pub models_dir: PathBuf,
    /// Pinned sha256 digests (hex) of model files, by file name relative to `models_dir`;
    /// a file that differs refuses the worker's start. Empty: nothing pinned.
    pub sha256: BTreeMap<String, String>,
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
