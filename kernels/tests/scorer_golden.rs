//! The CPU reference of the scorer against committed golden outputs: the tiny random-weight
//! models `splatfleet-sim models --tiny` writes (seed 1), loaded through `ModelsDir` as a
//! worker loads them, scoring 16 fixed procedural views. A change to any operation, to the
//! loader or to the tiny models moves these numbers; when the change is meant, regenerate
//! with `SPLATFLEET_UPDATE_GOLDEN=1 cargo test -p splatfleet-kernels --test scorer_golden`
//! and say why in the commit.

use std::path::PathBuf;

use serde_json::{json, Value};
use splatfleet_kernels::scorer::{cpu, ModelsDir, PartScores, ScoreImages, ValidatorScore};
use splatfleet_tests::sim::scorer_models::write_tiny_models;

const SIDE: u32 = 96;
const VIEWS: usize = 16;
/// Matrix products take FMA or plain kernels by CPU; everything else is deterministic.
const TOLERANCE: f64 = 2e-5;

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/scorer_tiny.json")
}

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

fn numbers(v: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if let Some(map) = v.as_object() {
        for (key, value) in map {
            match value {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        out.push((format!("{key}[{i}]"), item.as_f64().unwrap_or(f64::NAN)));
                    }
                }
                other => out.push((key.clone(), other.as_f64().unwrap_or(f64::NAN))),
            }
        }
    }
    out
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
    let path = golden_path();
    if std::env::var_os("SPLATFLEET_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("golden dir")).expect("golden dir");
        let text = serde_json::to_string_pretty(&got).expect("json");
        std::fs::write(&path, text + "\n").expect("write the golden file");
        eprintln!("wrote {}", path.display());
        return;
    }
    let text = std::fs::read_to_string(&path).expect("the golden file is committed");
    let want: Value = serde_json::from_str(&text).expect("the golden file is JSON");
    let (got, want) = (numbers(&got), numbers(&want));
    assert_eq!(
        got.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        want.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        "the golden file lists other numbers"
    );
    let worst = got
        .iter()
        .zip(&want)
        .map(|((key, g), (_, w))| (key, g, w, (g - w).abs()))
        .max_by(|a, b| a.3.total_cmp(&b.3))
        .expect("numbers");
    assert!(
        worst.3 <= TOLERANCE,
        "{} is {} against the golden {} (|diff| {:.2e} > {TOLERANCE:e})",
        worst.0,
        worst.1,
        worst.2,
        worst.3
    );
    // The numbers are the service's kind of numbers, not a degenerate run.
    assert!(score.score.is_finite() && score.score > 0.0);
    assert!(parts.view_quality.iter().all(|q| (0.0..=1.0).contains(q)));
}
