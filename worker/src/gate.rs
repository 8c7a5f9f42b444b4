//! The fidelity gate, tier 1 (DESIGN.md §7): render the model with `kernels` and score the
//! measurements into a local score with the configured weights. The validator's hard-zero
//! rules and SN17's strict PLY rules always fail an attempt, whatever its score.

use std::collections::BTreeMap;

use splatfleet_common::{config::WorkerSettings, splat::PlyDecoded};
use splatfleet_kernels::{Metrics, OrbitSpec, Renderer, Rig, Views};

/// What the gate decided about one model.
#[derive(Debug, Clone)]
pub struct GateVerdict {
    pub passed: bool,
    /// 0..1; 0 for a hard-zero model.
    pub local_score: f32,
    /// Why it failed (empty when it passed).
    pub reasons: Vec<String>,
    /// Every measurement, for the attempt record.
    pub metrics: BTreeMap<String, f64>,
    /// The rendered views, for the preview (when the backend downloaded them).
    pub views: Option<Views>,
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
            reasons.push(format!("hard zero: {hard_zero:?}"));
        }
        for problem in &decoded.sn17.problems {
            reasons.push(format!("SN17 PLY parser would refuse it: {problem:?}"));
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
                        reasons: vec![format!("render failed: {err}")],
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
            reasons.push(format!(
                "local score {score:.3} under the threshold {:.3}",
                self.scoring.pass_threshold
            ));
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
