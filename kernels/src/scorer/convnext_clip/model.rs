//! The typed weights of open_clip's `convnext_large_d` as the CPU forward reads them, and the
//! dimensions derived from a file ([`ClipConfig`]). Convolutions with stride = kernel (the
//! stem, the downsamples) are kept as their `[out, in·k·k]` matrix (PyTorch's `[out, in, k,
//! k]` weight, flattened), applied to `(c, ky, kx)`-ordered patches.

use crate::scorer::model::{LayerNorm, Linear, Tensor};

/// The dimensions of one model, read from its tensors' shapes (real: stem patch 4, kernel 7,
/// dims 192/384/768/1536, depths 3/3/27/3, MLP ×4, embed 768; text width 768, 16 layers,
/// 12 heads, context 77, vocabulary 49408).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipConfig {
    pub stem_patch: usize,
    pub kernel: usize,
    pub dims: Vec<usize>,
    pub depths: Vec<usize>,
    /// Hidden width of each stage's block MLP (`mlp.fc1` rows).
    pub mlp_hidden: Vec<usize>,
    /// Downsample kernel = stride between stages (timm: 2).
    pub downsample: usize,
    /// Hidden width of the image head's MLP (`visual.head.mlp.fc1` rows; real 1536).
    pub head_hidden: usize,
    /// Whether `visual.head.mlp.fc2` has a bias (`timm_proj_bias`; real: no).
    pub head_fc2_bias: bool,
    pub embed: usize,
    pub text_width: usize,
    pub text_layers: usize,
    pub text_heads: usize,
    pub text_mlp: usize,
    pub context: usize,
    pub vocab: usize,
}

/// timm's LayerNorm / LayerNorm2d default eps (ConvNeXt with `norm_eps=None`).
pub const CONVNEXT_NORM_EPS: f32 = 1e-6;
/// `nn.LayerNorm`'s default eps (open_clip's text `LayerNorm`).
pub const TEXT_NORM_EPS: f32 = 1e-5;

/// timm `ConvNeXtBlock` (conv_mlp = False): depthwise conv, channels-last LayerNorm, MLP,
/// layer scale `gamma`, residual.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvnextBlock {
    /// `conv_dw.weight` `[C, 1, k, k]`, flattened.
    pub dw_weight: Vec<f32>,
    pub dw_bias: Vec<f32>,
    pub norm: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    pub gamma: Vec<f32>,
}

/// timm `ConvNeXtStage`: an optional downsample (LayerNorm2d, then a k = s conv), then blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvnextStage {
    pub downsample: Option<(LayerNorm, Linear)>,
    pub blocks: Vec<ConvnextBlock>,
}

/// open_clip `TimmModel` over timm `convnext_large` with `timm_pool=""`, `timm_proj="mlp"`:
/// the trunk (stem, stages, the classifier head's avg-pool and LayerNorm2d, `fc` removed),
/// then `head.mlp` (fc1 with bias, exact GELU, fc2).
#[derive(Debug, Clone, PartialEq)]
pub struct ConvnextTower {
    /// `stem.0` as `[C0, 3·p·p]`.
    pub stem: Linear,
    pub stem_norm: LayerNorm,
    pub stages: Vec<ConvnextStage>,
    /// `trunk.head.norm`.
    pub head_norm: LayerNorm,
    pub proj_fc1: Linear,
    pub proj_fc2: Linear,
}

/// open_clip `ResidualAttentionBlock` (`ls_*` identity): pre-LN attention and MLP.
#[derive(Debug, Clone, PartialEq)]
pub struct TextLayer {
    pub ln_1: LayerNorm,
    /// `attn.in_proj_weight` `[3w, w]` and `attn.in_proj_bias`: q, k, v stacked.
    pub in_proj: Linear,
    pub out_proj: Linear,
    pub ln_2: LayerNorm,
    pub c_fc: Linear,
    pub c_proj: Linear,
}

/// open_clip's text tower as `CLIP` holds it (top-level names).
#[derive(Debug, Clone, PartialEq)]
pub struct TextTower {
    /// `token_embedding.weight` `[vocab, w]`.
    pub token_embedding: Tensor,
    /// `positional_embedding` `[context, w]`.
    pub positional_embedding: Tensor,
    pub layers: Vec<TextLayer>,
    pub heads: usize,
    pub ln_final: LayerNorm,
    /// `text_projection` `[w, embed]`, applied as `x @ text_projection`.
    pub projection: Tensor,
}

/// Both towers.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvnextClip {
    pub config: ClipConfig,
    pub visual: ConvnextTower,
    pub text: TextTower,
}
