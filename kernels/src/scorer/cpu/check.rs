//! Every size the CPU forward passes read, checked once before any math: tensor lengths
//! against their shapes, each layer's shapes against the configuration and its neighbours,
//! and the LPIPS windows at 256 pixels. After [`check_models`] passes, the operations index
//! within bounds.

use super::{lpips, ScoreError};
use crate::scorer::model::{Conv2d, Dinov2, LayerNorm, Linear, Lpips, ScorerModels, Tensor};

fn err(what: impl Into<String>) -> ScoreError {
    ScoreError::Model(what.into())
}

fn len(what: &str, got: usize, want: usize) -> Result<(), ScoreError> {
    if got == want {
        Ok(())
    } else {
        Err(err(format!("{what}: {got} values, expected {want}")))
    }
}

fn tensor(what: &str, t: &Tensor, shape: &[usize]) -> Result<(), ScoreError> {
    if t.shape != shape {
        return Err(err(format!(
            "{what}: shape {:?}, expected {shape:?}",
            t.shape
        )));
    }
    len(what, t.data.len(), t.numel())
}

fn linear(what: &str, l: &Linear, out: usize, inp: usize) -> Result<(), ScoreError> {
    tensor(&format!("{what}.weight"), &l.weight, &[out, inp])?;
    if let Some(b) = &l.bias {
        len(&format!("{what}.bias"), b.len(), out)?;
    }
    Ok(())
}

fn norm(what: &str, n: &LayerNorm, d: usize) -> Result<(), ScoreError> {
    len(&format!("{what}.weight"), n.weight.len(), d)?;
    len(&format!("{what}.bias"), n.bias.len(), d)?;
    if n.eps.is_finite() && n.eps >= 0.0 {
        Ok(())
    } else {
        Err(err(format!("{what}.eps is {}", n.eps)))
    }
}

fn conv(what: &str, c: &Conv2d, inp: usize) -> Result<usize, ScoreError> {
    let s = &c.weight.shape;
    if s.len() != 4 || s[1] != inp || s[2] != s[3] || s[2] == 0 || c.stride == 0 {
        return Err(err(format!(
            "{what}: weight shape {s:?} and stride {} (expected [out, {inp}, k, k], stride ≥ 1)",
            c.stride
        )));
    }
    tensor(&format!("{what}.weight"), &c.weight, &s.clone())?;
    if let Some(b) = &c.bias {
        len(&format!("{what}.bias"), b.len(), s[0])?;
    }
    Ok(s[0])
}

/// The DINOv2 backbone's shapes.
pub fn check_dinov2(m: &Dinov2) -> Result<(), ScoreError> {
    let cfg = &m.config;
    let h = cfg.hidden_size;
    if h == 0 || cfg.num_attention_heads == 0 || !h.is_multiple_of(cfg.num_attention_heads) {
        return Err(err(format!(
            "DINOv2 hidden size {h} is not a multiple of {} heads",
            cfg.num_attention_heads
        )));
    }
    if cfg.patch_size == 0 || cfg.image_size < cfg.patch_size {
        return Err(err(format!(
            "DINOv2 patch {} at image size {}",
            cfg.patch_size, cfg.image_size
        )));
    }
    len("embeddings.cls_token", m.cls_token.len(), h)?;
    len(
        "embeddings.position_embeddings",
        m.position_embeddings.len(),
        cfg.tokens() * h,
    )?;
    let p = cfg.patch_size;
    tensor(
        "embeddings.patch_embeddings.projection.weight",
        &m.patch_embed.weight,
        &[h, 3, p, p],
    )?;
    if let Some(b) = &m.patch_embed.bias {
        len("embeddings.patch_embeddings.projection.bias", b.len(), h)?;
    }
    if m.patch_embed.stride != p || m.patch_embed.padding != 0 {
        return Err(err(
            "patch embedding: stride must equal the patch, padding 0",
        ));
    }
    len("encoder.layer", m.layers.len(), cfg.num_hidden_layers)?;
    for (i, l) in m.layers.iter().enumerate() {
        let at = |s: &str| format!("encoder.layer.{i}.{s}");
        norm(&at("norm1"), &l.norm1, h)?;
        linear(&at("attention.attention.query"), &l.query, h, h)?;
        linear(&at("attention.attention.key"), &l.key, h, h)?;
        linear(&at("attention.attention.value"), &l.value, h, h)?;
        linear(&at("attention.output.dense"), &l.output, h, h)?;
        len(&at("layer_scale1.lambda1"), l.layer_scale1.len(), h)?;
        norm(&at("norm2"), &l.norm2, h)?;
        linear(&at("mlp.fc1"), &l.fc1, cfg.mlp_hidden, h)?;
        linear(&at("mlp.fc2"), &l.fc2, h, cfg.mlp_hidden)?;
        len(&at("layer_scale2.lambda1"), l.layer_scale2.len(), h)?;
    }
    norm("layernorm", &m.final_norm, h)
}

/// LPIPS's shapes: a chain of five convolutions from RGB, one linear weight per tap, and
/// windows that fit at the 256-pixel input.
pub fn check_lpips(m: &Lpips) -> Result<(), ScoreError> {
    let mut inp = 3;
    for (k, (c, lin)) in m.convs.iter().zip(&m.lins).enumerate() {
        inp = conv(&format!("lpips conv {k}"), c, inp)?;
        len(&format!("lin{k}.model.1.weight"), lin.len(), inp)?;
    }
    if lpips::tap_sides(m, crate::constants::LPIPS_SIZE).is_none() {
        return Err(err(
            "LPIPS: a convolution or pooling window does not fit at 256 pixels",
        ));
    }
    Ok(())
}

/// Every network's shapes.
pub fn check_models(models: &ScorerModels) -> Result<(), ScoreError> {
    check_dinov2(&models.quality.backbone)?;
    linear(
        "score_head",
        &models.quality.score_head,
        1,
        models.quality.backbone.config.hidden_size,
    )?;
    check_lpips(&models.lpips)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorer::cpu::test_models::tiny_models;

    #[test]
    fn tiny_models_pass_and_each_broken_shape_is_named() {
        let good = tiny_models(50);
        check_models(&good).expect("tiny models are consistent");

        let mut m = good.clone();
        m.quality.backbone.layers[1].fc2.weight.data.pop();
        let e = check_models(&m).expect_err("short tensor").to_string();
        assert!(e.contains("encoder.layer.1.mlp.fc2.weight"), "{e}");

        let mut m = good.clone();
        m.quality.backbone.position_embeddings.truncate(32 * 257);
        let e = check_models(&m).expect_err("wrong grid").to_string();
        assert!(e.contains("position_embeddings"), "{e}");

        let mut m = good.clone();
        m.lpips.lins[2].push(0.0);
        let e = check_models(&m).expect_err("lin length").to_string();
        assert!(e.contains("lin2"), "{e}");

        let mut m = good;
        m.lpips.convs[0].stride = 300;
        assert!(check_models(&m).is_err());
    }
}
