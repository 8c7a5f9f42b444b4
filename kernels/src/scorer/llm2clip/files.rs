//! The LLM2CLIP vision tower's files in the operator's `models_dir` and their typed weights:
//! `LLM2CLIP-Openai-L-14-336/config.json` and the safetensors weights, one
//! `model.safetensors` or shards listed by `model.safetensors.index.json` (HF's two layouts;
//! the index wins when both exist, as `from_pretrained` prefers it). Only the image side is
//! read (`vision_model.*`, `visual_projection.weight`); the text adapter's tensors are never
//! converted.
//!
//! Sizes come from the tensor shapes (width, patch, grid, layers, MLP, projection), so the
//! tiny CI models load through the same code; `config.json`'s `vision_config` gives what
//! shapes cannot (heads, activation, LayerNorm epsilon) with `CLIPVisionConfig`'s defaults
//! (transformers 4.44.2 `configuration_clip.py`: heads 12, `quick_gelu`, eps 1e-5) when a key
//! is absent, and every size key it does state must agree with the shapes. Elements may be
//! F32, F16 or BF16; they become `f32` here. Every problem is a [`ModelFileError`] naming
//! the file, the tensor and the expected shape; nothing read from a file can panic.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use crate::scorer::{
    files::{layout::TensorSpec, safetensors::SafetensorsFile, ModelFileError},
    model::{Conv2d, LayerNorm, Linear, Tensor},
};

/// The folder `huggingface-cli download microsoft/LLM2CLIP-Openai-L-14-336` fills.
pub const LLM2CLIP_DIR: &str = "LLM2CLIP-Openai-L-14-336";
/// The revision the validation service pins (`alignment_scorer.py:120-125`).
pub const LLM2CLIP_REVISION: &str = "92512331f393a003c3d98404677f991c188162c9";
/// `config.json` inside [`LLM2CLIP_DIR`].
pub const CONFIG_FILE: &str = "config.json";
/// The single-file weights inside [`LLM2CLIP_DIR`].
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The shard index inside [`LLM2CLIP_DIR`] (HF's sharded layout).
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";

/// The command that downloads the folder into `<models_dir>`.
pub fn download_command() -> String {
    format!(
        "huggingface-cli download microsoft/LLM2CLIP-Openai-L-14-336 --revision \
         {LLM2CLIP_REVISION} --local-dir <models_dir>/{LLM2CLIP_DIR}"
    )
}

/// `file` inside the folder, as errors name it (relative to the `models_dir`).
fn rel(file: &str) -> String {
    format!("{LLM2CLIP_DIR}/{file}")
}

/// The activation of the encoder MLP (`vision_config.hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x · sigmoid(1.702 x)` (transformers `QuickGELUActivation`; OpenAI CLIP's).
    QuickGelu,
    /// The exact erf GELU (`"gelu"`).
    Gelu,
}

/// The vision tower's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub patch_size: usize,
    /// The input side the position embeddings fit (`grid × patch`; 336 for the real model).
    pub image_size: usize,
    pub layer_norm_eps: f32,
    pub activation: Activation,
    /// `visual_projection`'s output width (the embedding the cosines compare).
    pub projection_dim: usize,
}

impl VisionConfig {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size.max(1)
    }
    /// Tokens per image: the class token and one per patch.
    pub fn tokens(&self) -> usize {
        1 + self.grid() * self.grid()
    }
}

/// One `CLIPEncoderLayer`: pre-norm attention and MLP with residuals.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipLayer {
    pub layer_norm1: LayerNorm,
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub layer_norm2: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
}

/// The image side of `LLM2CLIPModel`: `vision_model` (HF `CLIPVisionTransformer`) and
/// `visual_projection` (a bias-free Linear, hidden → projection).
#[derive(Debug, Clone, PartialEq)]
pub struct Llm2ClipVision {
    pub config: VisionConfig,
    /// `[hidden]`.
    pub class_embedding: Vec<f32>,
    /// Conv2d(3 → hidden, k = s = patch, no bias).
    pub patch_embedding: Conv2d,
    /// `[tokens, hidden]` row-major.
    pub position_embedding: Vec<f32>,
    /// `pre_layrnorm` (sic, HF's name).
    pub pre_layrnorm: LayerNorm,
    pub layers: Vec<ClipLayer>,
    pub post_layernorm: LayerNorm,
    pub visual_projection: Linear,
}

/// `vision_model.encoder.layers.{i}.`
pub fn layer_prefix(i: usize) -> String {
    format!("vision_model.encoder.layers.{i}.")
}

pub const CLASS_EMBEDDING: &str = "vision_model.embeddings.class_embedding";
pub const PATCH_EMBEDDING: &str = "vision_model.embeddings.patch_embedding.weight";
pub const POSITION_EMBEDDING: &str = "vision_model.embeddings.position_embedding.weight";
pub const PRE_LAYRNORM: &str = "vision_model.pre_layrnorm";
pub const POST_LAYERNORM: &str = "vision_model.post_layernorm";
pub const VISUAL_PROJECTION: &str = "visual_projection.weight";

/// Every tensor the image side reads, with its shape for `c`: the one list the loader checks
/// against and the tiny-model writers write from.
pub fn tensor_specs(c: &VisionConfig) -> Vec<TensorSpec> {
    let (h, m, p) = (c.hidden_size, c.intermediate_size, c.patch_size);
    let spec = |name: String, shape: Vec<usize>| TensorSpec {
        name,
        shape,
        required: true,
    };
    let mut out = vec![
        spec(CLASS_EMBEDDING.into(), vec![h]),
        spec(PATCH_EMBEDDING.into(), vec![h, 3, p, p]),
        spec(POSITION_EMBEDDING.into(), vec![c.tokens(), h]),
        spec(format!("{PRE_LAYRNORM}.weight"), vec![h]),
        spec(format!("{PRE_LAYRNORM}.bias"), vec![h]),
    ];
    for i in 0..c.num_hidden_layers {
        let l = layer_prefix(i);
        for norm in ["layer_norm1", "layer_norm2"] {
            out.push(spec(format!("{l}{norm}.weight"), vec![h]));
            out.push(spec(format!("{l}{norm}.bias"), vec![h]));
        }
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            out.push(spec(format!("{l}self_attn.{proj}.weight"), vec![h, h]));
            out.push(spec(format!("{l}self_attn.{proj}.bias"), vec![h]));
        }
        out.push(spec(format!("{l}mlp.fc1.weight"), vec![m, h]));
        out.push(spec(format!("{l}mlp.fc1.bias"), vec![m]));
        out.push(spec(format!("{l}mlp.fc2.weight"), vec![h, m]));
        out.push(spec(format!("{l}mlp.fc2.bias"), vec![h]));
    }
    out.push(spec(format!("{POST_LAYERNORM}.weight"), vec![h]));
    out.push(spec(format!("{POST_LAYERNORM}.bias"), vec![h]));
    out.push(spec(VISUAL_PROJECTION.into(), vec![c.projection_dim, h]));
    out
}

/// The weights, one file or shards: each tensor name → the file holding it.
#[derive(Debug)]
struct Weights {
    /// The file missing tensors are reported against (the single file, or the index).
    listing: String,
    files: Vec<SafetensorsFile>,
    by_name: BTreeMap<String, usize>,
}

impl Weights {
    fn shape(&self, name: &str) -> Option<&[usize]> {
        let file = self.files.get(*self.by_name.get(name)?)?;
        file.entries().get(name).map(|e| e.shape.as_slice())
    }

    fn missing(&self, name: &str, expected: &[usize]) -> ModelFileError {
        ModelFileError::MissingTensor {
            file: self.listing.clone(),
            name: name.to_string(),
            expected: expected.into(),
        }
    }

    /// `name`, checked against `expected` and converted to `f32`.
    fn load(&self, name: &str, expected: &[usize]) -> Result<Tensor, ModelFileError> {
        let Some(file) = self.by_name.get(name).and_then(|&i| self.files.get(i)) else {
            return Err(self.missing(name, expected));
        };
        match file.tensor(name)? {
            Some(t) if t.shape == expected => Ok(t),
            Some(t) => Err(ModelFileError::WrongShape {
                file: file.file().to_string(),
                name: name.to_string(),
                expected: expected.into(),
                found: t.shape.into(),
            }),
            // The index named a shard that does not hold it.
            None => Err(ModelFileError::MissingTensor {
                file: file.file().to_string(),
                name: name.to_string(),
                expected: expected.into(),
            }),
        }
    }
}

/// Opens the weights under `dir` (the model folder): the index and its shards when the index
/// exists, else the single file.
fn open_weights(dir: &Path) -> Result<Weights, ModelFileError> {
    let index_path = dir.join(WEIGHTS_INDEX_FILE);
    if index_path.is_file() {
        let listing = rel(WEIGHTS_INDEX_FILE);
        let text =
            std::fs::read_to_string(&index_path).map_err(|e| ModelFileError::io(&listing, e))?;
        let shard_of = parse_index(&text, &listing)?;
        let mut files = Vec::new();
        let mut file_ids: BTreeMap<&str, usize> = BTreeMap::new();
        let mut by_name = BTreeMap::new();
        for (name, shard) in &shard_of {
            let id = match file_ids.get(shard.as_str()) {
                Some(&id) => id,
                None => {
                    let path = present(dir, shard)?;
                    files.push(SafetensorsFile::open(&path, &rel(shard))?);
                    file_ids.insert(shard, files.len() - 1);
                    files.len() - 1
                }
            };
            by_name.insert(name.clone(), id);
        }
        return Ok(Weights {
            listing,
            files,
            by_name,
        });
    }
    let path = present(dir, WEIGHTS_FILE)?;
    let file = SafetensorsFile::open(&path, &rel(WEIGHTS_FILE))?;
    let by_name = file.entries().keys().map(|k| (k.clone(), 0)).collect();
    Ok(Weights {
        listing: rel(WEIGHTS_FILE),
        files: vec![file],
        by_name,
    })
}

/// `model.safetensors.index.json`'s `weight_map`: tensor name → shard file name. A shard name
/// must be a plain file name in the folder (no path separators, no `..`).
fn parse_index(text: &str, listing: &str) -> Result<BTreeMap<String, String>, ModelFileError> {
    let malformed = |detail: String| ModelFileError::Malformed {
        file: listing.to_string(),
        detail,
    };
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| malformed("no weight_map object".into()))?;
    let mut out = BTreeMap::new();
    for (name, shard) in map {
        let shard = shard
            .as_str()
            .filter(|s| {
                !s.is_empty() && !s.contains('/') && !s.contains('\\') && *s != "." && *s != ".."
            })
            .ok_or_else(|| malformed(format!("weight_map[{name}] is not a shard file name")))?;
        out.insert(name.clone(), shard.to_string());
    }
    Ok(out)
}

fn present(dir: &Path, file: &str) -> Result<PathBuf, ModelFileError> {
    let path = dir.join(file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelFileError::MissingFile {
            file: rel(file),
            path,
            download: download_command(),
        })
    }
}

/// What `config.json` says about the vision tower (absent keys stay `None`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct StatedConfig {
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    patch_size: Option<usize>,
    image_size: Option<usize>,
    layer_norm_eps: Option<f32>,
    activation: Option<Activation>,
    projection_dim: Option<usize>,
}

/// `config.json`: `vision_config` (required) and the top-level `projection_dim`.
fn parse_config(text: &str) -> Result<StatedConfig, ModelFileError> {
    let file = rel(CONFIG_FILE);
    let bad = |key: &str, problem: String| ModelFileError::BadConfig {
        file: file.clone(),
        key: key.to_string(),
        problem,
    };
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ModelFileError::Malformed {
            file: file.clone(),
            detail: format!("not JSON: {e}"),
        })?;
    let vision = json
        .get("vision_config")
        .and_then(|v| v.as_object())
        .ok_or_else(|| bad("vision_config", "missing, or not an object".into()))?;
    let count = |obj: &serde_json::Map<String, serde_json::Value>,
                 key: &str|
     -> Result<Option<usize>, ModelFileError> {
        match obj.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n > 0)
                .map(Some)
                .ok_or_else(|| bad(key, format!("expected a positive integer, found {v}"))),
        }
    };
    if let Some(ch) = count(vision, "num_channels")? {
        if ch != 3 {
            return Err(ModelFileError::UnsupportedArchitecture {
                file: file.clone(),
                reason: format!("vision_config.num_channels {ch} (only 3)"),
            });
        }
    }
    let activation = match vision.get("hidden_act") {
        None => None,
        Some(v) => match v.as_str() {
            Some("quick_gelu") => Some(Activation::QuickGelu),
            Some("gelu") => Some(Activation::Gelu),
            _ => {
                return Err(ModelFileError::UnsupportedArchitecture {
                    file: file.clone(),
                    reason: format!("vision_config.hidden_act {v} (quick_gelu or gelu)"),
                })
            }
        },
    };
    let layer_norm_eps = match vision.get("layer_norm_eps") {
        None => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| {
                    bad(
                        "layer_norm_eps",
                        format!("expected a positive number, found {v}"),
                    )
                })? as f32,
        ),
    };
    let top = json
        .as_object()
        .ok_or_else(|| bad("(root)", "not a JSON object".into()))?;
    Ok(StatedConfig {
        hidden_size: count(vision, "hidden_size")?,
        num_hidden_layers: count(vision, "num_hidden_layers")?,
        num_attention_heads: count(vision, "num_attention_heads")?,
        intermediate_size: count(vision, "intermediate_size")?,
        patch_size: count(vision, "patch_size")?,
        image_size: count(vision, "image_size")?,
        layer_norm_eps,
        activation,
        projection_dim: count(top, "projection_dim")?,
    })
}

/// The sizes the shapes imply, checked against what `config.json` states.
fn derive_config(w: &Weights, stated: &StatedConfig) -> Result<VisionConfig, ModelFileError> {
    let config_file = rel(CONFIG_FILE);
    let shape =
        |name: &str, rank: usize, expected: &[usize]| -> Result<Vec<usize>, ModelFileError> {
            match w.shape(name) {
                Some(s) if s.len() == rank && s.iter().all(|&d| d > 0) => Ok(s.to_vec()),
                Some(s) => Err(ModelFileError::WrongShape {
                    file: w.listing.clone(),
                    name: name.to_string(),
                    expected: expected.into(),
                    found: s.into(),
                }),
                None => Err(w.missing(name, expected)),
            }
        };
    // Expected shapes in errors: the real model's, since nothing else is known yet.
    let hidden = shape(CLASS_EMBEDDING, 1, &[1024])?[0];
    let patch = shape(PATCH_EMBEDDING, 4, &[hidden, 3, 14, 14])?;
    if patch[0] != hidden || patch[1] != 3 || patch[2] != patch[3] {
        return Err(ModelFileError::WrongShape {
            file: w.listing.clone(),
            name: PATCH_EMBEDDING.into(),
            expected: vec![hidden, 3, patch[2], patch[2]].into(),
            found: patch.into(),
        });
    }
    let patch_size = patch[2];
    let positions = shape(POSITION_EMBEDDING, 2, &[577, hidden])?;
    let grid = (1..=positions[0])
        .find(|g| g * g + 1 >= positions[0])
        .unwrap_or(0);
    if positions[1] != hidden || grid * grid + 1 != positions[0] {
        return Err(ModelFileError::WrongShape {
            file: w.listing.clone(),
            name: POSITION_EMBEDDING.into(),
            expected: vec![grid * grid + 1, hidden].into(),
            found: positions.into(),
        });
    }
    let mut layers = 0;
    while w
        .shape(&format!("{}self_attn.q_proj.weight", layer_prefix(layers)))
        .is_some()
    {
        layers += 1;
    }
    if layers == 0 {
        return Err(w.missing(
            &format!("{}self_attn.q_proj.weight", layer_prefix(0)),
            &[hidden, hidden],
        ));
    }
    let fc1 = format!("{}mlp.fc1.weight", layer_prefix(0));
    let intermediate = shape(&fc1, 2, &[4 * hidden, hidden])?[0];
    let projection = shape(VISUAL_PROJECTION, 2, &[1280, hidden])?[0];
    let heads = stated.num_attention_heads.unwrap_or(12);
    let derived = VisionConfig {
        hidden_size: hidden,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        intermediate_size: intermediate,
        patch_size,
        image_size: grid * patch_size,
        layer_norm_eps: stated.layer_norm_eps.unwrap_or(1e-5),
        activation: stated.activation.unwrap_or(Activation::QuickGelu),
        projection_dim: projection,
    };
    let agree = |key: &str, said: Option<usize>, found: usize| -> Result<(), ModelFileError> {
        match said {
            Some(s) if s != found => Err(ModelFileError::BadConfig {
                file: config_file.clone(),
                key: key.to_string(),
                problem: format!("says {s}, the weights hold {found}"),
            }),
            _ => Ok(()),
        }
    };
    agree("vision_config.hidden_size", stated.hidden_size, hidden)?;
    agree(
        "vision_config.num_hidden_layers",
        stated.num_hidden_layers,
        layers,
    )?;
    agree(
        "vision_config.intermediate_size",
        stated.intermediate_size,
        intermediate,
    )?;
    agree("vision_config.patch_size", stated.patch_size, patch_size)?;
    agree(
        "vision_config.image_size",
        stated.image_size,
        derived.image_size,
    )?;
    agree("projection_dim", stated.projection_dim, projection)?;
    if hidden % heads != 0 {
        return Err(ModelFileError::BadConfig {
            file: config_file,
            key: "vision_config.num_attention_heads".into(),
            problem: format!("{heads} does not divide hidden_size {hidden}"),
        });
    }
    Ok(derived)
}

/// Both files present, the config read, every needed tensor located with its shape checked
/// (nothing converted): the start-up check.
pub fn check(models_dir: &Path) -> Result<VisionConfig, ModelFileError> {
    open(models_dir).map(|(c, _)| c)
}

fn open(models_dir: &Path) -> Result<(VisionConfig, Weights), ModelFileError> {
    let dir = models_dir.join(LLM2CLIP_DIR);
    let config_path = present(&dir, CONFIG_FILE)?;
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| ModelFileError::io(&rel(CONFIG_FILE), e))?;
    let stated = parse_config(&text)?;
    let weights = open_weights(&dir)?;
    let config = derive_config(&weights, &stated)?;
    for spec in tensor_specs(&config) {
        match weights.shape(&spec.name) {
            None => return Err(weights.missing(&spec.name, &spec.shape)),
            Some(found) if found != spec.shape.as_slice() => {
                let file = weights
                    .by_name
                    .get(&spec.name)
                    .and_then(|&i| weights.files.get(i))
                    .map_or_else(|| weights.listing.clone(), |f| f.file().to_string());
                return Err(ModelFileError::WrongShape {
                    file,
                    name: spec.name,
                    expected: spec.shape.into(),
                    found: found.into(),
                });
            }
            Some(_) => {}
        }
    }
    Ok((config, weights))
}

/// Loads the image side from `<models_dir>/LLM2CLIP-Openai-L-14-336/`, checked as [`check`]
/// checks, every tensor converted to `f32`.
pub fn load(models_dir: &Path) -> Result<Llm2ClipVision, ModelFileError> {
    let (c, w) = open(models_dir)?;
    let h = c.hidden_size;
    let vec = |name: &str, len: usize| w.load(name, &[len]).map(|t| t.data);
    let norm = |prefix: &str| -> Result<LayerNorm, ModelFileError> {
        Ok(LayerNorm {
            weight: vec(&format!("{prefix}.weight"), h)?,
            bias: vec(&format!("{prefix}.bias"), h)?,
            eps: c.layer_norm_eps,
        })
    };
    let linear = |prefix: &str, out: usize, inp: usize| -> Result<Linear, ModelFileError> {
        Ok(Linear {
            weight: w.load(&format!("{prefix}.weight"), &[out, inp])?,
            bias: Some(vec(&format!("{prefix}.bias"), out)?),
        })
    };
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    for i in 0..c.num_hidden_layers {
        let l = layer_prefix(i);
        layers.push(ClipLayer {
            layer_norm1: norm(&format!("{l}layer_norm1"))?,
            q_proj: linear(&format!("{l}self_attn.q_proj"), h, h)?,
            k_proj: linear(&format!("{l}self_attn.k_proj"), h, h)?,
            v_proj: linear(&format!("{l}self_attn.v_proj"), h, h)?,
            out_proj: linear(&format!("{l}self_attn.out_proj"), h, h)?,
            layer_norm2: norm(&format!("{l}layer_norm2"))?,
            fc1: linear(&format!("{l}mlp.fc1"), c.intermediate_size, h)?,
            fc2: linear(&format!("{l}mlp.fc2"), h, c.intermediate_size)?,
        });
    }
    let p = c.patch_size;
    Ok(Llm2ClipVision {
        config: c,
        class_embedding: vec(CLASS_EMBEDDING, h)?,
        patch_embedding: Conv2d {
            weight: w.load(PATCH_EMBEDDING, &[h, 3, p, p])?,
            bias: None,
            stride: p,
            padding: 0,
        },
        position_embedding: w.load(POSITION_EMBEDDING, &[c.tokens(), h])?.data,
        pre_layrnorm: norm(PRE_LAYRNORM)?,
        layers,
        post_layernorm: norm(POST_LAYERNORM)?,
        visual_projection: Linear {
            weight: w.load(VISUAL_PROJECTION, &[c.projection_dim, h])?,
            bias: None,
        },
    })
}

/// The `config.json` a model of `c` needs (the keys the real file states, written in full).
pub fn config_json(c: &VisionConfig) -> String {
    let act = match c.activation {
        Activation::QuickGelu => "quick_gelu",
        Activation::Gelu => "gelu",
    };
    serde_json::json!({
        "architectures": ["LLM2CLIPModel"],
        "projection_dim": c.projection_dim,
        "vision_config": {
            "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size,
            "num_hidden_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads,
            "num_channels": 3,
            "image_size": c.image_size,
            "patch_size": c.patch_size,
            "hidden_act": act,
            "layer_norm_eps": c.layer_norm_eps,
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_refuses_shard_paths_outside_the_folder() {
        let ok = parse_index(
            r#"{"weight_map": {"a": "model-00001-of-00002.safetensors"}}"#,
            "i",
        );
        assert_eq!(
            ok.expect("plain name")["a"],
            "model-00001-of-00002.safetensors"
        );
        for bad in [
            r#"{"weight_map": {"a": "../x"}}"#,
            r#"{"weight_map": {"a": 3}}"#,
            "[]",
        ] {
            assert!(matches!(
                parse_index(bad, "i"),
                Err(ModelFileError::Malformed { .. })
            ));
        }
    }

    #[test]
    fn config_defaults_are_clip_vision_config_s() {
        let s = parse_config(r#"{"vision_config": {"hidden_size": 1024}}"#).expect("config");
        assert_eq!(s.activation, None);
        assert_eq!(s.num_attention_heads, None);
        assert!(matches!(
            parse_config(r#"{"vision_config": {"hidden_act": "relu"}}"#),
            Err(ModelFileError::UnsupportedArchitecture { .. })
        ));
        assert!(matches!(
            parse_config(r#"{"text_config": {}}"#),
            Err(ModelFileError::BadConfig { .. })
        ));
    }
}
