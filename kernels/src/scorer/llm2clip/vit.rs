//! The CPU reference of `LLM2CLIPModel.get_image_features` (transformers 4.44.2
//! `models/clip/modeling_clip.py`, `CLIPVisionTransformer`, as the hub's remote code builds
//! its vision side) on the service's preprocessing of one HWC `u8` image
//! (`alignment_scorer.py:139-147`): `/255`, bicubic to the model's side (`F.interpolate`,
//! `align_corners=False`, no antialias, no clamp), `Normalize(mean×3, std×3)`; then the
//! embeddings (class token + bias-free patch conv + position embeddings), `pre_layrnorm`,
//! the pre-norm encoder layers (LN → attention with q/k/v/out biases → residual; LN → fc1 →
//! quick GELU → fc2 → residual), `post_layernorm` on the class token, the bias-free
//! `visual_projection`; and the L2 normalisation of `compute_image_embeddings`.
//!
//! Numerics: the service runs all of this in fp16 (weights loaded with `torch_dtype=float16`,
//! input cast to fp16 before the resize); this reference is `f32` storage and arithmetic (the
//! crate's [`ops`](crate::scorer::cpu::ops)), so it differs from the service by fp16 rounding,
//! not by formula. CLIP scales `q` by `head_dim^-0.5` before `q·kᵀ` where `ops::attention`
//! divides the scores by `√head_dim`; for the power-of-four head sizes in use (64, and 16 in
//! the tiny models) both are exact powers of two, so the values are identical.

use rayon::prelude::*;

use super::{
    files::{Activation, ClipLayer, Llm2ClipVision},
    Llm2ClipError,
};
use crate::scorer::cpu::{
    ops::{attention, conv2d, gelu_scalar, layer_norm, linear, FeatureMap},
    resize::bicubic,
};

/// OpenAI CLIP's normalisation (`alignment_scorer.py:112-114`), which the service multiplies
/// by 3 (`VALIDATOR_SCORING.md` §6).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
// (0.26862954, 0.26130258, 0.27577711) upstream; these are the nearest f32 values.
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
/// The service's factor on both.
pub const NORMALISE_FACTOR: f32 = 3.0;

/// `x · sigmoid(1.702 x)` in `f32` (transformers `QuickGELUActivation`).
pub fn quick_gelu_scalar(x: f32) -> f32 {
    x * (1.0 / (1.0 + (-(1.702f32 * x)).exp()))
}

fn activate(x: &mut [f32], act: Activation) {
    match act {
        Activation::QuickGelu => x.iter_mut().for_each(|v| *v = quick_gelu_scalar(*v)),
        Activation::Gelu => x.iter_mut().for_each(|v| *v = gelu_scalar(*v)),
    }
}

/// The service's preprocessing of one HWC `u8` RGB image to the `side × side` CHW input:
/// `/255` (f32), bicubic resize, then `(x − 3m) / (3s)` per channel.
pub fn preprocess(rgb8: &[u8], width: usize, height: usize, side: usize) -> FeatureMap {
    let x = FeatureMap::from_rgb8(rgb8, width, height);
    let mut x = bicubic(&x, side, side);
    let n = x.plane_len();
    for (c, plane) in x.data.chunks_exact_mut(n).enumerate() {
        // torch: `mean * 3` and `std * 3` are f32 tensors; Normalize subtracts then divides.
        let (m, s) = (
            CLIP_MEAN[c] * NORMALISE_FACTOR,
            CLIP_STD[c] * NORMALISE_FACTOR,
        );
        for v in plane {
            *v = (*v - m) / s;
        }
    }
    x
}

/// `CLIPVisionEmbeddings.forward` then `pre_layrnorm`: `tokens × hidden`.
fn embed(model: &Llm2ClipVision, image: &FeatureMap) -> Result<Vec<f32>, Llm2ClipError> {
    let c = &model.config;
    let hidden = c.hidden_size;
    if image.channels != 3 || image.height != c.image_size || image.width != c.image_size {
        return Err(Llm2ClipError::Input(format!(
            "vision input of {}×{}×{}, the model takes 3×{side}×{side}",
            image.channels,
            image.height,
            image.width,
            side = c.image_size
        )));
    }
    let n = c.grid() * c.grid();
    let tokens = 1 + n;
    // `patch_embedding(pixels).flatten(2).transpose(1, 2)`: [hidden, grid²] → [grid², hidden].
    let patches = conv2d(image, &model.patch_embedding);
    let mut x = vec![0f32; tokens * hidden];
    for (j, o) in x[..hidden].iter_mut().enumerate() {
        *o = model.class_embedding[j] + model.position_embedding[j];
    }
    for t in 0..n {
        let row = &mut x[(1 + t) * hidden..][..hidden];
        let pos = &model.position_embedding[(1 + t) * hidden..][..hidden];
        for (j, (o, &pe)) in row.iter_mut().zip(pos).enumerate() {
            *o = patches.data[j * n + t] + pe;
        }
    }
    Ok(layer_norm(&x, &model.pre_layrnorm))
}

/// One `CLIPEncoderLayer` on `x` (`tokens × hidden`), returning its first `rows_out` rows
/// (keys and values still come from every token).
fn layer(
    l: &ClipLayer,
    model: &Llm2ClipVision,
    x: &[f32],
    tokens: usize,
    rows_out: usize,
) -> Vec<f32> {
    let c = &model.config;
    let hidden = c.hidden_size;
    let xn = layer_norm(x, &l.layer_norm1);
    let k = linear(&xn, tokens, &l.k_proj);
    let v = linear(&xn, tokens, &l.v_proj);
    let q = linear(&xn[..rows_out * hidden], rows_out, &l.q_proj);
    let ctx = attention(&q, rows_out, &k, &v, tokens, hidden, c.num_attention_heads);
    let attn = linear(&ctx, rows_out, &l.out_proj);
    let mut h: Vec<f32> = attn
        .iter()
        .zip(&x[..rows_out * hidden])
        .map(|(&a, &r)| r + a)
        .collect();
    let hn = layer_norm(&h, &l.layer_norm2);
    let mut m = linear(&hn, rows_out, &l.fc1);
    activate(&mut m, c.activation);
    let m = linear(&m, rows_out, &l.fc2);
    for (o, &mv) in h.iter_mut().zip(&m) {
        *o += mv;
    }
    h
}

/// `get_image_features` of one preprocessed image: `visual_projection(post_layernorm(CLS))`,
/// not normalised. The last layer runs its query, MLP and residual on the class row only
/// (rows are independent after attention).
pub fn image_features(
    model: &Llm2ClipVision,
    image: &FeatureMap,
) -> Result<Vec<f32>, Llm2ClipError> {
    let hidden = model.config.hidden_size;
    let mut x = embed(model, image)?;
    let tokens = model.config.tokens();
    let last = model.layers.len().saturating_sub(1);
    for (i, l) in model.layers.iter().enumerate() {
        let rows = if i == last { 1 } else { tokens };
        x = layer(l, model, &x, tokens, rows);
    }
    x.truncate(hidden);
    let pooled = layer_norm(&x, &model.post_layernorm);
    Ok(linear(&pooled, 1, &model.visual_projection))
}

/// `v / ‖v‖` (`embeddings /= embeddings.norm(dim=-1, keepdim=True)`); the norm is summed in
/// `f64`. A zero vector stays zero-over-zero (NaN), as in torch.
pub fn l2_normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt() as f32;
    v.iter().map(|&x| x / norm).collect()
}

/// The normalised embedding of one HWC `u8` image (any size; resized as the service does).
pub fn embedding(
    model: &Llm2ClipVision,
    rgb8: &[u8],
    width: usize,
    height: usize,
) -> Result<Vec<f32>, Llm2ClipError> {
    if width == 0
        || height == 0
        || width.checked_mul(height).and_then(|n| n.checked_mul(3)) != Some(rgb8.len())
    {
        return Err(Llm2ClipError::Input(format!(
            "{} bytes for a {width}×{height} RGB image",
            rgb8.len()
        )));
    }
    let x = preprocess(rgb8, width, height, model.config.image_size);
    image_features(model, &x).map(|f| l2_normalised(&f))
}

/// The normalised embeddings of several images at once (rayon over images, order kept).
pub fn embeddings(
    model: &Llm2ClipVision,
    images: &[(&[u8], usize, usize)],
) -> Result<Vec<Vec<f32>>, Llm2ClipError> {
    images
        .par_iter()
        .map(|&(rgb8, w, h)| embedding(model, rgb8, w, h))
        .collect()
}

/// Checks that the typed weights fit together (what [`super::files::load`] guarantees, for
/// models built in code).
pub fn check_model(model: &Llm2ClipVision) -> Result<(), Llm2ClipError> {
    let c = &model.config;
    let h = c.hidden_size;
    let bad = |what: String| Err(Llm2ClipError::Model(what));
    if h == 0 || c.num_attention_heads == 0 || !h.is_multiple_of(c.num_attention_heads) {
        return bad(format!("{} heads for width {h}", c.num_attention_heads));
    }
    if c.patch_size == 0 || !c.image_size.is_multiple_of(c.patch_size) || c.image_size == 0 {
        return bad(format!("image {} for patch {}", c.image_size, c.patch_size));
    }
    if model.class_embedding.len() != h || model.position_embedding.len() != c.tokens() * h {
        return bad("embedding sizes do not match the width and grid".into());
    }
    if model.patch_embedding.weight.shape != [h, 3, c.patch_size, c.patch_size]
        || model.patch_embedding.stride != c.patch_size
        || model.patch_embedding.padding != 0
    {
        return bad(format!(
            "patch embedding {:?}",
            model.patch_embedding.weight.shape
        ));
    }
    let norm_ok = |n: &crate::scorer::model::LayerNorm| n.weight.len() == h && n.bias.len() == h;
    let lin_ok = |l: &crate::scorer::model::Linear, out: usize, inp: usize| {
        l.weight.shape == [out, inp]
            && l.weight.data.len() == out * inp
            && l.bias.as_ref().is_none_or(|b| b.len() == out)
    };
    if !norm_ok(&model.pre_layrnorm) || !norm_ok(&model.post_layernorm) {
        return bad("pre/post LayerNorm width".into());
    }
    if model.layers.len() != c.num_hidden_layers || model.layers.is_empty() {
        return bad(format!(
            "{} layers, config says {}",
            model.layers.len(),
            c.num_hidden_layers
        ));
    }
    let m = c.intermediate_size;
    for (i, l) in model.layers.iter().enumerate() {
        let ok = norm_ok(&l.layer_norm1)
            && norm_ok(&l.layer_norm2)
            && [&l.q_proj, &l.k_proj, &l.v_proj, &l.out_proj]
                .iter()
                .all(|p| lin_ok(p, h, h))
            && lin_ok(&l.fc1, m, h)
            && lin_ok(&l.fc2, h, m);
        if !ok {
            return bad(format!("layer {i} shapes"));
        }
    }
    if !lin_ok(&model.visual_projection, c.projection_dim, h) {
        return bad(format!(
            "visual_projection {:?}",
            model.visual_projection.weight.shape
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_gelu_matches_its_formula() {
        assert_eq!(quick_gelu_scalar(0.0), 0.0);
        let x = 1.3f32;
        let want = f64::from(x) / (1.0 + (-1.702 * f64::from(x)).exp());
        assert!((f64::from(quick_gelu_scalar(x)) - want).abs() < 1e-6);
        assert!(quick_gelu_scalar(-20.0).abs() < 1e-12);
    }

    #[test]
    fn preprocess_of_white_is_the_normalised_one() {
        let img = vec![255u8; 3 * 4 * 4];
        let x = preprocess(&img, 4, 4, 8);
        for c in 0..3 {
            let want = (1.0 - 3.0 * CLIP_MEAN[c]) / (3.0 * CLIP_STD[c]);
            assert!(
                x.plane(c).iter().all(|v| (v - want).abs() < 1e-5),
                "channel {c}"
            );
        }
    }
}
