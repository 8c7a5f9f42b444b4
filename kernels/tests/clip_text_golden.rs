//! The text-alignment model's CPU reference against committed golden outputs: a tiny
//! random-weight `convnext_large_d` (the real tensor names in the real file format,
//! `open_clip_model.safetensors` under the hf-hub folder name, written by the simulator's
//! `alignment_models`, as `splatfleet-sim models --tiny` writes it), a tiny vocabulary, four
//! procedural views. A change to an operation, to the loader or to that writer moves these
//! numbers; when meant, regenerate with
//! `SPLATFLEET_UPDATE_GOLDEN=1 cargo test -p splatfleet-kernels --test clip_text_golden`
//! and say why in the commit. Also: a missing or misshaped tensor is a typed error naming
//! the file, the tensor and the shape; awkward prompts always give a result.

use std::{path::Path, path::PathBuf};

use serde_json::{json, Value};
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

fn flatten(v: &Value, prefix: &str, out: &mut Vec<(String, f64)>) {
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(item, &format!("{prefix}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                flatten(item, &format!("{prefix}.{k}"), out);
            }
        }
        other => out.push((prefix.to_string(), other.as_f64().unwrap_or(f64::NAN))),
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
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/clip_text_tiny.json");
    if std::env::var_os("SPLATFLEET_UPDATE_GOLDEN").is_some() {
        let text = serde_json::to_string_pretty(&got).expect("json");
        std::fs::write(&path, text + "\n").expect("write the golden file");
        eprintln!("wrote {}", path.display());
        return;
    }
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).expect("the golden file is committed"),
    )
    .expect("the golden file is JSON");
    let (mut g, mut w) = (Vec::new(), Vec::new());
    flatten(&got, "", &mut g);
    flatten(&want, "", &mut w);
    assert_eq!(
        g.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        w.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        "the golden file lists other numbers"
    );
    for ((key, a), (_, b)) in g.iter().zip(&w) {
        assert!(
            (a - b).abs() <= TOLERANCE * (1.0 + b.abs()),
            "{key}: {a} against the golden {b}"
        );
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
