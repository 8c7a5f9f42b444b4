//! HF `Dinov2Model`'s forward pass (transformers 4.44.2 `models/dinov2/modeling_dinov2.py`,
//! no registers, no SwiGLU) for one normalised CHW image: patch embedding, CLS token,
//! position embeddings at their stored grid, the pre-norm encoder layers with layer scale,
//! and the final LayerNorm (`last_hidden_state`).

use super::{
    ops::{attention, conv2d, gelu, layer_norm, linear, FeatureMap},
    ScoreError,
};
use crate::scorer::model::{Dinov2, VitLayer};

/// The embeddings (`Dinov2Embeddings.forward`): `cat(cls, patches) + position_embeddings`,
/// `tokens × hidden`. The stored position grid must be the input's: interpolation
/// (`interpolate_pos_encoding`, which HF skips when the patch counts match and the image is
/// square) is not implemented.
pub fn embed(model: &Dinov2, image: &FeatureMap) -> Result<Vec<f32>, ScoreError> {
    let hidden = model.config.hidden_size;
    let p = model.patch_embed.kernel();
    if image.channels != 3 || image.height != image.width || p == 0 || image.height < p {
        return Err(ScoreError::Image(format!(
            "DINOv2 input of {}×{}×{} (3 channels, square, at least one {p}-pixel patch)",
            image.channels, image.height, image.width
        )));
    }
    let grid = image.height / p;
    let tokens = 1 + grid * grid;
    if model.position_embeddings.len() != tokens * hidden {
        return Err(ScoreError::Model(format!(
            "DINOv2 position embeddings hold {} values, a {}-pixel input needs {tokens} tokens × \
             {hidden} (position interpolation is not implemented)",
            model.position_embeddings.len(),
            image.height
        )));
    }
    // `projection(pixel_values).flatten(2).transpose(1, 2)`: [hidden, grid²] → [grid², hidden].
    let patches = conv2d(image, &model.patch_embed);
    let n = grid * grid;
    let mut x = vec![0f32; tokens * hidden];
    for (j, (o, &pe)) in x[..hidden]
        .iter_mut()
        .zip(&model.position_embeddings)
        .enumerate()
    {
        *o = model.cls_token[j] + pe;
    }
    for t in 0..n {
        let row = &mut x[(1 + t) * hidden..][..hidden];
        let pos = &model.position_embeddings[(1 + t) * hidden..][..hidden];
        for (j, (o, &pe)) in row.iter_mut().zip(pos).enumerate() {
            *o = patches.data[j * n + t] + pe;
        }
    }
    Ok(x)
}

/// One `Dinov2Layer.forward` on `x` (`tokens × hidden`), returning only its first `rows_out`
/// rows (all keys and values are still computed from every token):
/// `h = x + ls1 ⊙ attn(norm1(x))`, `out = h + ls2 ⊙ fc2(gelu(fc1(norm2(h))))`.
fn layer(l: &VitLayer, heads: usize, x: &[f32], tokens: usize, rows_out: usize) -> Vec<f32> {
    let hidden = l.norm1.weight.len();
    let xn = layer_norm(x, &l.norm1);
    let k = linear(&xn, tokens, &l.key);
    let v = linear(&xn, tokens, &l.value);
    let q = linear(&xn[..rows_out * hidden], rows_out, &l.query);
    let ctx = attention(&q, rows_out, &k, &v, tokens, hidden, heads);
    let attn = linear(&ctx, rows_out, &l.output);
    // `self.drop_path(self.layer_scale1(attention_output)) + hidden_states`
    let mut h: Vec<f32> = attn
        .iter()
        .zip(&x[..rows_out * hidden])
        .enumerate()
        .map(|(i, (&a, &r))| a * l.layer_scale1[i % hidden] + r)
        .collect();
    let hn = layer_norm(&h, &l.norm2);
    let mut m = linear(&hn, rows_out, &l.fc1);
    gelu(&mut m);
    let m = linear(&m, rows_out, &l.fc2);
    for (i, (o, &mv)) in h.iter_mut().zip(&m).enumerate() {
        *o += mv * l.layer_scale2[i % hidden];
    }
    h
}

/// The encoder and final norm, keeping `rows_last` rows out of the last layer.
fn encode(model: &Dinov2, image: &FeatureMap, rows_last: usize) -> Result<Vec<f32>, ScoreError> {
    let mut x = embed(model, image)?;
    let hidden = model.config.hidden_size;
    let tokens = x.len() / hidden;
    let heads = model.config.num_attention_heads;
    let last = model.layers.len().saturating_sub(1);
    for (i, l) in model.layers.iter().enumerate() {
        let rows = if i == last { rows_last } else { tokens };
        x = layer(l, heads, &x, tokens, rows);
    }
    if model.layers.is_empty() {
        x.truncate(rows_last * hidden);
    }
    Ok(layer_norm(&x, &model.final_norm))
}

/// `Dinov2Model(pixel_values).last_hidden_state` of one image, `tokens × hidden` row-major.
pub fn last_hidden_state(model: &Dinov2, image: &FeatureMap) -> Result<Vec<f32>, ScoreError> {
    let tokens = model.position_embeddings.len() / model.config.hidden_size.max(1);
    encode(model, image, tokens)
}

/// `last_hidden_state[:, 0]` of one image (the CLS token after the final norm). Rows are
/// independent after the last attention, so the last layer runs its query, MLP and norm on
/// the CLS row only.
pub fn cls_token(model: &Dinov2, image: &FeatureMap) -> Result<Vec<f32>, ScoreError> {
    encode(model, image, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use splatfleet_tests::sim::models::SimRng;

    use crate::scorer::cpu::test_models::{tiny_config, tiny_dinov2, Uniform};

    fn image(seed: u64) -> FeatureMap {
        let mut rng = SimRng::new(seed);
        FeatureMap {
            channels: 3,
            height: 518,
            width: 518,
            data: rng.vec(3 * 518 * 518, 2.0),
        }
    }

    #[test]
    fn tiny_forward_is_finite_and_sensitive_to_weights() {
        let mut rng = SimRng::new(10);
        let mut model = tiny_dinov2(&mut rng, tiny_config());
        let x = image(11);
        let full = last_hidden_state(&model, &x).expect("tiny forward");
        assert_eq!(full.len(), 1370 * 32);
        assert!(full.iter().all(|v| v.is_finite()));
        // Tokens differ (the CLS row is not a patch row).
        assert!(full[..32] != full[32..64]);
        let cls = cls_token(&model, &x).expect("tiny forward");
        for (a, b) in cls.iter().zip(&full[..32]) {
            assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // A change in the first layer's key weights reaches the CLS output.
        model.layers[0].key.weight.data[5] += 0.5;
        let changed = cls_token(&model, &x).expect("tiny forward");
        assert!(changed.iter().zip(&cls).any(|(a, b)| (a - b).abs() > 1e-5));
        // And so does one patch of the input.
        let mut y = x.clone();
        y.data[518 * 300 + 300] += 1.0;
        let moved = cls_token(&model, &y).expect("tiny forward");
        assert!(moved.iter().zip(&changed).any(|(a, b)| a != b));
    }

    #[test]
    fn wrong_input_grid_is_a_typed_error() {
        let mut rng = SimRng::new(12);
        let model = tiny_dinov2(&mut rng, tiny_config());
        let x = FeatureMap::zeros(3, 224, 224);
        assert!(matches!(cls_token(&model, &x), Err(ScoreError::Model(_))));
        let x = FeatureMap::zeros(3, 518, 500);
        assert!(matches!(cls_token(&model, &x), Err(ScoreError::Image(_))));
    }
}
