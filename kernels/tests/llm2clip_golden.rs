//! The image task's alignment (LLM2CLIP vision tower, CPU reference) against committed golden
//! outputs: a tiny random-weight model with the real tensor names, written by the simulator's
//! `alignment_models` (as `splatfleet-sim models --tiny` writes it) in the real safetensors
//! format (F16 elements, as the service loads them) with its `config.json`,
//! loaded through `llm2clip::files::load` as a worker loads it, scoring 16 procedural views
//! against an RGBA PNG prompt given as base64. When a change is meant to move the numbers,
//! regenerate with `SPLATFLEET_UPDATE_GOLDEN=1 cargo test -p splatfleet-kernels --test
//! llm2clip_golden` and say why in the commit.

use std::path::Path;

use serde_json::json;

#[path = "support/golden.rs"]
mod golden;
use splatfleet_kernels::scorer::{
    files::ModelFileError,
    llm2clip::{
        self,
        files::{self, LLM2CLIP_DIR},
        ImageAlignment, PromptImage,
    },
    ScoreImages,
};
use splatfleet_tests::sim::alignment_models::{
    tiny_llm2clip_config, tiny_llm2clip_tensors, write_llm2clip,
};

const SIDE: u32 = 40;
const VIEWS: usize = 16;
/// Matrix products take FMA or plain kernels by CPU; everything else is deterministic.
const TOLERANCE: f64 = 2e-5;

/// Writes the simulator's tiny model (`splatfleet-sim models --tiny`) under `models_dir`;
/// `shards` > 1 splits it with an index.
fn write_tiny_model(models_dir: &Path, shards: usize) {
    let tensors = tiny_llm2clip_tensors(7);
    write_llm2clip(models_dir, &tiny_llm2clip_config(), &tensors, shards).expect("write");
}

/// Shaded ellipses on white that turn with the view (as `scorer_golden.rs` draws them).
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
                    [
                        200.0 * shade,
                        (120.0 + 80.0 * angle.sin()) * shade,
                        90.0 * shade,
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

/// A 50×30 RGBA PNG (a half-transparent disc on a transparent field), as base64 text with
/// line breaks (pybase64 skips them).
fn prompt_base64() -> String {
    let (w, h) = (50u32, 30u32);
    let mut rgba = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let (u, v) = (f64::from(x) / 50.0 - 0.5, f64::from(y) / 30.0 - 0.5);
            let inside = u * u + v * v < 0.12;
            let a = if inside { 255 - (x * 3) as u8 } else { 0 };
            rgba.extend([180, (x * 5) as u8, (y * 8) as u8, a]);
        }
    }
    let mut png_bytes = Vec::new();
    {
        let mut e = png::Encoder::new(&mut png_bytes, w, h);
        e.set_color(png::ColorType::Rgba);
        let mut wr = e.write_header().expect("header");
        wr.write_image_data(&rgba).expect("data");
    }
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for (i, c) in png_bytes.chunks(3).enumerate() {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            s.push(if k <= c.len() {
                A[((n >> (18 - 6 * k)) & 63) as usize] as char
            } else {
                '='
            });
        }
        if i % 19 == 18 {
            s.push('\n');
        }
    }
    s
}

fn score(models_dir: &Path) -> llm2clip::ImageAlignmentScore {
    let model = files::load(models_dir).expect("the tiny model loads");
    assert_eq!(model.config, tiny_llm2clip_config());
    let prompt = PromptImage::from_base64(&prompt_base64()).expect("the prompt decodes");
    llm2clip::score_image_alignment(&model, &prompt, &views()).expect("scores")
}

#[test]
fn tiny_model_matches_the_golden_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_tiny_model(dir.path(), 1);
    let s = score(dir.path());
    let ImageAlignment::Measured(alignment) = s.alignment else {
        panic!("the tiny model's cosines are positive: {:?}", s.cosines);
    };
    let got = json!({
        "cosines": s.cosines,
        "kept": s.kept,
        "alignment": alignment,
        "prompt_embedding": s.prompt_embedding,
        "view0_embedding": s.view_embeddings[0],
    });
    golden::check(&golden::path("llm2clip_tiny.json"), &got, TOLERANCE);
}

#[test]
fn sharded_weights_load_through_the_index_and_score_the_same() {
    let one = tempfile::tempdir().expect("tempdir");
    write_tiny_model(one.path(), 1);
    let three = tempfile::tempdir().expect("tempdir");
    write_tiny_model(three.path(), 3);
    assert_eq!(score(one.path()).cosines, score(three.path()).cosines);
}

#[test]
fn a_missing_tensor_names_the_file_the_tensor_and_the_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = tiny_llm2clip_config();
    let model_dir = dir.path().join(LLM2CLIP_DIR);
    let missing = "vision_model.encoder.layers.1.mlp.fc2.bias";
    let mut tensors = tiny_llm2clip_tensors(2);
    tensors.retain(|t| t.name != missing);
    write_llm2clip(dir.path(), &c, &tensors, 1).expect("weights");
    match files::load(dir.path()) {
        Err(ModelFileError::MissingTensor {
            file,
            name,
            expected,
        }) => {
            assert_eq!(file, format!("{LLM2CLIP_DIR}/model.safetensors"));
            assert_eq!(name, missing);
            assert_eq!(&*expected, &[32]);
        }
        other => panic!("expected a missing tensor, got {other:?}"),
    }
    // A config that disagrees with the shapes is named too.
    let mut wrong = c;
    wrong.intermediate_size = 96;
    std::fs::write(
        model_dir.join(files::CONFIG_FILE),
        files::config_json(&wrong),
    )
    .expect("config");
    assert!(matches!(
        files::check(dir.path()),
        Err(ModelFileError::BadConfig { ref key, .. }) if key == "vision_config.intermediate_size"
    ));
    // No folder at all: the download command.
    let empty = tempfile::tempdir().expect("tempdir");
    match files::check(empty.path()) {
        Err(ModelFileError::MissingFile { download, .. }) => {
            assert!(download.contains("microsoft/LLM2CLIP-Openai-L-14-336"))
        }
        other => panic!("expected a missing file, got {other:?}"),
    }
}
