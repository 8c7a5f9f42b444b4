//! Tiny random-weight prompt-alignment models in the upstream formats, names and folders,
//! beside the quality models of [`super::scorer_models`] (`splatfleet-sim models --tiny`):
//!
//! - `CLIP-convnext_large_d.laion2B-s26B-b102K-augreg/open_clip_model.safetensors`: open_clip's
//!   `convnext_large_d` state dict at reduced width (ConvNeXt dims 8/16/24/32, one block a
//!   stage, embed 16; text width 64 in one head of the real head width, one layer, the real
//!   context of 77), and `bpe_simple_vocab_16e6.txt.gz`, a vocabulary of six merges (plain
//!   text: the loader reads gzip or plain), so the vocabulary is 512 + 6 + 2 ids.
//! - `LLM2CLIP-Openai-L-14-336/config.json` + `model.safetensors` (fp16): a CLIP vision tower
//!   of width 32, two layers, patch 14 at 28 pixels, projection 16.
//!
//! Random towers embed every input nearly alike, in directions unrelated between the two
//! towers of a task, so their cosines would sit anywhere in [−1, 1]. The writers lean both
//! towers of a task towards one shared output axis (a positive final LayerNorm bias feeding a
//! positive projection column), so a tiny model's alignment is well above the validator's
//! 0.3 cut-off and a demo's models are judged mostly on their quality, as real ones mostly
//! are. Names and shapes come from the loaders' own lists.

use std::{io, path::Path};

use splatfleet_kernels::scorer::{
    convnext_clip::{
        files::{self as clip_files, CLIP_SAFETENSORS, CLIP_VOCAB, TEXT_HEAD_WIDTH},
        ClipConfig,
    },
    files::layout::TensorSpec,
    llm2clip::{
        files::{self as l2c_files, Activation, LLM2CLIP_DIR},
        VisionConfig,
    },
};

use super::{
    models::SimRng,
    scorer_models::{write_safetensors_file, NamedTensor, StorageKind},
};

/// Six merges: `red`, `chair` and a few pieces, enough for tokens longer than a byte.
pub const TINY_MERGES: &str = "#version: 0.2\nr e\nc h\nch a\ni r</w>\ncha ir</w>\nre d</w>";

/// The tiny text-task model's dimensions (the vocabulary matches [`TINY_MERGES`]).
pub fn tiny_clip_config() -> ClipConfig {
    ClipConfig {
        stem_patch: 4,
        kernel: 7,
        dims: vec![8, 16, 24, 32],
        depths: vec![1, 1, 1, 1],
        mlp_hidden: vec![32, 64, 96, 128],
        downsample: 2,
        head_hidden: 32,
        head_fc2_bias: false,
        embed: 16,
        text_width: TEXT_HEAD_WIDTH,
        text_layers: 1,
        text_heads: 1,
        text_mlp: 4 * TEXT_HEAD_WIDTH,
        context: 77,
        vocab: 512 + 6 + 2,
    }
}

/// The tiny image-task model's dimensions.
pub fn tiny_llm2clip_config() -> VisionConfig {
    VisionConfig {
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 64,
        patch_size: 14,
        image_size: 28,
        layer_norm_eps: 1e-5,
        activation: Activation::QuickGelu,
        projection_dim: 16,
    }
}

/// How strongly both towers lean towards the shared axis (see the module doc).
const LEAN: f32 = 0.6;

fn random_tensor(rng: &mut SimRng, name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let fan_in = shape.iter().skip(1).product::<usize>().max(1) as f64;
    let (mean, sd) = if name.ends_with("gamma") {
        (0.5, 0.1)
    } else if shape.len() == 1 && name.ends_with("weight") {
        // LayerNorm weights.
        (1.0, 0.05)
    } else if name.ends_with("bias") {
        (0.0, 0.02)
    } else if name.contains("embedding") && shape.len() < 4 {
        (0.0, 0.5)
    } else {
        (0.0, 1.0 / fan_in.sqrt())
    };
    (0..n).map(|_| (mean + sd * rng.normal()) as f32).collect()
}

/// Random values for every spec, in order, from one seeded stream.
fn random_tensors(specs: Vec<TensorSpec>, seed: u64) -> Vec<NamedTensor> {
    let mut rng = SimRng::new(seed);
    specs
        .into_iter()
        .map(|spec| NamedTensor {
            data: random_tensor(&mut rng, &spec.name, &spec.shape),
            name: spec.name,
            shape: spec.shape,
        })
        .collect()
}

/// Leans a tower's output towards axis 0: its last LayerNorm's bias to +1, then a positive
/// first row (`[out, in]` weights) or column (`[in, out]`, `transposed`) of its projection.
fn lean(tensors: &mut [NamedTensor], norm_bias: &str, projection: &str, transposed: bool) {
    for t in tensors.iter_mut() {
        if t.name == norm_bias {
            t.data.iter_mut().for_each(|v| *v = 1.0);
        } else if t.name == projection {
            let (rows, cols) = (t.shape[0], t.shape[1]);
            if transposed {
                (0..rows).for_each(|r| t.data[r * cols] = LEAN);
            } else {
                t.data[..cols].iter_mut().for_each(|v| *v = LEAN);
            }
        }
    }
}

/// The tiny text-task model's tensors, every name the loader reads (and `logit_scale`).
pub fn tiny_clip_tensors(seed: u64) -> Vec<NamedTensor> {
    let mut tensors = random_tensors(clip_files::write_order(&tiny_clip_config()), seed);
    lean(
        &mut tensors,
        "visual.trunk.head.norm.bias",
        "visual.head.mlp.fc2.weight",
        false,
    );
    lean(&mut tensors, "ln_final.bias", "text_projection", true);
    tensors
}

/// The tiny image-task model's tensors.
pub fn tiny_llm2clip_tensors(seed: u64) -> Vec<NamedTensor> {
    let mut tensors = random_tensors(l2c_files::tensor_specs(&tiny_llm2clip_config()), seed);
    lean(
        &mut tensors,
        "vision_model.post_layernorm.bias",
        "visual_projection.weight",
        false,
    );
    tensors
}

/// Writes the text-task model `tensors` (or [`tiny_clip_tensors`]) and the vocabulary
/// under `models_dir`.
pub fn write_clip(models_dir: &Path, tensors: &[NamedTensor]) -> io::Result<()> {
    let weights = models_dir.join(CLIP_SAFETENSORS);
    if let Some(dir) = weights.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_safetensors_file(&weights, tensors, StorageKind::Float)?;
    std::fs::write(models_dir.join(CLIP_VOCAB), TINY_MERGES)
}

/// Writes the image-task model folder under `models_dir`: `config.json` for `config` and
/// `tensors` in fp16, in one file or in `shards` files with HF's index.
pub fn write_llm2clip(
    models_dir: &Path,
    config: &VisionConfig,
    tensors: &[NamedTensor],
    shards: usize,
) -> io::Result<()> {
    let dir = models_dir.join(LLM2CLIP_DIR);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join(l2c_files::CONFIG_FILE),
        l2c_files::config_json(config),
    )?;
    if shards <= 1 {
        return write_safetensors_file(
            &dir.join(l2c_files::WEIGHTS_FILE),
            tensors,
            StorageKind::Half,
        );
    }
    let per = tensors.len().div_ceil(shards);
    let mut weight_map = serde_json::Map::new();
    for (k, chunk) in tensors.chunks(per).enumerate() {
        let name = format!("model-{:05}-of-{:05}.safetensors", k + 1, shards);
        write_safetensors_file(&dir.join(&name), chunk, StorageKind::Half)?;
        for t in chunk {
            weight_map.insert(t.name.clone(), serde_json::Value::String(name.clone()));
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join(l2c_files::WEIGHTS_INDEX_FILE), index.to_string())
}

/// Both alignment models under `models_dir`.
pub fn write_tiny_alignment_models(models_dir: &Path, seed: u64) -> io::Result<()> {
    write_clip(models_dir, &tiny_clip_tensors(seed))?;
    let image = tiny_llm2clip_tensors(seed.wrapping_add(1));
    write_llm2clip(models_dir, &tiny_llm2clip_config(), &image, 1)
}
