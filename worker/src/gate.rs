//! The fidelity gate, tier 1 (ARCHITECTURE.md, the gate). The validator's hard-zero rules and SN17's strict
//! PLY rules always fail an attempt first, whatever its score. Then, by `gate_mode`:
//! - `validator`: render the model with `kernels`, compute the validator's own score on the
//!   renders ([`Scorer`]: DINOv2 quality head, SSIM and LPIPS between adjacent views, the
//!   task's prompt alignment, the service's aggregation) and pass when it reaches
//!   `threshold + margin`;
//! - `geometry`: render and score the measurements into a local score with the configured
//!   weights;
//! - `validity_only` (benchmarks and diagnostics): only the rules run.

use std::{
    collections::BTreeMap,
    fmt,
    time::{Duration, Instant},
};

use crate::models::ValidatorModels;
use splatfleet_common::{
    config::{GateMode, ScorerSettings, WorkerSettings},
    splat::{HardZero, PlyDecoded, Sn17PlyReport, Sn17Problem, SpzDecoded},
};
use splatfleet_kernels::{
    scorer::{aggregate::VALIDATOR_THRESHOLD, Alignment, Prompt, Scorer, ValidatorScore},
    Backend, KernelError, Metrics, OrbitSpec, Renderer, Rig, Views,
};

/// One reason the gate failed a model. Typed, so reports can group failures by
/// [`GateReason::category`] without parsing messages.
#[derive(Debug, Clone, PartialEq)]
pub enum GateReason {
    /// The validator would score it zero before rendering.
    HardZero(HardZero),
    /// SN17's own PLY parser (the miner's PLY→SPZ step) would refuse the file.
    Sn17Parser(Sn17Problem),
    /// The renderer refused the model (normalisation or GPU error).
    RenderFailed(String),
    /// Rendered, but the local score is under the pass threshold.
    LowScore { score: f64, threshold: f64 },
    /// `validator` mode: the predicted validator score is under threshold + margin (a NaN
    /// score, which the validator would not accept either, is under everything).
    PredictedLow { score: f64, needed: f64 },
    /// `validator` mode, but the gate was built without the scorer's models.
    NoScorer,
    /// `validator` mode: the prompt alignment could not be measured (a prompt image that
    /// does not decode, a kept negative image cosine): the validator scores it 0 too.
    AlignmentUnmeasurable(String),
}

impl GateReason {
    /// A stable, machine-friendly name for grouping: `hard_zero:<rule>`, `sn17_parser`,
    /// `render_failed`, `low_score`, `predicted_low`, `no_scorer` or
    /// `alignment_unmeasurable`. These names appear in
    /// reports; do not rename them.
    pub fn category(&self) -> &'static str {
        match self {
            GateReason::HardZero(HardZero::TooFewGaussians { .. }) => "hard_zero:too_few_gaussians",
            GateReason::HardZero(HardZero::MostlyTransparent { .. }) => {
                "hard_zero:mostly_transparent"
            }
            GateReason::HardZero(HardZero::AllRotationsIdentity) => {
                "hard_zero:all_rotations_identity"
            }
            GateReason::HardZero(HardZero::PointAtOnes { .. }) => "hard_zero:point_at_ones",
            GateReason::Sn17Parser(_) => "sn17_parser",
            GateReason::RenderFailed(_) => "render_failed",
            GateReason::LowScore { .. } => "low_score",
            GateReason::PredictedLow { .. } => "predicted_low",
            GateReason::NoScorer => "no_scorer",
            GateReason::AlignmentUnmeasurable(_) => "alignment_unmeasurable",
        }
    }
}

impl fmt::Display for GateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateReason::HardZero(rule) => write!(f, "hard zero: {rule:?}"),
            GateReason::Sn17Parser(problem) => {
                write!(f, "SN17 PLY parser would refuse it: {problem:?}")
            }
            GateReason::RenderFailed(err) => write!(f, "render failed: {err}"),
            GateReason::LowScore { score, threshold } => {
                write!(
                    f,
                    "local score {score:.3} under the threshold {threshold:.3}"
                )
            }
            GateReason::PredictedLow { score, needed } => write!(
                f,
                "predicted validator score {score:.3} under {needed:.3} (threshold + margin)"
            ),
            GateReason::NoScorer => {
                f.write_str("gate_mode = \"validator\" but the gate has no scorer models loaded")
            }
            GateReason::AlignmentUnmeasurable(why) => {
                write!(
                    f,
                    "prompt alignment not measurable (the validator scores 0): {why}"
                )
            }
        }
    }
}

/// What the gate judges for a model that arrived as SPZ. SN17's PLY parser rules concern the
/// miner's PLY→SPZ step, which an SPZ has already been through, so no SN17 problem is
/// recorded; the statistics are computed from the decoded arrays.
pub fn gate_input_from_spz(spz: SpzDecoded) -> PlyDecoded {
    let report = spz.splat.validity();
    PlyDecoded {
        splat: spz.splat,
        report,
        sn17: Sn17PlyReport::default(),
        ignored_properties: Vec::new(),
    }
}

/// What the gate decided about one model.
#[derive(Debug, Clone)]
pub struct GateVerdict {
    pub passed: bool,
    /// 0..1 (`geometry`), the predicted validator score (`validator`, up to about 1.37;
    /// 0 when it is not a number); 0 for a hard-zero model.
    pub local_score: f32,
    /// Why it failed (empty when it passed), most fundamental first.
    pub reasons: Vec<GateReason>,
    /// Every measurement, for the attempt record.
    pub metrics: BTreeMap<String, f64>,
    /// The rendered views, for the preview (when the backend downloaded them).
    pub views: Option<Views>,
    /// How long each of the gate's steps took, in order ([`GateStep`]); empty when the
    /// model failed before a render.
    pub steps: Vec<(GateStep, Duration)>,
}

/// A timed step inside the gate, for the attempt record and the worker's stage histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateStep {
    /// The splat's host-to-device copy (GPU only, from CUDA events).
    Upload,
    /// Decode, project, sort, rasterise and measure the views (less the upload; with their
    /// download in `geometry` mode and for a scorer on the CPU).
    Render,
    /// The validator's quality parts (DINOv2 head, SSIM, LPIPS) of the render.
    Score,
    /// The task's prompt alignment on the render.
    Align,
    /// A passing model's views to the host, for its preview (GPU only).
    Download,
}

impl GateStep {
    /// The stage's name in `attempts.stage_ms` and `splatfleet_worker_stage_seconds`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Render => "render",
            Self::Score => "score",
            Self::Align => "align",
            Self::Download => "download",
        }
    }
}

impl GateVerdict {
    /// Every reason as one line of text, for attempt records and logs.
    pub fn reasons_text(&self) -> String {
        self.reasons
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Scoring weights and the pass threshold, from `[worker]`.
#[derive(Debug, Clone, Copy)]
pub struct GateScoring {
    pub coverage_weight: f64,
    pub ssim_weight: f64,
    pub floater_weight: f64,
    pub fill_weight: f64,
    pub coverage_target: f64,
    pub fill_target: f64,
    pub pass_threshold: f64,
}

impl GateScoring {
    pub fn from_settings(settings: &WorkerSettings) -> Self {
        Self {
            coverage_weight: settings.gate_coverage_weight,
            ssim_weight: settings.gate_ssim_weight,
            floater_weight: settings.gate_floater_weight,
            fill_weight: settings.gate_fill_weight,
            coverage_target: settings.gate_coverage_target,
            fill_target: settings.gate_fill_target,
            pass_threshold: settings.gate_pass_threshold,
        }
    }

    /// The weighted mean of the terms, in 0..1, for views of `width`×`height`.
    pub fn local_score(&self, metrics: &Metrics, width: u32, height: u32) -> f64 {
        let coverage = (f64::from(metrics.mean_coverage()) / self.coverage_target).clamp(0.0, 1.0);
        let ssim = f64::from(metrics.mean_adjacent_ssim()).clamp(0.0, 1.0);
        let solid = (1.0 - f64::from(metrics.floater_fraction)).clamp(0.0, 1.0);
        let fill = (f64::from(metrics.mean_fill(width, height)) / self.fill_target).clamp(0.0, 1.0);
        let total =
            self.coverage_weight + self.ssim_weight + self.floater_weight + self.fill_weight;
        if total <= 0.0 {
            return 0.0;
        }
        let score = (self.coverage_weight * coverage
            + self.ssim_weight * ssim
            + self.floater_weight * solid
            + self.fill_weight * fill)
            / total;
        if score.is_finite() {
            score
        } else {
            0.0
        }
    }
}

/// The alignment the score uses when a model is judged without a prompt (`splatfleet-worker
/// check` and `score` without `--prompt`/`--image`): as if perfectly aligned, and recorded
/// as `alignment_assumed = 1`. A task always has its prompt, so the fleet never assumes.
pub const UNMEASURED_ALIGNMENT: f64 = 1.0;

/// `validator` mode's pass rule, from `[worker.scorer]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValidatorPass {
    /// The validator's acceptance threshold (its own 0.6 unless the config lowers it).
    pub threshold: f64,
    pub margin: f64,
}

impl ValidatorPass {
    pub fn from_settings(settings: &ScorerSettings) -> Self {
        Self {
            threshold: settings.threshold_or(VALIDATOR_THRESHOLD),
            margin: settings.margin,
        }
    }

    /// The predicted score an attempt needs.
    pub fn needed(&self) -> f64 {
        self.threshold + self.margin
    }
}

/// Which mode judged an attempt, recorded in its gate metrics as `<key> = 1` (the submitter
/// fills `attempts.gate_mode` from it).
pub fn gate_mode_metric(mode: GateMode) -> &'static str {
    match mode {
        GateMode::Validator => "gate_mode_validator",
        GateMode::Geometry => "gate_mode_geometry",
        GateMode::ValidityOnly => "validity_only",
    }
}

/// Records a [`ValidatorScore`] in a gate's metrics map: the service's parts as
/// `predicted_*`, `alignment_assumed` (1/0), and each view's quality and each pair's SSIM and
/// LPIPS (`predicted_view_quality_<i>`, `predicted_pair_ssim_<i>`, `predicted_pair_lpips_<i>`,
/// pair `i` being views `(i, i + 1 mod n)`).
pub fn record_validator_score(metrics: &mut BTreeMap<String, f64>, score: &ValidatorScore) {
    metrics.insert("predicted_score".into(), score.score);
    metrics.insert("predicted_iqa".into(), score.iqa);
    metrics.insert("predicted_alignment".into(), score.alignment_score);
    metrics.insert("predicted_ssim".into(), score.ssim);
    metrics.insert("predicted_lpips".into(), score.lpips);
    metrics.insert(
        "alignment_assumed".into(),
        if score.alignment_assumed { 1.0 } else { 0.0 },
    );
    let parts = &score.parts;
    for (i, v) in parts.view_quality.iter().enumerate() {
        metrics.insert(format!("predicted_view_quality_{i:02}"), *v);
    }
    for (i, v) in parts.pair_ssim.iter().enumerate() {
        metrics.insert(format!("predicted_pair_ssim_{i:02}"), *v);
    }
    for (i, v) in parts.pair_lpips.iter().enumerate() {
        metrics.insert(format!("predicted_pair_lpips_{i:02}"), *v);
    }
}

/// Records an alignment's per-view cosines (`predicted_alignment_cosine_<i>`) and whether it
/// was measured (`alignment_unmeasurable` 1/0) in a gate's metrics map.
pub fn record_alignment(metrics: &mut BTreeMap<String, f64>, alignment: &Alignment) {
    for (i, c) in alignment.cosines.iter().enumerate() {
        metrics.insert(format!("predicted_alignment_cosine_{i:02}"), *c);
    }
    metrics.insert(
        "alignment_unmeasurable".into(),
        if alignment.problem.is_some() {
            1.0
        } else {
            0.0
        },
    );
}

/// The gate of one GPU: its renderer, rig and scoring, and in `validator` mode its scorer
/// (built once per worker process, on the renderer's device).
#[derive(Debug)]
pub struct Gate {
    renderer: Renderer,
    rig: Rig,
    scoring: GateScoring,
    mode: GateMode,
    scorer: Option<Scorer>,
    validator: ValidatorPass,
}

impl Gate {
    /// A gate rendering on GPU `gpu` (the CPU reference when there is none), without a
    /// scorer: for `geometry` and `validity_only` (in `validator` mode every model fails
    /// with [`GateReason::NoScorer`]; see [`Gate::start`]).
    pub fn new(gpu: usize, settings: &WorkerSettings) -> Self {
        Self::with_renderer(Renderer::new(gpu), settings)
    }

    /// The gate of a worker process on `renderer`, with a scorer on the renderer's device
    /// when `gate_mode = "validator"` and `models` are given.
    pub fn start(
        renderer: Renderer,
        settings: &WorkerSettings,
        models: Option<ValidatorModels>,
    ) -> Result<Self, KernelError> {
        match models {
            Some(models) if settings.gate_mode == GateMode::Validator => {
                Self::with_scorer(renderer, settings, models)
            }
            _ => Ok(Self::with_renderer(renderer, settings)),
        }
    }

    pub fn with_renderer(mut renderer: Renderer, settings: &WorkerSettings) -> Self {
        // The per-stage times of every attempt (a few CUDA events a render).
        renderer.time_stages();
        let size = settings.gate_render_size;
        Self {
            renderer,
            rig: Rig::orbit(&OrbitSpec::validator_sized(settings.gate_views, size, size)),
            scoring: GateScoring::from_settings(settings),
            mode: settings.gate_mode,
            scorer: None,
            validator: ValidatorPass::from_settings(&settings.scorer),
        }
    }

    /// A gate with the validator's scorer (on `renderer`'s device) for `gate_mode =
    /// "validator"`.
    pub fn with_scorer(
        renderer: Renderer,
        settings: &WorkerSettings,
        models: ValidatorModels,
    ) -> Result<Self, KernelError> {
        let scorer = Scorer::for_renderer(models.scoring, &renderer)?
            .with_alignment(&renderer, models.alignment)?;
        match scorer.alignment_memory() {
            Some(memory) => tracing::info!(
                weights_mib = memory.weights >> 20,
                work_mib = memory.work >> 20,
                "prompt-alignment towers on the GPU"
            ),
            None => tracing::info!("prompt alignment on the CPU reference"),
        }
        let mut gate = Self::with_renderer(renderer, settings);
        gate.scorer = Some(scorer);
        Ok(gate)
    }

    pub fn mode(&self) -> GateMode {
        self.mode
    }

    /// `validator` mode's pass rule.
    pub fn validator_pass(&self) -> ValidatorPass {
        self.validator
    }

    /// Which backend renders, for logs and metrics.
    pub fn backend_name(&self) -> &'static str {
        if self.renderer.is_gpu() {
            "cuda"
        } else {
            "cpu"
        }
    }

    /// The backend and, for the CPU, why the GPU is not used (for people reading stderr).
    pub fn backend_detail(&self) -> String {
        match self.renderer.backend() {
            Backend::Cuda(_) => "cuda".into(),
            Backend::Cpu { reason } => format!("cpu ({reason})"),
        }
    }

    /// Judges a parsed model for the task's `prompt` (blocking: run it off the async
    /// threads). Without a prompt (file checks), `validator` mode scores alignment as
    /// [`UNMEASURED_ALIGNMENT`] and records that it assumed it.
    pub fn evaluate(&mut self, decoded: &PlyDecoded, prompt: Option<Prompt>) -> GateVerdict {
        let mut reasons = Vec::new();
        let mut metrics = BTreeMap::new();
        metrics.insert(gate_mode_metric(self.mode).into(), 1.0);
        metrics.insert("gaussians".into(), decoded.report.count as f64);
        metrics.insert(
            "low_opacity_fraction".into(),
            decoded.report.low_opacity_fraction(),
        );
        for hard_zero in decoded.report.hard_zero() {
            reasons.push(GateReason::HardZero(hard_zero));
        }
        for problem in &decoded.sn17.problems {
            reasons.push(GateReason::Sn17Parser(problem.clone()));
        }
        if !reasons.is_empty() {
            return GateVerdict {
                passed: false,
                local_score: 0.0,
                reasons,
                metrics,
                views: None,
                steps: Vec::new(),
            };
        }
        match self.mode {
            GateMode::ValidityOnly => {
                // Nothing measured: the record says so, and the model passes at score 1 so
                // the ladder stops at the first valid attempt.
                GateVerdict {
                    passed: true,
                    local_score: 1.0,
                    reasons,
                    metrics,
                    views: None,
                    steps: Vec::new(),
                }
            }
            GateMode::Geometry => self.evaluate_geometry(decoded, metrics),
            GateMode::Validator => self.evaluate_validator(decoded, prompt, metrics),
        }
    }

    fn failed(metrics: BTreeMap<String, f64>, reason: GateReason) -> GateVerdict {
        GateVerdict {
            passed: false,
            local_score: 0.0,
            reasons: vec![reason],
            metrics,
            views: None,
            steps: Vec::new(),
        }
    }

    /// The geometry measurements of a render and their local score, into `metrics`.
    fn record_geometry(&self, measured: &Metrics, metrics: &mut BTreeMap<String, f64>) -> f64 {
        let (width, height) = (self.rig.width, self.rig.height);
        let score = self.scoring.local_score(measured, width, height);
        metrics.insert("mean_coverage".into(), f64::from(measured.mean_coverage()));
        metrics.insert(
            "mean_adjacent_ssim".into(),
            f64::from(measured.mean_adjacent_ssim()),
        );
        metrics.insert(
            "mean_fill".into(),
            f64::from(measured.mean_fill(width, height)),
        );
        metrics.insert(
            "mean_sharpness".into(),
            f64::from(measured.mean_sharpness()),
        );
        metrics.extend(measured.flatten());
        score
    }

    fn evaluate_geometry(
        &mut self,
        decoded: &PlyDecoded,
        mut metrics: BTreeMap<String, f64>,
    ) -> GateVerdict {
        let started = Instant::now();
        let rendered = self
            .renderer
            .render_and_measure(&decoded.splat, &self.rig, true);
        let steps = render_steps(&self.renderer, started.elapsed());
        let (views, measured) = match rendered {
            Ok(rendered) => rendered,
            Err(err) => return Self::failed(metrics, GateReason::RenderFailed(err.to_string())),
        };
        let score = self.record_geometry(&measured, &mut metrics);
        metrics.insert("local_score".into(), score);
        let passed = score >= self.scoring.pass_threshold;
        let mut reasons = Vec::new();
        if !passed {
            reasons.push(GateReason::LowScore {
                score,
                threshold: self.scoring.pass_threshold,
            });
        }
        GateVerdict {
            passed,
            local_score: score as f32,
            reasons,
            metrics,
            views,
            steps,
        }
    }

    fn evaluate_validator(
        &mut self,
        decoded: &PlyDecoded,
        prompt: Option<Prompt>,
        mut metrics: BTreeMap<String, f64>,
    ) -> GateVerdict {
        let Some(scorer) = self.scorer.as_mut() else {
            return Self::failed(metrics, GateReason::NoScorer);
        };
        // A scorer on the GPU reads the render in place; the views come to the host only for
        // a scorer on the CPU, or (below) for the preview of a model that passed.
        let started = Instant::now();
        let download = !self.renderer.scores_in_place(scorer);
        let rendered = self
            .renderer
            .render_and_measure(&decoded.splat, &self.rig, download);
        let mut steps = render_steps(&self.renderer, started.elapsed());
        let (views, measured) = match rendered {
            Ok(rendered) => rendered,
            Err(err) => return Self::failed(metrics, GateReason::RenderFailed(err.to_string())),
        };
        let started = Instant::now();
        let scored = self
            .renderer
            .score_last_render(&self.rig, views.as_ref(), scorer);
        steps.push((GateStep::Score, started.elapsed()));
        let parts = match scored {
            Ok(parts) => parts,
            Err(err) => return Self::failed(metrics, GateReason::RenderFailed(err.to_string())),
        };
        let started = Instant::now();
        let alignment = prompt.and_then(|prompt| {
            self.renderer
                .align_last_render(&self.rig, views.as_ref(), scorer, prompt)
        });
        if alignment.is_some() {
            steps.push((GateStep::Align, started.elapsed()));
        }
        // The geometry numbers stay in the record, for comparing the two modes.
        let geometry = self.record_geometry(&measured, &mut metrics);
        metrics.insert("geometry_score".into(), geometry);
        let pass = self.validator;
        let predicted = match &alignment {
            Some(alignment) => ValidatorScore::aggregate(parts, alignment.score, false),
            None => ValidatorScore::aggregate(parts, UNMEASURED_ALIGNMENT, true),
        };
        record_validator_score(&mut metrics, &predicted);
        if let Some(alignment) = &alignment {
            record_alignment(&mut metrics, alignment);
        }
        let needed = pass.needed();
        metrics.insert("predicted_needed".into(), needed);
        // A NaN score compares false: it fails, as it would at the validator.
        let passed = predicted.score >= needed;
        let mut reasons = Vec::new();
        if let Some(problem) = alignment.and_then(|a| a.problem) {
            reasons.push(GateReason::AlignmentUnmeasurable(problem));
        }
        if !passed {
            reasons.push(GateReason::PredictedLow {
                score: predicted.score,
                needed,
            });
        }
        let local_score = if predicted.score.is_finite() {
            predicted.score as f32
        } else {
            0.0
        };
        // Only a model that passed can be chosen and shown: its views for the contact sheet.
        let views = match views {
            None if passed => {
                let started = Instant::now();
                let downloaded = self.renderer.download_last_views(&self.rig);
                steps.push((GateStep::Download, started.elapsed()));
                downloaded.unwrap_or_else(|err| {
                    tracing::warn!(%err, "the passing model's views could not be downloaded; no preview");
                    None
                })
            }
            views => views,
        };
        GateVerdict {
            passed,
            local_score,
            reasons,
            metrics,
            views,
            steps,
        }
    }
}

/// The upload (when the GPU timed it) and the rest of a render that took `wall`.
fn render_steps(renderer: &Renderer, wall: Duration) -> Vec<(GateStep, Duration)> {
    match renderer.last_upload() {
        Some(upload) => vec![
            (GateStep::Upload, upload),
            (GateStep::Render, wall.saturating_sub(upload)),
        ],
        None => vec![(GateStep::Render, wall)],
    }
}
