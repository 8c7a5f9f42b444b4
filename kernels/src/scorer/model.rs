//! The typed weights of the scorer's networks, as the math reads them: row-major `f32`,
//! PyTorch's layouts (`Linear` weight `[out, in]`, `Conv2d` weight `[out, in, k, k]`).
//! [`crate::scorer::files`] fills them from the upstream files; the CPU reference and the GPU
//! runtime both read them.

/// A dense tensor: row-major `f32` values and their shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// `y = x Wᵀ + b` (`torch.nn.Linear`): `weight` is `[out, in]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Vec<f32>>,
}

impl Linear {
    pub fn in_features(&self) -> usize {
        self.weight.shape[1]
    }
    pub fn out_features(&self) -> usize {
        self.weight.shape[0]
    }
}

/// `torch.nn.LayerNorm` over the last dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNorm {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub eps: f32,
}

/// `torch.nn.Conv2d` with square kernel, stride and zero padding; `weight` is
/// `[out, in, k, k]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Vec<f32>>,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    pub fn out_channels(&self) -> usize {
        self.weight.shape[0]
    }
    pub fn in_channels(&self) -> usize {
        self.weight.shape[1]
    }
    pub fn kernel(&self) -> usize {
        self.weight.shape[2]
    }
}

/// The DINOv2 hyper-parameters the forward pass needs (HF `Dinov2Config`, `config.json`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dinov2Config {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// `hidden_size × mlp_ratio`.
    pub mlp_hidden: usize,
    pub patch_size: usize,
    pub image_size: usize,
    pub layer_norm_eps: f32,
}

impl Dinov2Config {
    /// Patches per side at the validator's input size (518 / 14 = 37).
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
    /// Tokens per image: CLS + grid².
    pub fn tokens(&self) -> usize {
        1 + self.grid() * self.grid()
    }
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// One encoder layer of HF `Dinov2Layer` (no SwiGLU, no registers).
#[derive(Debug, Clone, PartialEq)]
pub struct VitLayer {
    pub norm1: LayerNorm,
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    /// `attention.output.dense`.
    pub output: Linear,
    /// `layer_scale1.lambda1`.
    pub layer_scale1: Vec<f32>,
    pub norm2: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    /// `layer_scale2.lambda1`.
    pub layer_scale2: Vec<f32>,
}

/// HF `Dinov2Model` (facebook/dinov2-small), with the quality scorer's fine-tuned tensors
/// (`backbone.*`) applied over the facebook ones where the scorer file has them.
#[derive(Debug, Clone, PartialEq)]
pub struct Dinov2 {
    pub config: Dinov2Config,
    /// `embeddings.cls_token`, `[1, 1, hidden]`.
    pub cls_token: Vec<f32>,
    /// `embeddings.position_embeddings`, `[1, tokens, hidden]`, flattened.
    pub position_embeddings: Vec<f32>,
    /// `embeddings.patch_embeddings.projection`: `[hidden, 3, patch, patch]`, stride = patch.
    pub patch_embed: Conv2d,
    pub layers: Vec<VitLayer>,
    /// `layernorm`: the final norm; `last_hidden_state` is after it.
    pub final_norm: LayerNorm,
}

/// The validator's quality model: DINOv2 and `score_head` (`Linear(hidden → 1)`) on the CLS
/// token of `last_hidden_state`; per-view score = sigmoid(logit).
#[derive(Debug, Clone, PartialEq)]
pub struct QualityModel {
    pub backbone: Dinov2,
    pub score_head: Linear,
}

/// LPIPS (v0.1, `net="alex"`) as torchmetrics builds it: torchvision AlexNet's five conv
/// layers (`features.0/3/6/8/10`, ReLU after each, 3×3 stride-2 max-pool before the 2nd and
/// 3rd) and one 1×1 linear layer without bias per tapped layer (`lin0..lin4`).
#[derive(Debug, Clone, PartialEq)]
pub struct Lpips {
    pub convs: [Conv2d; 5],
    /// `linK.model.1.weight`, `[1, channels_K, 1, 1]`, flattened to `channels_K`.
    pub lins: [Vec<f32>; 5],
}

/// Every network the quality part of the score needs, loaded once per worker.
#[derive(Debug, Clone, PartialEq)]
pub struct ScorerModels {
    pub quality: QualityModel,
    pub lpips: Lpips,
}
