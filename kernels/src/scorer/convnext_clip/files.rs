//! The model's files in the operator's `models_dir`, under their hf-hub names, and the
//! expected tensors of `convnext_large_d` (names and shapes, derived from the file so tiny
//! models load too, then checked for consistency). Reads through the crate's safetensors and
//! torch readers ([`crate::scorer::files`]); every problem is a [`ModelFileError`] naming the
//! file, the tensor and the expected shape.
//!
//! Facts (upstream, open_clip 2.29.0 and timm 1.0.11):
//! - `pretrained.py`: `convnext_large_d.laion2b_s26b_b102k_augreg` is hf-hub
//!   `laion/CLIP-convnext_large_d.laion2B-s26B-b102K-augreg`; `download_pretrained_from_hf`
//!   prefers `open_clip_model.safetensors` over `open_clip_pytorch_model.bin`
//!   (`constants.py` `HF_SAFE_WEIGHTS_NAME`, `HF_WEIGHTS_NAME`); `factory.py:load_state_dict`
//!   strips a `module.` prefix and unwraps a `state_dict` key; the load is strict.
//! - `model_configs/convnext_large_d.json`: embed 768; `timm_model_name` `convnext_large`,
//!   `timm_pool` `""`, `timm_proj` `mlp`; text context 77, vocab 49408, width 768, heads 12,
//!   layers 16.
//! - `timm_model.py`: `proj="mlp"` keeps the trunk's default pool (`reset_classifier(0)`) and
//!   adds `head.mlp` = timm `Mlp(1536, 2·768, 768, bias=(True, proj_bias=False))`.
//! - timm `convnext.py`: `convnext_large` depths 3/3/27/3, dims 192/384/768/1536;
//!   `stem.0` Conv2d(3, 192, 4, 4), `stem.1` LayerNorm2d; stage 0 without downsample, stages
//!   1-3 `downsample.0` LayerNorm2d + `downsample.1` Conv2d(k = s = 2); blocks `conv_dw`
//!   (depthwise 7×7, padding 3), `norm` (LayerNorm, channels last), `mlp.fc1/fc2` (×4),
//!   `gamma`; `head.norm` (NormMlpClassifierHead: avg pool, LayerNorm2d, flatten; `fc`
//!   removed). LayerNorm eps 1e-6.
//! - `transformer.py` / `model.py`: `token_embedding.weight`, `positional_embedding`,
//!   `transformer.resblocks.N.{ln_1, attn.in_proj_weight, attn.in_proj_bias,
//!   attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}`, `ln_final`, `text_projection` `[w, e]`,
//!   `logit_scale` (unused here); `attn_mask` is not persistent.

use std::{collections::BTreeMap, path::Path};

use super::model::{
    ClipConfig, ConvnextBlock, ConvnextClip, ConvnextStage, ConvnextTower, TextLayer, TextTower,
    CONVNEXT_NORM_EPS, TEXT_NORM_EPS,
};
use crate::scorer::{
    files::{
        layout::TensorSpec, safetensors::SafetensorsFile, torch::TorchCheckpoint, ModelFileError,
        ModelsDir,
    },
    model::{LayerNorm, Linear, Tensor},
};

/// The hf-hub folder, as `huggingface-cli download <repo> --local-dir` makes it.
pub const CLIP_DIR: &str = "CLIP-convnext_large_d.laion2B-s26B-b102K-augreg";
/// The hf-hub repository.
pub const CLIP_REPO: &str = "laion/CLIP-convnext_large_d.laion2B-s26B-b102K-augreg";
/// The weights open_clip prefers, then its fallback.
pub const CLIP_SAFETENSORS: &str =
    "CLIP-convnext_large_d.laion2B-s26B-b102K-augreg/open_clip_model.safetensors";
pub const CLIP_BIN: &str =
    "CLIP-convnext_large_d.laion2B-s26B-b102K-augreg/open_clip_pytorch_model.bin";
/// open_clip's tokenizer vocabulary, copied beside the weights.
pub const CLIP_VOCAB: &str =
    "CLIP-convnext_large_d.laion2B-s26B-b102K-augreg/bpe_simple_vocab_16e6.txt.gz";
/// The real text tower's head width (768 / 12).
pub const TEXT_HEAD_WIDTH: usize = 64;

/// The shell command that puts the weights into `<models_dir>`.
pub fn download_command() -> String {
    format!(
        "huggingface-cli download {CLIP_REPO} open_clip_model.safetensors --local-dir \
         <models_dir>/{CLIP_DIR}"
    )
}

/// The shell command that puts the vocabulary beside them.
pub fn vocab_download_command() -> String {
    format!(
        "pip download --no-deps open_clip_torch==2.29.0 -d /tmp/oc && unzip -j \
         /tmp/oc/open_clip_torch-2.29.0-py3-none-any.whl open_clip/bpe_simple_vocab_16e6.txt.gz \
         -d <models_dir>/{CLIP_DIR}"
    )
}

/// Every tensor a file of `config`'s dimensions holds and the loader reads (`logit_scale` is
/// written by open_clip but not read here; [`write_order`] adds it).
pub fn clip_tensors(c: &ClipConfig) -> Vec<TensorSpec> {
    let mut specs = Vec::new();
    let mut add = |name: String, shape: Vec<usize>| {
        specs.push(TensorSpec {
            name,
            shape,
            required: true,
        })
    };
    let t = "visual.trunk";
    let d0 = c.dims[0];
    add(
        format!("{t}.stem.0.weight"),
        vec![d0, 3, c.stem_patch, c.stem_patch],
    );
    add(format!("{t}.stem.0.bias"), vec![d0]);
    add(format!("{t}.stem.1.weight"), vec![d0]);
    add(format!("{t}.stem.1.bias"), vec![d0]);
    for (s, &dim) in c.dims.iter().enumerate() {
        let st = format!("{t}.stages.{s}");
        if s > 0 {
            let prev = c.dims[s - 1];
            let k = c.downsample;
            add(format!("{st}.downsample.0.weight"), vec![prev]);
            add(format!("{st}.downsample.0.bias"), vec![prev]);
            add(format!("{st}.downsample.1.weight"), vec![dim, prev, k, k]);
            add(format!("{st}.downsample.1.bias"), vec![dim]);
        }
        let hidden = c.mlp_hidden[s];
        for b in 0..c.depths[s] {
            let bl = format!("{st}.blocks.{b}");
            add(
                format!("{bl}.conv_dw.weight"),
                vec![dim, 1, c.kernel, c.kernel],
            );
            add(format!("{bl}.conv_dw.bias"), vec![dim]);
            add(format!("{bl}.norm.weight"), vec![dim]);
            add(format!("{bl}.norm.bias"), vec![dim]);
            add(format!("{bl}.mlp.fc1.weight"), vec![hidden, dim]);
            add(format!("{bl}.mlp.fc1.bias"), vec![hidden]);
            add(format!("{bl}.mlp.fc2.weight"), vec![dim, hidden]);
            add(format!("{bl}.mlp.fc2.bias"), vec![dim]);
            add(format!("{bl}.gamma"), vec![dim]);
        }
    }
    let last = c.dims[c.dims.len() - 1];
    add(format!("{t}.head.norm.weight"), vec![last]);
    add(format!("{t}.head.norm.bias"), vec![last]);
    add(
        "visual.head.mlp.fc1.weight".into(),
        vec![c.head_hidden, last],
    );
    add("visual.head.mlp.fc1.bias".into(), vec![c.head_hidden]);
    add(
        "visual.head.mlp.fc2.weight".into(),
        vec![c.embed, c.head_hidden],
    );
    if c.head_fc2_bias {
        add("visual.head.mlp.fc2.bias".into(), vec![c.embed]);
    }
    let w = c.text_width;
    add("token_embedding.weight".into(), vec![c.vocab, w]);
    add("positional_embedding".into(), vec![c.context, w]);
    for i in 0..c.text_layers {
        let r = format!("transformer.resblocks.{i}");
        add(format!("{r}.ln_1.weight"), vec![w]);
        add(format!("{r}.ln_1.bias"), vec![w]);
        add(format!("{r}.attn.in_proj_weight"), vec![3 * w, w]);
        add(format!("{r}.attn.in_proj_bias"), vec![3 * w]);
        add(format!("{r}.attn.out_proj.weight"), vec![w, w]);
        add(format!("{r}.attn.out_proj.bias"), vec![w]);
        add(format!("{r}.ln_2.weight"), vec![w]);
        add(format!("{r}.ln_2.bias"), vec![w]);
        add(format!("{r}.mlp.c_fc.weight"), vec![c.text_mlp, w]);
        add(format!("{r}.mlp.c_fc.bias"), vec![c.text_mlp]);
        add(format!("{r}.mlp.c_proj.weight"), vec![w, c.text_mlp]);
        add(format!("{r}.mlp.c_proj.bias"), vec![w]);
    }
    add("ln_final.weight".into(), vec![w]);
    add("ln_final.bias".into(), vec![w]);
    add("text_projection".into(), vec![w, c.embed]);
    specs
}

/// What a writer of a complete open_clip state dict adds to [`clip_tensors`].
pub fn write_order(c: &ClipConfig) -> Vec<TensorSpec> {
    let mut specs = clip_tensors(c);
    specs.push(TensorSpec {
        name: "logit_scale".into(),
        shape: vec![],
        required: false,
    });
    specs
}

/// An open weights file: its tensors' shapes (a `module.` prefix stripped) and its reader.
struct Weights {
    file: String,
    shapes: BTreeMap<String, Vec<usize>>,
    prefix: &'static str,
    reader: Reader,
}

enum Reader {
    Safetensors(SafetensorsFile),
    Torch(TorchCheckpoint),
}

impl Weights {
    fn open(path: &Path, file: &str) -> Result<Self, ModelFileError> {
        let (raw, reader) = if file.ends_with(".safetensors") {
            let f = SafetensorsFile::open(path, file)?;
            let shapes = f
                .entries()
                .iter()
                .map(|(k, e)| (k.clone(), e.shape.clone()))
                .collect::<BTreeMap<_, _>>();
            (shapes, Reader::Safetensors(f))
        } else {
            let f = TorchCheckpoint::open(path, file)?;
            (f.shapes(), Reader::Torch(f))
        };
        let prefixed = !raw.is_empty() && raw.keys().all(|k| k.starts_with("module."));
        let prefix = if prefixed { "module." } else { "" };
        let shapes = raw
            .into_iter()
            .map(|(k, v)| (k[prefix.len()..].to_string(), v))
            .collect();
        Ok(Self {
            file: file.to_string(),
            shapes,
            prefix,
            reader,
        })
    }

    fn shape(&self, name: &str) -> Option<&Vec<usize>> {
        self.shapes.get(name)
    }

    fn missing(&self, name: &str, expected: &[usize]) -> ModelFileError {
        ModelFileError::MissingTensor {
            file: self.file.clone(),
            name: name.to_string(),
            expected: expected.into(),
        }
    }

    fn check(&self, spec: &TensorSpec) -> Result<(), ModelFileError> {
        match self.shape(&spec.name) {
            None => Err(self.missing(&spec.name, &spec.shape)),
            Some(found) if *found != spec.shape => Err(ModelFileError::WrongShape {
                file: self.file.clone(),
                name: spec.name.clone(),
                expected: spec.shape.as_slice().into(),
                found: found.as_slice().into(),
            }),
            Some(_) => Ok(()),
        }
    }

    fn tensor(&self, name: &str) -> Result<Tensor, ModelFileError> {
        let full = format!("{}{name}", self.prefix);
        let found = match &self.reader {
            Reader::Safetensors(f) => f.tensor(&full)?,
            Reader::Torch(f) => f.tensor(&full)?,
        };
        found.ok_or_else(|| self.missing(name, &[]))
    }

    /// A dimension of `name`'s shape, or a typed error naming what was expected.
    fn dim(&self, name: &str, axis: usize, expected: &[usize]) -> Result<usize, ModelFileError> {
        let shape = self
            .shape(name)
            .ok_or_else(|| self.missing(name, expected))?;
        match shape.get(axis) {
            Some(&d) if d > 0 && shape.len() == expected.len() => Ok(d),
            _ => Err(ModelFileError::WrongShape {
                file: self.file.clone(),
                name: name.to_string(),
                expected: expected.into(),
                found: shape.as_slice().into(),
            }),
        }
    }

    fn count(&self, name: impl Fn(usize) -> String) -> usize {
        (0..)
            .take_while(|&i| self.shapes.contains_key(&name(i)))
            .count()
    }

    fn bad(&self, key: &str, problem: String) -> ModelFileError {
        ModelFileError::BadConfig {
            file: self.file.clone(),
            key: key.to_string(),
            problem,
        }
    }

    /// The dimensions, read from the shapes (`text_head_width` splits the text width into
    /// heads: the real model's 64 gives 12).
    fn config(&self, text_head_width: usize) -> Result<ClipConfig, ModelFileError> {
        let t = "visual.trunk";
        let real = |d: usize| [d, 3, 4, 4];
        let stem_name = format!("{t}.stem.0.weight");
        let stem_patch = self.dim(&stem_name, 2, &real(192))?;
        let stages = self.count(|s| format!("{t}.stages.{s}.blocks.0.conv_dw.weight"));
        if stages == 0 {
            let name = format!("{t}.stages.0.blocks.0.conv_dw.weight");
            return Err(self.missing(&name, &[192, 1, 7, 7]));
        }
        let (mut dims, mut depths, mut mlp_hidden) = (vec![], vec![], vec![]);
        for s in 0..stages {
            let dw = format!("{t}.stages.{s}.blocks.0.conv_dw.weight");
            dims.push(self.dim(&dw, 0, &[192, 1, 7, 7])?);
            depths.push(self.count(|b| format!("{t}.stages.{s}.blocks.{b}.conv_dw.weight")));
            let fc1 = format!("{t}.stages.{s}.blocks.0.mlp.fc1.weight");
            mlp_hidden.push(self.dim(&fc1, 0, &[768, 192])?);
        }
        let kernel = self.dim(
            &format!("{t}.stages.0.blocks.0.conv_dw.weight"),
            2,
            &[192, 1, 7, 7],
        )?;
        let downsample = if stages > 1 {
            self.dim(
                &format!("{t}.stages.1.downsample.1.weight"),
                2,
                &[384, 192, 2, 2],
            )?
        } else {
            2
        };
        let head_hidden = self.dim("visual.head.mlp.fc1.weight", 0, &[1536, 1536])?;
        let embed = self.dim("visual.head.mlp.fc2.weight", 0, &[768, 1536])?;
        let head_fc2_bias = self.shapes.contains_key("visual.head.mlp.fc2.bias");
        let vocab = self.dim("token_embedding.weight", 0, &[49408, 768])?;
        let text_width = self.dim("token_embedding.weight", 1, &[49408, 768])?;
        let context = self.dim("positional_embedding", 0, &[77, 768])?;
        let text_layers = self.count(|i| format!("transformer.resblocks.{i}.ln_1.weight"));
        let text_mlp = if text_layers > 0 {
            self.dim("transformer.resblocks.0.mlp.c_fc.weight", 0, &[3072, 768])?
        } else {
            0
        };
        if text_head_width == 0 || text_width % text_head_width != 0 {
            return Err(self.bad(
                "text heads",
                format!("head width {text_head_width} does not divide the text width {text_width}"),
            ));
        }
        if kernel % 2 == 0 || stem_patch == 0 || downsample == 0 {
            return Err(self.bad(
                "visual.trunk",
                format!("kernel {kernel}, stem patch {stem_patch}, downsample {downsample}"),
            ));
        }
        Ok(ClipConfig {
            stem_patch,
            kernel,
            dims,
            depths,
            mlp_hidden,
            downsample,
            head_hidden,
            head_fc2_bias,
            embed,
            text_width,
            text_layers,
            text_heads: text_width / text_head_width,
            text_mlp,
            context,
            vocab,
        })
    }
}

/// Loads the model from `models_dir` (the safetensors file when present, else the `.bin`).
pub fn load(models: &ModelsDir) -> Result<ConvnextClip, ModelFileError> {
    let file = if models.path(CLIP_SAFETENSORS).is_file() {
        CLIP_SAFETENSORS
    } else if models.path(CLIP_BIN).is_file() {
        CLIP_BIN
    } else {
        return Err(ModelFileError::MissingFile {
            file: CLIP_SAFETENSORS.to_string(),
            path: models.path(CLIP_SAFETENSORS),
            download: download_command()
                .replace("<models_dir>", &models.root.display().to_string()),
        });
    };
    load_file(&models.path(file), file, TEXT_HEAD_WIDTH)
}

/// Loads the model from one weights file; `file` names it in errors.
pub fn load_file(
    path: &Path,
    file: &str,
    text_head_width: usize,
) -> Result<ConvnextClip, ModelFileError> {
    let w = Weights::open(path, file)?;
    let config = w.config(text_head_width)?;
    for spec in clip_tensors(&config) {
        w.check(&spec)?;
    }
    let vec = |name: String| w.tensor(&name).map(|t| t.data);
    let norm = |prefix: &str, eps: f32| -> Result<LayerNorm, ModelFileError> {
        Ok(LayerNorm {
            weight: vec(format!("{prefix}.weight"))?,
            bias: vec(format!("{prefix}.bias"))?,
            eps,
        })
    };
    // A Linear (or a k = s conv flattened to one), with or without its bias.
    let linear = |prefix: &str, bias: bool| -> Result<Linear, ModelFileError> {
        let mut weight = w.tensor(&format!("{prefix}.weight"))?;
        let out = weight.shape[0];
        weight.shape = vec![out, weight.numel() / out.max(1)];
        Ok(Linear {
            weight,
            bias: if bias {
                Some(vec(format!("{prefix}.bias"))?)
            } else {
                None
            },
        })
    };
    let t = "visual.trunk";
    let mut stages = Vec::with_capacity(config.dims.len());
    for s in 0..config.dims.len() {
        let st = format!("{t}.stages.{s}");
        let downsample = if s > 0 {
            Some((
                norm(&format!("{st}.downsample.0"), CONVNEXT_NORM_EPS)?,
                linear(&format!("{st}.downsample.1"), true)?,
            ))
        } else {
            None
        };
        let mut blocks = Vec::with_capacity(config.depths[s]);
        for b in 0..config.depths[s] {
            let bl = format!("{st}.blocks.{b}");
            blocks.push(ConvnextBlock {
                dw_weight: vec(format!("{bl}.conv_dw.weight"))?,
                dw_bias: vec(format!("{bl}.conv_dw.bias"))?,
                norm: norm(&format!("{bl}.norm"), CONVNEXT_NORM_EPS)?,
                fc1: linear(&format!("{bl}.mlp.fc1"), true)?,
                fc2: linear(&format!("{bl}.mlp.fc2"), true)?,
                gamma: vec(format!("{bl}.gamma"))?,
            });
        }
        stages.push(ConvnextStage { downsample, blocks });
    }
    let visual = ConvnextTower {
        stem: linear(&format!("{t}.stem.0"), true)?,
        stem_norm: norm(&format!("{t}.stem.1"), CONVNEXT_NORM_EPS)?,
        stages,
        head_norm: norm(&format!("{t}.head.norm"), CONVNEXT_NORM_EPS)?,
        proj_fc1: linear("visual.head.mlp.fc1", true)?,
        proj_fc2: linear("visual.head.mlp.fc2", config.head_fc2_bias)?,
    };
    let layers = (0..config.text_layers)
        .map(|i| {
            let r = format!("transformer.resblocks.{i}");
            Ok(TextLayer {
                ln_1: norm(&format!("{r}.ln_1"), TEXT_NORM_EPS)?,
                in_proj: Linear {
                    weight: w.tensor(&format!("{r}.attn.in_proj_weight"))?,
                    bias: Some(vec(format!("{r}.attn.in_proj_bias"))?),
                },
                out_proj: linear(&format!("{r}.attn.out_proj"), true)?,
                ln_2: norm(&format!("{r}.ln_2"), TEXT_NORM_EPS)?,
                c_fc: linear(&format!("{r}.mlp.c_fc"), true)?,
                c_proj: linear(&format!("{r}.mlp.c_proj"), true)?,
            })
        })
        .collect::<Result<Vec<_>, ModelFileError>>()?;
    let text = TextTower {
        token_embedding: w.tensor("token_embedding.weight")?,
        positional_embedding: w.tensor("positional_embedding")?,
        layers,
        heads: config.text_heads,
        ln_final: norm("ln_final", TEXT_NORM_EPS)?,
        projection: w.tensor("text_projection")?,
    };
    Ok(ConvnextClip {
        config,
        visual,
        text,
    })
}
