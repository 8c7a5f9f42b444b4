//! The text-alignment model's CPU reference against committed golden outputs: a tiny
//! random-weight `convnext_large_d` (the real tensor names in the real file format,
//! `open_clip_model.safetensors` under the hf-hub folder name, written by the simulator's
//! `alignment_models`, as `splatfleet-sim models --tiny` writes it), a tiny vocabulary, four
//! procedural views. A change to an operation, to the loader or to that writer moves these
//! numbers; when meant, regenerate with
//! `SPLATFLEET_UPDATE_GOLDEN=1 cargo test -p splatfleet-kernels --test clip_text_golden`
//! and say why in the commit. Also: a missing or misshaped tensor is a typed error naming
//! the file, the tensor and the shape; awkward prompts always give a result.

use std::path::Path;

use serde_json::json;

#[path = "support/golden.rs"]
mod golden;
use splatfleet_kernels::scorer::{
    convnext_clip::{
        files::{self, CLIP_SAFETENSORS, TEXT_HEAD_WIDTH},
        ClipTokenizer, ConvnextClip,
    },
    ModelFileError, ModelsDir, ScoreImages,
};
use splatfleet_tests::sim::alignment_models::{
    tiny_clip_config, tiny_clip_tensors, write_clip, TINY_MERGES,
};

/// Floats of matrix products differ by CPU kernel (FMA or not); everything else is fixed.
const TOLERANCE: f64 = 2e-5;

/// The simulator's tiny model (`splatfleet-sim models --tiny`), with `drop` left out and
/// `reshape` one row short.
fn tiny_models_dir(dir: &Path, drop: Option<&str>, reshape: Option<&str>) -> ModelsDir {
    let mut tensors = tiny_clip_tensors(1);
    if let Some(name) = drop {
        tensors.retain(|t| t.name != name);
    }
    if let Some(t) = reshape.and_then(|name| tensors.iter_mut().find(|t| t.name == name)) {
        t.shape[0] -= 1;
        t.data.truncate(t.shape.iter().product());
    }
    write_clip(dir, &tensors).expect("write the tiny model");
    ModelsDir::new(dir.to_path_buf())
}

fn load_tiny(dir: &Path) -> ConvnextClip {
    let models = tiny_models_dir(dir, None, None);
    // One head of the real head width in the tiny text tower (the real one: 12).
    let model = files::load(&models).expect("the tiny model loads");
    assert_eq!(model.config, tiny_clip_config());
    assert_eq!(TEXT_HEAD_WIDTH, 64);
    model
}

/// Four object-like views: a shaded ellipse on white, turning with the view.
fn views() -> ScoreImages {
    let (views, w, h) = (4usize, 64usize, 48usize);
    let mut rgb8 = Vec::with_capacity(views * w * h * 3);
    for v in 0..views {
        let a = v as f64 / views as f64 * std::f64::consts::TAU;
        for y in 0..h {
            for x in 0..w {
                let u = (x as f64 + 0.5) / w as f64 - 0.5;
                let t = (y as f64 + 0.5) / h as f64 - 0.5;
                let r2 = (u / (0.25 + 0.1 * a.cos().abs())).powi(2) + (t / 0.35).powi(2);
                let px = if r2 <= 1.0 {
                    let s = 1.0 - 0.5 * r2;
                    [200.0 * s, (120.0 + 80.0 * a.sin()) * s, 90.0 * s]
                } else {
                    [255.0; 3]
                };
                rgb8.extend(px.map(|c: f64| c as u8));
            }
        }
    }
    ScoreImages {
        views,
        width: w as u32,
        height: h as u32,
        rgb8,
    }
}

#[test]
fn tiny_model_matches_the_golden_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = load_tiny(dir.path());
    let tokenizer = ClipTokenizer::from_merges_text(TINY_MERGES, 77).expect("tiny vocabulary");
    let images = views();
    let image_embeddings = model.encode_images(&images).expect("images encode");
    let ids = tokenizer.tokenize("a red chair").expect("tokenizes");
    let text_embedding = model.encode_text(&ids).expect("text encodes");
    let alignment = model
        .text_alignment(&images, &tokenizer, "a red chair")
        .expect("alignment");
    let got = json!({
        "image_embeddings": image_embeddings,
        "text_embedding": text_embedding,
        "cosines": alignment.cosines,
        "alignment_score": alignment.alignment_score,
    });
    if !golden::check(&golden::path("clip_text_tiny.json"), &got, TOLERANCE) {
        return;
    }
    assert!(alignment
        .cosines
        .iter()
        .all(|c| c.is_finite() && c.abs() <= 1.0 + 1e-9));
}

#[test]
fn a_missing_or_misshaped_tensor_is_a_typed_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = "transformer.resblocks.0.attn.out_proj.weight";
    let models = tiny_models_dir(dir.path(), Some(name), None);
    let err = files::load(&models).expect_err("a tensor is missing");
    match &err {
        ModelFileError::MissingTensor {
            file,
            name: n,
            expected,
        } => {
            assert_eq!((file.as_str(), n.as_str()), (CLIP_SAFETENSORS, name));
            assert_eq!(&**expected, &[64, 64]);
        }
        other => panic!("expected MissingTensor, got {other}"),
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let name = "visual.trunk.stages.2.blocks.0.mlp.fc2.weight";
    let models = tiny_models_dir(dir.path(), None, Some(name));
    let err = files::load(&models).expect_err("a tensor is misshaped");
    assert!(
        matches!(&err, ModelFileError::WrongShape { name: n, expected, .. }
            if n == name && **expected == [24, 96]),
        "{err}"
    );
    // No weights at all: the hf-hub file name and its download command.
    let empty = tempfile::tempdir().expect("tempdir");
    let err = files::load(&ModelsDir::new(empty.path().to_path_buf())).expect_err("no file");
    assert!(
        err.to_string().contains("open_clip_model.safetensors"),
        "{err}"
    );
}

#[test]
fn awkward_prompts_give_a_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = load_tiny(dir.path());
    let tokenizer = ClipTokenizer::from_merges_text(TINY_MERGES, 77).expect("tiny vocabulary");
    let images = views();
    let long = "a red chair ".repeat(834);
    for prompt in ["", long.as_str(), "🪑🔥 chaise à café &amp; \u{1}\u{7f}"] {
        let a = model
            .text_alignment(&images, &tokenizer, prompt)
            .expect("an alignment");
        assert_eq!(a.cosines.len(), 4);
        assert!(a.cosines.iter().all(|c| c.is_finite()), "{prompt:?}");
    }
    // A tokenizer whose context the model does not have is a typed error, not a panic.
    let short = ClipTokenizer::from_merges_text(TINY_MERGES, 16).expect("tiny vocabulary");
    assert!(model.text_alignment(&images, &short, "red").is_err());
}
