//! The fidelity gate, tier 1 (DESIGN.md §7): render the model with `kernels` and score the
//! measurements into a local score with the configured weights. The validator's hard-zero
//! rules and SN17's strict PLY rules always fail an attempt, whatever its score. In
//! `gate_mode = "validity_only"` (benchmarks and diagnostics) only those rules run.

use std::{collections::BTreeMap, fmt};

use splatfleet_common::{
    config::{GateMode, WorkerSettings},
    splat::{HardZero, PlyDecoded, Sn17PlyReport, Sn17Problem, SpzDecoded},
};
use splatfleet_kernels::{Backend, Metrics, OrbitSpec, Renderer, Rig, Views};

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
}

impl GateReason {
    /// A stable, machine-friendly name for grouping: `hard_zero:<rule>`, `sn17_parser`,
    /// `render_failed` or `low_score`. These names appear in reports; do not rename them.
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
    /// 0..1; 0 for a hard-zero model.
    pub local_score: f32,
    /// Why it failed (empty when it passed), most fundamental first.
    pub reasons: Vec<GateReason>,
    /// Every measurement, for the attempt record.
    pub metrics: BTreeMap<String, f64>,
    /// The rendered views, for the preview (when the backend downloaded them).
    pub views: Option<Views>,
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

/// The gate of one GPU: its renderer, rig and scoring.
#[derive(Debug)]
pub struct Gate {
    renderer: Renderer,
    rig: Rig,
    scoring: GateScoring,
    mode: GateMode,
}

impl Gate {
    /// A gate rendering on GPU `gpu` (the CPU reference when there is none).
    pub fn new(gpu: usize, settings: &WorkerSettings) -> Self {
        Self::with_renderer(Renderer::new(gpu), settings)
    }

    pub fn with_renderer(renderer: Renderer, settings: &WorkerSettings) -> Self {
        let size = settings.gate_render_size;
        Self {
            renderer,
            rig: Rig::orbit(&OrbitSpec::validator_sized(settings.gate_views, size, size)),
            scoring: GateScoring::from_settings(settings),
            mode: settings.gate_mode,
        }
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

    /// Judges a parsed model (blocking: run it off the async threads).
    pub fn evaluate(&mut self, decoded: &PlyDecoded) -> GateVerdict {
        let mut reasons = Vec::new();
        let mut metrics = BTreeMap::new();
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
            };
        }
        if self.mode == GateMode::ValidityOnly {
            // Nothing measured: the record says so, and the model passes at score 1 so the
            // ladder stops at the first valid attempt.
            metrics.insert("validity_only".into(), 1.0);
            return GateVerdict {
                passed: true,
                local_score: 1.0,
                reasons,
                metrics,
                views: None,
            };
        }
        let (views, measured) =
            match self
                .renderer
                .render_and_measure(&decoded.splat, &self.rig, true)
            {
                Ok(rendered) => rendered,
                Err(err) => {
                    return GateVerdict {
                        passed: false,
                        local_score: 0.0,
                        reasons: vec![GateReason::RenderFailed(err.to_string())],
                        metrics,
                        views: None,
                    }
                }
            };
        let score = self
            .scoring
            .local_score(&measured, self.rig.width, self.rig.height);
        metrics.insert("mean_coverage".into(), f64::from(measured.mean_coverage()));
        metrics.insert(
            "mean_adjacent_ssim".into(),
            f64::from(measured.mean_adjacent_ssim()),
        );
        metrics.insert(
            "mean_fill".into(),
            f64::from(measured.mean_fill(self.rig.width, self.rig.height)),
        );
        metrics.insert(
            "mean_sharpness".into(),
            f64::from(measured.mean_sharpness()),
        );
        metrics.extend(measured.flatten());
        metrics.insert("local_score".into(), score);
        let passed = score >= self.scoring.pass_threshold;
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
        }
    }
}
