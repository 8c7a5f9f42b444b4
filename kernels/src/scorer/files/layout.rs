//! The one owner of the upstream file names, their download commands, and the tensor names and
//! shapes each file must hold for a given [`Dinov2Config`] or AlexNet widths: the loader checks
//! against these lists, and the tiny-model writer (`splatfleet-tests`) writes from them, so the
//! two cannot drift apart.
//!
//! Facts (upstream):
//! - HF transformers `modeling_dinov2.py`: `Dinov2Embeddings` (`cls_token` `[1, 1, h]`,
//!   `mask_token` `[1, h]`, `position_embeddings` `[1, patches + 1, h]`,
//!   `patch_embeddings.projection` Conv2d(3 → h, k = s = patch)), `Dinov2Layer` (`norm1`,
//!   `attention.attention.{query,key,value}`, `attention.output.dense`, `layer_scale1.lambda1`,
//!   `norm2`, `mlp.fc1/fc2`, `layer_scale2.lambda1`), the final `layernorm`.
//! - three-gen-subnet `validation/engine/models/quality_model.py` (5fc61f1): `DINOv2Net` with
//!   `backbone`, `emb_head` = Linear(h → 256), `score_head` = Linear(h → 1).
//! - torchvision `alexnet.py`: `features.{0,3,6,8,10}` Conv2d with kernels 11/5/3/3/3,
//!   strides 4/1/1/1/1 and paddings 2/2/1/1/1; widths 64/192/384/256/256.
//! - torchmetrics LPIPS (v0.1 `alex.pth`): `lin{0..4}.model.1.weight`, `[1, C_k, 1, 1]`.

use crate::scorer::model::Dinov2Config;

/// The DINOv2 folder, as `huggingface-cli download facebook/dinov2-small --local-dir` makes it.
pub const DINOV2_DIR: &str = "dinov2-small";
/// `dinov2-small/config.json`.
pub const DINOV2_CONFIG: &str = "dinov2-small/config.json";
/// `dinov2-small/model.safetensors`.
pub const DINOV2_WEIGHTS: &str = "dinov2-small/model.safetensors";
/// The validator's quality head (and any fine-tuned backbone tensors), HF `404-Gen/validation`.
pub const QUALITY_SCORER: &str = "quality_scorer.safetensors";
/// torchvision's AlexNet IMAGENET1K_V1 checkpoint.
pub const ALEXNET: &str = "alexnet-owt-7be5be79.pth";
/// torchmetrics' LPIPS v0.1 linear layers for `net="alex"`.
pub const LPIPS_ALEX: &str = "alex.pth";

/// Every file of a `models_dir`, relative to it.
pub const ALL_FILES: [&str; 5] = [
    DINOV2_CONFIG,
    DINOV2_WEIGHTS,
    QUALITY_SCORER,
    ALEXNET,
    LPIPS_ALEX,
];

/// The facebook/dinov2-small revision the validation service pins.
pub const DINOV2_REVISION: &str = "150c8e7bb7cef2d30ec31b13a517af14840ee3f7";
/// The 404-Gen/validation revision the validation service pins.
pub const QUALITY_REVISION: &str = "948bf06988b630681c7bc468aebf2bbe010856f7";

/// The shell command that puts `file` (one of [`ALL_FILES`]) into `<models_dir>`.
pub fn download_command(file: &str) -> String {
    match file {
        DINOV2_CONFIG | DINOV2_WEIGHTS => format!(
            "huggingface-cli download facebook/dinov2-small --revision {DINOV2_REVISION} \
             --local-dir <models_dir>/{DINOV2_DIR}"
        ),
        QUALITY_SCORER => format!(
            "huggingface-cli download 404-Gen/validation {QUALITY_SCORER} --revision \
             {QUALITY_REVISION} --local-dir <models_dir>"
        ),
        ALEXNET => format!(
            "curl -L -o <models_dir>/{ALEXNET} https://download.pytorch.org/models/{ALEXNET} \
             (or copy it from ~/.cache/torch/hub/checkpoints/ after \
             torchvision.models.alexnet(weights=\"IMAGENET1K_V1\"))"
        ),
        LPIPS_ALEX => format!(
            "pip download --no-deps torchmetrics==1.5.1 -d /tmp/tm && unzip -j \
             /tmp/tm/torchmetrics-1.5.1-py3-none-any.whl \
             torchmetrics/functional/image/lpips_models/{LPIPS_ALEX} -d <models_dir>"
        ),
        _ => format!("(no known download for {file})"),
    }
}

/// One tensor a file must (or may) hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    /// Whether the loader needs it (`mask_token` is written but never read).
    pub required: bool,
}

impl TensorSpec {
    fn new(name: impl Into<String>, shape: &[usize]) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec(),
            required: true,
        }
    }
}

/// The prefix a `Dinov2ForImageClassification`-style checkpoint puts before the names.
pub const DINOV2_OPTIONAL_PREFIX: &str = "dinov2.";
/// The prefix of the fine-tuned backbone tensors in [`QUALITY_SCORER`].
pub const BACKBONE_PREFIX: &str = "backbone.";
/// `DINOv2Net.emb_head`'s width (unused by the score; written by the tiny writer).
pub const EMB_HEAD_DIM: usize = 256;

/// The names of one encoder layer's tensors.
pub fn layer_prefix(i: usize) -> String {
    format!("encoder.layer.{i}.")
}

/// Every tensor of HF `Dinov2Model` for `config`, in module order (no prefix).
pub fn dinov2_tensors(config: &Dinov2Config, qkv_bias: bool) -> Vec<TensorSpec> {
    let h = config.hidden_size;
    let m = config.mlp_hidden;
    let p = config.patch_size;
    let mut out = vec![
        TensorSpec::new("embeddings.cls_token", &[1, 1, h]),
        TensorSpec {
            required: false,
            ..TensorSpec::new("embeddings.mask_token", &[1, h])
        },
        TensorSpec::new("embeddings.position_embeddings", &[1, config.tokens(), h]),
        TensorSpec::new(
            "embeddings.patch_embeddings.projection.weight",
            &[h, 3, p, p],
        ),
        TensorSpec::new("embeddings.patch_embeddings.projection.bias", &[h]),
    ];
    for i in 0..config.num_hidden_layers {
        let l = layer_prefix(i);
        out.push(TensorSpec::new(format!("{l}norm1.weight"), &[h]));
        out.push(TensorSpec::new(format!("{l}norm1.bias"), &[h]));
        for qkv in ["query", "key", "value"] {
            out.push(TensorSpec::new(
                format!("{l}attention.attention.{qkv}.weight"),
                &[h, h],
            ));
            if qkv_bias {
                out.push(TensorSpec::new(
                    format!("{l}attention.attention.{qkv}.bias"),
                    &[h],
                ));
            }
        }
        out.push(TensorSpec::new(
            format!("{l}attention.output.dense.weight"),
            &[h, h],
        ));
        out.push(TensorSpec::new(
            format!("{l}attention.output.dense.bias"),
            &[h],
        ));
        out.push(TensorSpec::new(format!("{l}layer_scale1.lambda1"), &[h]));
        out.push(TensorSpec::new(format!("{l}norm2.weight"), &[h]));
        out.push(TensorSpec::new(format!("{l}norm2.bias"), &[h]));
        out.push(TensorSpec::new(format!("{l}mlp.fc1.weight"), &[m, h]));
        out.push(TensorSpec::new(format!("{l}mlp.fc1.bias"), &[m]));
        out.push(TensorSpec::new(format!("{l}mlp.fc2.weight"), &[h, m]));
        out.push(TensorSpec::new(format!("{l}mlp.fc2.bias"), &[h]));
        out.push(TensorSpec::new(format!("{l}layer_scale2.lambda1"), &[h]));
    }
    out.push(TensorSpec::new("layernorm.weight", &[h]));
    out.push(TensorSpec::new("layernorm.bias", &[h]));
    out
}

/// The tensors of [`QUALITY_SCORER`] the loader needs: `score_head` (`emb_head.*` and
/// `backbone.*` are optional).
pub fn quality_head_tensors(hidden: usize) -> Vec<TensorSpec> {
    vec![
        TensorSpec::new("score_head.weight", &[1, hidden]),
        TensorSpec::new("score_head.bias", &[1]),
    ]
}

/// `emb_head` (`Linear(hidden → 256)`): present in the upstream file, unused by the score.
pub fn emb_head_tensors(hidden: usize) -> Vec<TensorSpec> {
    vec![
        TensorSpec {
            required: false,
            ..TensorSpec::new("emb_head.weight", &[EMB_HEAD_DIM, hidden])
        },
        TensorSpec {
            required: false,
            ..TensorSpec::new("emb_head.bias", &[EMB_HEAD_DIM])
        },
    ]
}

/// One of AlexNet's five conv layers: its index in `features`, kernel, stride, padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlexConv {
    pub index: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

/// torchvision AlexNet's `features` convs.
pub const ALEXNET_CONVS: [AlexConv; 5] = [
    AlexConv {
        index: 0,
        kernel: 11,
        stride: 4,
        padding: 2,
    },
    AlexConv {
        index: 3,
        kernel: 5,
        stride: 1,
        padding: 2,
    },
    AlexConv {
        index: 6,
        kernel: 3,
        stride: 1,
        padding: 1,
    },
    AlexConv {
        index: 8,
        kernel: 3,
        stride: 1,
        padding: 1,
    },
    AlexConv {
        index: 10,
        kernel: 3,
        stride: 1,
        padding: 1,
    },
];

/// torchvision AlexNet's conv widths (the real checkpoint's).
pub const ALEXNET_WIDTHS: [usize; 5] = [64, 192, 384, 256, 256];

/// `features.K.weight` / `features.K.bias` of conv `k` (0..5).
pub fn alexnet_conv_names(k: usize) -> (String, String) {
    let index = ALEXNET_CONVS.get(k).map_or(k, |c| c.index);
    (
        format!("features.{index}.weight"),
        format!("features.{index}.bias"),
    )
}

/// The conv tensors of AlexNet with the given widths (`classifier.*` is not listed: unused).
pub fn alexnet_tensors(widths: &[usize; 5]) -> Vec<TensorSpec> {
    let mut out = Vec::new();
    let mut in_ch = 3;
    for (k, conv) in ALEXNET_CONVS.iter().enumerate() {
        let (w, b) = alexnet_conv_names(k);
        out.push(TensorSpec::new(
            w,
            &[widths[k], in_ch, conv.kernel, conv.kernel],
        ));
        out.push(TensorSpec::new(b, &[widths[k]]));
        in_ch = widths[k];
    }
    out
}

/// `linK.model.1.weight`, LPIPS' 1×1 layer on tap `k`.
pub fn lpips_lin_name(k: usize) -> String {
    format!("lin{k}.model.1.weight")
}

/// The LPIPS linear tensors for the given AlexNet widths.
pub fn lpips_tensors(widths: &[usize; 5]) -> Vec<TensorSpec> {
    (0..5)
        .map(|k| TensorSpec::new(lpips_lin_name(k), &[1, widths[k], 1, 1]))
        .collect()
}
