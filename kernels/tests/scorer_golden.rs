//! The CPU reference of the scorer against committed golden outputs: the tiny random-weight
//! models `splatfleet-sim models --tiny` writes (seed 1), loaded through `ModelsDir` as a
//! worker loads them, scoring 16 fixed procedural views. A change to any operation, to the
//! loader or to the tiny models moves these numbers; when the change is meant, regenerate
//! with `SPLATFLEET_UPDATE_GOLDEN=1 cargo test -p splatfleet-kernels --test scorer_golden`
//! and say why in the commit.

use serde_json::{json, Value};

#[path = "support/golden.rs"]
mod golden;
use splatfleet_kernels::scorer::{cpu, ModelsDir, PartScores, ScoreImages, ValidatorScore};
use splatfleet_tests::sim::scorer_models::write_tiny_models;

const SIDE: u32 = 96;
const VIEWS: usize = 16;
/// Matrix products take FMA or plain kernels by CPU; everything else is deterministic.
const TOLERANCE: f64 = 2e-5;

/// An object-like view: a shaded ellipse on white whose shape and colour turn with the view,
/// with a thin stripe pattern so the views are not flat.
fn views() -> ScoreImages {
    let n = SIDE as usize;
    let mut rgb8 = Vec::with_capacity(VIEWS * n * n * 3);
    for v in 0..VIEWS {
        let angle = v as f64 / VIEWS as f64 * std::f64::consts::TAU;
        let (rx, ry) = (0.25 + 0.1 * angle.cos().abs(), 0.35);
        for y in 0..n {
            for x in 0..n {
                let u = (x as f64 + 0.5) / n as f64 - 0.5;
                let w = (y as f64 + 0.5) / n as f64 - 0.5;
                let r2 = (u / rx).powi(2) + (w / ry).powi(2);
                let pixel = if r2 <= 1.0 {
                    let shade = 1.0 - 0.5 * r2;
                    let stripe = if (x + y + v) % 7 < 2 { 0.8 } else { 1.0 };
                    [
                        200.0 * shade * stripe,
                        (120.0 + 80.0 * angle.sin()) * shade,
                        90.0 * shade * stripe,
                    ]
                } else {
                    [255.0, 255.0, 255.0]
                };
                rgb8.extend(pixel.map(|c: f64| c as u8));
            }
        }
    }
    ScoreImages {
        views: VIEWS,
        width: SIDE,
        height: SIDE,
        rgb8,
    }
}

fn as_json(parts: &PartScores, score: &ValidatorScore) -> Value {
    json!({
        "view_quality": parts.view_quality,
        "pair_ssim": parts.pair_ssim,
        "pair_lpips": parts.pair_lpips,
        "iqa": score.iqa,
        "ssim": score.ssim,
        "lpips": score.lpips,
        "score": score.score,
    })
}

#[test]
fn cpu_reference_matches_the_golden_outputs_of_the_tiny_models() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_tiny_models(dir.path(), 1).expect("write the tiny models");
    let models = ModelsDir::new(dir.path().to_path_buf())
        .load()
        .expect("the tiny models load");
    let images = views();
    let parts = cpu::try_score_parts(&models, &images).expect("the CPU reference scores");
    let score = ValidatorScore::aggregate(parts.clone(), 1.0, true);
    let got = as_json(&parts, &score);
    if !golden::check(&golden::path("scorer_tiny.json"), &got, TOLERANCE) {
        return;
    }
    // The numbers are the service's kind of numbers, not a degenerate run.
    assert!(score.score.is_finite() && score.score > 0.0);
    assert!(parts.view_quality.iter().all(|q| (0.0..=1.0).contains(q)));
}
