//! The operator's `models_dir`: the files an operator downloads once, under their upstream
//! names ([`layout`]), checked against optional sha256 pins and against the tensor names and
//! shapes each network needs, and loaded into the typed weights of [`crate::scorer::model`].
//!
//! - [`layout`]: the file names, download commands, expected tensor names and shapes.
//! - [`safetensors`]: `dinov2-small/model.safetensors`, `quality_scorer.safetensors`.
//! - [`torch`] (with its [`pickle`] VM): `alexnet-owt-7be5be79.pth`, `alex.pth`.
//! - [`dtype`]: F32/F16/BF16 → `f32`.
//!
//! Nothing read from a file can panic the loader: every problem is a [`ModelFileError`]
//! naming the file.
//!
//! The quality model is built as the validation service builds it: HF `Dinov2Model` from
//! `dinov2-small/`, then `safetensors.torch.load_model(DINOv2Net, quality_scorer.safetensors,
//! strict=False)`: `score_head.*` is required, each `backbone.<name>` replaces the facebook
//! tensor `<name>` (same shape, as `load_state_dict` requires even when not strict),
//! `emb_head.*` and unknown keys are ignored (logged at debug).

pub mod dtype;
pub mod layout;
pub mod pickle;
pub mod safetensors;
pub mod torch;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use self::{
    layout::{TensorSpec, ALEXNET_CONVS, ALEXNET_WIDTHS},
    safetensors::SafetensorsFile,
    torch::TorchCheckpoint,
};
use crate::scorer::model::{
    Conv2d, Dinov2, Dinov2Config, LayerNorm, Linear, Lpips, QualityModel, ScorerModels, Tensor,
    VitLayer,
};

/// Why a model file could not be used; every variant names the file (relative to the
/// `models_dir`). Shapes are boxed slices to keep the error small (it travels in `Result`s).
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("model file {file} is missing (looked at {path}); download it with: {download}")]
    MissingFile {
        file: String,
        path: PathBuf,
        download: String,
    },
    #[error("model file {file}: sha256 mismatch: expected {expected}, found {actual}")]
    Sha256Mismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("model file {file}: cannot read it: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("model file {file} is truncated: {detail}")]
    Truncated { file: String, detail: String },
    #[error("model file {file} is malformed: {detail}")]
    Malformed { file: String, detail: String },
    #[error("model file {file}: missing tensor {name} (expected shape {expected:?})")]
    MissingTensor {
        file: String,
        name: String,
        expected: Box<[usize]>,
    },
    #[error("model file {file}: tensor {name} has shape {found:?}, expected {expected:?}")]
    WrongShape {
        file: String,
        name: String,
        expected: Box<[usize]>,
        found: Box<[usize]>,
    },
    #[error("model file {file}: tensor {name} has unsupported dtype {dtype} (F32, F16, BF16 are)")]
    UnsupportedDtype {
        file: String,
        name: String,
        dtype: String,
    },
    #[error(
        "model file {file}: tensor {name} is not contiguous (shape {shape:?}, stride {stride:?})"
    )]
    NonContiguous {
        file: String,
        name: String,
        shape: Box<[usize]>,
        stride: Box<[usize]>,
    },
    #[error("model file {file}: config key {key}: {problem}")]
    BadConfig {
        file: String,
        key: String,
        problem: String,
    },
    #[error("model file {file}: unsupported architecture: {reason}")]
    UnsupportedArchitecture { file: String, reason: String },
    #[error(
        "model file {file}: unsupported pickle opcode {name} (0x{opcode:02x}) at byte {offset}"
    )]
    UnsupportedOpcode {
        file: String,
        opcode: u8,
        name: &'static str,
        offset: usize,
    },
    #[error("model file {file}: unsupported pickle global {module}.{name}")]
    UnsupportedGlobal {
        file: String,
        module: String,
        name: String,
    },
}

impl ModelFileError {
    pub(crate) fn io(file: &str, source: std::io::Error) -> Self {
        Self::Io {
            file: file.to_string(),
            source,
        }
    }

    /// The file the error is about, relative to the `models_dir`.
    pub fn file(&self) -> &str {
        match self {
            Self::MissingFile { file, .. }
            | Self::Sha256Mismatch { file, .. }
            | Self::Io { file, .. }
            | Self::Truncated { file, .. }
            | Self::Malformed { file, .. }
            | Self::MissingTensor { file, .. }
            | Self::WrongShape { file, .. }
            | Self::UnsupportedDtype { file, .. }
            | Self::NonContiguous { file, .. }
            | Self::BadConfig { file, .. }
            | Self::UnsupportedArchitecture { file, .. }
            | Self::UnsupportedOpcode { file, .. }
            | Self::UnsupportedGlobal { file, .. } => file,
        }
    }
}

/// The operator's `models_dir`, with optional sha256 pins keyed by the file name relative to
/// it (e.g. `dinov2-small/model.safetensors`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelsDir {
    pub root: PathBuf,
    pub sha256: BTreeMap<String, String>,
}

/// A tensor source: a header to check shapes against, and the conversion to `f32`.
trait Source {
    fn file(&self) -> &str;
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    fn tensor(&self, name: &str) -> Result<Option<Tensor>, ModelFileError>;
    fn names(&self) -> Vec<String>;
}

impl Source for SafetensorsFile {
    fn file(&self) -> &str {
        SafetensorsFile::file(self)
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.entries().get(name).map(|e| e.shape.clone())
    }
    fn tensor(&self, name: &str) -> Result<Option<Tensor>, ModelFileError> {
        SafetensorsFile::tensor(self, name)
    }
    fn names(&self) -> Vec<String> {
        self.entries().keys().cloned().collect()
    }
}

struct Torch {
    file: String,
    checkpoint: TorchCheckpoint,
    shapes: BTreeMap<String, Vec<usize>>,
}

impl Source for Torch {
    fn file(&self) -> &str {
        &self.file
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.shapes.get(name).cloned()
    }
    fn tensor(&self, name: &str) -> Result<Option<Tensor>, ModelFileError> {
        self.checkpoint.tensor(name)
    }
    fn names(&self) -> Vec<String> {
        self.shapes.keys().cloned().collect()
    }
}

/// Where one expected tensor comes from: a source, the name there, and the expected shape.
struct Pick<'a> {
    source: &'a dyn Source,
    name: String,
    shape: Vec<usize>,
}

impl Pick<'_> {
    fn load(&self) -> Result<Tensor, ModelFileError> {
        match self.source.tensor(&self.name)? {
            Some(t) => Ok(t),
            None => Err(missing(self.source, &self.name, &self.shape)),
        }
    }
}

fn missing(source: &dyn Source, name: &str, expected: &[usize]) -> ModelFileError {
    ModelFileError::MissingTensor {
        file: source.file().to_string(),
        name: name.to_string(),
        expected: expected.into(),
    }
}

/// Checks that `source` holds `name` with `expected` shape.
fn expect<'a>(
    source: &'a dyn Source,
    name: String,
    expected: &[usize],
) -> Result<Pick<'a>, ModelFileError> {
    match source.shape(&name) {
        None => Err(missing(source, &name, expected)),
        Some(found) if found != expected => Err(ModelFileError::WrongShape {
            file: source.file().to_string(),
            name,
            expected: expected.into(),
            found: found.into(),
        }),
        Some(_) => Ok(Pick {
            source,
            name,
            shape: expected.to_vec(),
        }),
    }
}

/// Every file opened and every needed tensor located and shape-checked (nothing converted).
struct Opened {
    config: Dinov2Config,
    qkv_bias: bool,
    facebook: SafetensorsFile,
    facebook_prefix: &'static str,
    quality: SafetensorsFile,
    alexnet: Torch,
    lpips: Torch,
    widths: [usize; 5],
}

impl ModelsDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            sha256: BTreeMap::new(),
        }
    }

    /// Pins `file` (relative to the root) to a sha256 (hex).
    pub fn with_sha256(mut self, file: impl Into<String>, sha256: impl Into<String>) -> Self {
        self.sha256.insert(file.into(), sha256.into());
        self
    }

    /// The path of `file` (relative to the root).
    pub fn path(&self, file: &str) -> PathBuf {
        self.root.join(file)
    }

    /// The start-up check: every file present, the pins, the headers, every needed tensor's
    /// name and shape (no tensor is converted).
    pub fn check(&self) -> Result<(), ModelFileError> {
        self.open().map(|_| ())
    }

    /// Loads every network, checked as [`ModelsDir::check`] checks.
    pub fn load(&self) -> Result<ScorerModels, ModelFileError> {
        let opened = self.open()?;
        let backbone = self.dinov2(&opened)?;
        let h = opened.config.hidden_size;
        let quality: &dyn Source = &opened.quality;
        let specs = layout::quality_head_tensors(h);
        let weight = expect(quality, specs[0].name.clone(), &specs[0].shape)?.load()?;
        let bias = expect(quality, specs[1].name.clone(), &specs[1].shape)?.load()?;
        let score_head = Linear {
            weight,
            bias: Some(bias.data),
        };
        let lpips = lpips(&opened)?;
        Ok(ScorerModels {
            quality: QualityModel {
                backbone,
                score_head,
            },
            lpips,
        })
    }

    fn present(&self, file: &str) -> Result<PathBuf, ModelFileError> {
        let path = self.path(file);
        if path.is_file() {
            Ok(path)
        } else {
            Err(ModelFileError::MissingFile {
                file: file.to_string(),
                download: layout::download_command(file)
                    .replace("<models_dir>", &self.root.display().to_string()),
                path,
            })
        }
    }

    fn check_pins(&self) -> Result<(), ModelFileError> {
        for (file, expected) in &self.sha256 {
            let path = self.present(file)?;
            let actual = sha256_file(&path).map_err(|e| ModelFileError::io(file, e))?;
            if !actual.eq_ignore_ascii_case(expected.trim()) {
                return Err(ModelFileError::Sha256Mismatch {
                    file: file.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }

    fn open(&self) -> Result<Opened, ModelFileError> {
        for file in layout::ALL_FILES {
            self.present(file)?;
        }
        self.check_pins()?;
        let (config, qkv_bias) = read_config(&self.path(layout::DINOV2_CONFIG))?;
        let facebook =
            SafetensorsFile::open(&self.path(layout::DINOV2_WEIGHTS), layout::DINOV2_WEIGHTS)?;
        let quality =
            SafetensorsFile::open(&self.path(layout::QUALITY_SCORER), layout::QUALITY_SCORER)?;
        let alexnet = open_torch(&self.path(layout::ALEXNET), layout::ALEXNET)?;
        let lpips = open_torch(&self.path(layout::LPIPS_ALEX), layout::LPIPS_ALEX)?;
        let facebook_prefix = if facebook.entries().contains_key("embeddings.cls_token")
            || !facebook
                .entries()
                .keys()
                .any(|k| k.starts_with(layout::DINOV2_OPTIONAL_PREFIX))
        {
            ""
        } else {
            layout::DINOV2_OPTIONAL_PREFIX
        };
        let widths = alexnet_widths(&alexnet)?;
        let opened = Opened {
            config,
            qkv_bias,
            facebook,
            facebook_prefix,
            quality,
            alexnet,
            lpips,
            widths,
        };
        // Shapes only: every pick is checked, none converted.
        self.dinov2_picks(&opened)?;
        let quality: &dyn Source = &opened.quality;
        for spec in layout::quality_head_tensors(config.hidden_size) {
            expect(quality, spec.name, &spec.shape)?;
        }
        lpips_picks(&opened)?;
        Ok(opened)
    }

    /// Each DINOv2 tensor's source: `backbone.<name>` of the quality file when it has it,
    /// else the facebook file's.
    fn dinov2_picks<'a>(
        &self,
        o: &'a Opened,
    ) -> Result<BTreeMap<String, Pick<'a>>, ModelFileError> {
        let specs = layout::dinov2_tensors(&o.config, o.qkv_bias);
        let known: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let quality: &dyn Source = &o.quality;
        let facebook: &dyn Source = &o.facebook;
        for name in quality.names() {
            let used = name == "score_head.weight" || name == "score_head.bias";
            let ignored = name.starts_with("emb_head.");
            let backbone = name
                .strip_prefix(layout::BACKBONE_PREFIX)
                .is_some_and(|n| known.contains(n));
            if !used && !ignored && !backbone {
                tracing::debug!(
                    file = layout::QUALITY_SCORER,
                    key = %name,
                    "ignoring an unexpected key (strict=False)"
                );
            }
        }
        let mut picks = BTreeMap::new();
        for TensorSpec {
            name,
            shape,
            required,
        } in specs
        {
            let overridden = format!("{}{name}", layout::BACKBONE_PREFIX);
            let pick = if quality.shape(&overridden).is_some() {
                expect(quality, overridden, &shape)?
            } else if !required {
                continue;
            } else {
                expect(facebook, format!("{}{name}", o.facebook_prefix), &shape)?
            };
            picks.insert(name, pick);
        }
        Ok(picks)
    }

    fn dinov2(&self, o: &Opened) -> Result<Dinov2, ModelFileError> {
        let picks = self.dinov2_picks(o)?;
        let c = o.config;
        let get = |name: &str| -> Result<Tensor, ModelFileError> {
            match picks.get(name) {
                Some(p) => p.load(),
                None => Err(missing(&o.facebook, name, &[])),
            }
        };
        let vec = |name: &str| get(name).map(|t| t.data);
        let norm = |prefix: &str| -> Result<LayerNorm, ModelFileError> {
            Ok(LayerNorm {
                weight: vec(&format!("{prefix}.weight"))?,
                bias: vec(&format!("{prefix}.bias"))?,
                eps: c.layer_norm_eps,
            })
        };
        let linear = |prefix: &str, bias: bool| -> Result<Linear, ModelFileError> {
            Ok(Linear {
                weight: get(&format!("{prefix}.weight"))?,
                bias: if bias {
                    Some(vec(&format!("{prefix}.bias"))?)
                } else {
                    None
                },
            })
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = layout::layer_prefix(i);
            layers.push(VitLayer {
                norm1: norm(&format!("{l}norm1"))?,
                query: linear(&format!("{l}attention.attention.query"), o.qkv_bias)?,
                key: linear(&format!("{l}attention.attention.key"), o.qkv_bias)?,
                value: linear(&format!("{l}attention.attention.value"), o.qkv_bias)?,
                output: linear(&format!("{l}attention.output.dense"), true)?,
                layer_scale1: vec(&format!("{l}layer_scale1.lambda1"))?,
                norm2: norm(&format!("{l}norm2"))?,
                fc1: linear(&format!("{l}mlp.fc1"), true)?,
                fc2: linear(&format!("{l}mlp.fc2"), true)?,
                layer_scale2: vec(&format!("{l}layer_scale2.lambda1"))?,
            });
        }
        Ok(Dinov2 {
            config: c,
            cls_token: vec("embeddings.cls_token")?,
            position_embeddings: vec("embeddings.position_embeddings")?,
            patch_embed: Conv2d {
                weight: get("embeddings.patch_embeddings.projection.weight")?,
                bias: Some(vec("embeddings.patch_embeddings.projection.bias")?),
                stride: c.patch_size,
                padding: 0,
            },
            layers,
            final_norm: norm("layernorm")?,
        })
    }
}

fn open_torch(path: &Path, file: &str) -> Result<Torch, ModelFileError> {
    let checkpoint = TorchCheckpoint::open(path, file)?;
    Ok(Torch {
        file: file.to_string(),
        shapes: checkpoint.shapes(),
        checkpoint,
    })
}

/// AlexNet's conv widths, read from `features.K.weight` and checked along the chain
/// (each conv's input channels are the previous one's outputs; kernels are AlexNet's).
fn alexnet_widths(alexnet: &Torch) -> Result<[usize; 5], ModelFileError> {
    let mut widths = [0usize; 5];
    let mut in_ch = 3;
    for (k, conv) in ALEXNET_CONVS.iter().enumerate() {
        let (name, _) = layout::alexnet_conv_names(k);
        let kk = conv.kernel;
        let found = alexnet
            .shape(&name)
            .ok_or_else(|| missing(alexnet, &name, &[ALEXNET_WIDTHS[k], in_ch, kk, kk]))?;
        match found.as_slice() {
            &[out, i, kh, kw] if out > 0 && i == in_ch && kh == kk && kw == kk => {
                widths[k] = out;
                in_ch = out;
            }
            _ => {
                return Err(ModelFileError::WrongShape {
                    file: alexnet.file.clone(),
                    name,
                    expected: vec![
                        found.first().copied().unwrap_or(ALEXNET_WIDTHS[k]),
                        in_ch,
                        kk,
                        kk,
                    ]
                    .into(),
                    found: found.into(),
                })
            }
        }
    }
    Ok(widths)
}

fn lpips_picks(o: &Opened) -> Result<(Vec<Pick<'_>>, Vec<Pick<'_>>), ModelFileError> {
    let convs = layout::alexnet_tensors(&o.widths)
        .into_iter()
        .map(|s| expect(&o.alexnet, s.name, &s.shape))
        .collect::<Result<Vec<_>, _>>()?;
    let lins = layout::lpips_tensors(&o.widths)
        .into_iter()
        .map(|s| expect(&o.lpips, s.name, &s.shape))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((convs, lins))
}

fn lpips(o: &Opened) -> Result<Lpips, ModelFileError> {
    let (convs, lins) = lpips_picks(o)?;
    let conv = |k: usize| -> Result<Conv2d, ModelFileError> {
        let (Some(w), Some(b), Some(spec)) =
            (convs.get(2 * k), convs.get(2 * k + 1), ALEXNET_CONVS.get(k))
        else {
            return Err(missing(&o.alexnet, &layout::alexnet_conv_names(k).0, &[]));
        };
        Ok(Conv2d {
            weight: w.load()?,
            bias: Some(b.load()?.data),
            stride: spec.stride,
            padding: spec.padding,
        })
    };
    let lin = |k: usize| -> Result<Vec<f32>, ModelFileError> {
        match lins.get(k) {
            Some(p) => Ok(p.load()?.data),
            None => Err(missing(&o.lpips, &layout::lpips_lin_name(k), &[])),
        }
    };
    Ok(Lpips {
        convs: [conv(0)?, conv(1)?, conv(2)?, conv(3)?, conv(4)?],
        lins: [lin(0)?, lin(1)?, lin(2)?, lin(3)?, lin(4)?],
    })
}

/// The sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// `dinov2-small/config.json` → the forward pass's hyper-parameters and `qkv_bias`.
pub fn read_config(path: &Path) -> Result<(Dinov2Config, bool), ModelFileError> {
    let file = layout::DINOV2_CONFIG;
    let text = std::fs::read_to_string(path).map_err(|e| ModelFileError::io(file, e))?;
    parse_config(&text)
}

/// [`read_config`] on the text of `config.json`.
pub fn parse_config(text: &str) -> Result<(Dinov2Config, bool), ModelFileError> {
    let file = layout::DINOV2_CONFIG;
    let bad = |key: &str, problem: String| ModelFileError::BadConfig {
        file: file.to_string(),
        key: key.to_string(),
        problem,
    };
    let unsupported = |reason: String| ModelFileError::UnsupportedArchitecture {
        file: file.to_string(),
        reason,
    };
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ModelFileError::Malformed {
            file: file.to_string(),
            detail: format!("not JSON: {e}"),
        })?;
    let obj = json
        .as_object()
        .ok_or_else(|| bad("(root)", "not a JSON object".into()))?;
    let count = |key: &str| -> Result<usize, ModelFileError> {
        let v = obj.get(key).ok_or_else(|| bad(key, "missing".into()))?;
        // HF accepts an int or an [h, w] pair for sizes; we need square ones.
        let n = match v {
            serde_json::Value::Array(a) => match a.as_slice() {
                [x, y] if x == y => x.as_u64(),
                _ => None,
            },
            other => other.as_u64(),
        };
        n.and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| bad(key, format!("expected a positive integer, found {v}")))
    };
    let number = |key: &str| -> Result<f64, ModelFileError> {
        let v = obj.get(key).ok_or_else(|| bad(key, "missing".into()))?;
        v.as_f64()
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| bad(key, format!("expected a positive number, found {v}")))
    };
    if let Some(t) = obj.get("model_type") {
        if t.as_str() != Some("dinov2") {
            return Err(unsupported(format!("model_type {t} (only \"dinov2\")")));
        }
    }
    if obj.get("use_swiglu_ffn").and_then(|v| v.as_bool()) == Some(true) {
        return Err(unsupported(
            "use_swiglu_ffn: true (only the GELU MLP)".into(),
        ));
    }
    if let Some(r) = obj.get("num_register_tokens") {
        if r.as_u64() != Some(0) {
            return Err(unsupported(format!(
                "num_register_tokens {r} (no registers)"
            )));
        }
    }
    if let Some(act) = obj.get("hidden_act") {
        if act.as_str() != Some("gelu") {
            return Err(unsupported(format!("hidden_act {act} (only \"gelu\")")));
        }
    }
    if let Some(ch) = obj.get("num_channels") {
        if ch.as_u64() != Some(3) {
            return Err(unsupported(format!("num_channels {ch} (only 3)")));
        }
    }
    let qkv_bias = match obj.get("qkv_bias") {
        None => true,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| bad("qkv_bias", format!("expected a boolean, found {v}")))?,
    };
    let hidden_size = count("hidden_size")?;
    let num_hidden_layers = count("num_hidden_layers")?;
    let num_attention_heads = count("num_attention_heads")?;
    if hidden_size % num_attention_heads != 0 {
        return Err(bad(
            "num_attention_heads",
            format!("{num_attention_heads} does not divide hidden_size {hidden_size}"),
        ));
    }
    let mlp_ratio = number("mlp_ratio")?;
    // HF: int(hidden_size * mlp_ratio).
    let mlp_hidden = (hidden_size as f64 * mlp_ratio) as usize;
    if mlp_hidden == 0 {
        return Err(bad("mlp_ratio", format!("{mlp_ratio} gives an empty MLP")));
    }
    let patch_size = count("patch_size")?;
    let image_size = count("image_size")?;
    if image_size < patch_size {
        return Err(bad(
            "image_size",
            format!("{image_size} is smaller than patch_size {patch_size}"),
        ));
    }
    let layer_norm_eps = number("layer_norm_eps")? as f32;
    Ok((
        Dinov2Config {
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            mlp_hidden,
            patch_size,
            image_size,
            layer_norm_eps,
        },
        qkv_bias,
    ))
}

#[cfg(test)]
mod tests {
    /// Small enough that callers may wrap it with a path and stay under clippy's
    /// `result_large_err` (128 bytes).
    #[test]
    fn the_error_stays_small() {
        assert!(std::mem::size_of::<super::ModelFileError>() <= 96);
    }
}
