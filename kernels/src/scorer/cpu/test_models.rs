//! Tests only: uniform draws from the tests' random source ([`SimRng`]), tiny random scorer models of the real
//! structure (DINOv2 of hidden 32, 2 heads, 2 layers, MLP 128, patch 14 at 518; an
//! AlexNet-shaped LPIPS with few channels) and random 8-bit views.

use splatfleet_tests::sim::models::SimRng;

use crate::scorer::{
    images::ScoreImages,
    model::{
        Conv2d, Dinov2, Dinov2Config, LayerNorm, Linear, Lpips, QualityModel, ScorerModels, Tensor,
        VitLayer,
    },
};

/// Uniform draws for the models' weights and the images, from the tests' random source.
pub trait Uniform {
    /// Uniform in `[-scale, scale)`.
    fn uniform(&mut self, scale: f32) -> f32;

    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(scale)).collect()
    }
}

impl Uniform for SimRng {
    fn uniform(&mut self, scale: f32) -> f32 {
        (2.0 * self.unit() - 1.0) * scale
    }
}

pub fn tiny_config() -> Dinov2Config {
    Dinov2Config {
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        mlp_hidden: 128,
        patch_size: 14,
        image_size: 518,
        layer_norm_eps: 1e-6,
    }
}

fn linear(rng: &mut SimRng, out: usize, inp: usize) -> Linear {
    Linear {
        weight: Tensor {
            shape: vec![out, inp],
            data: rng.vec(out * inp, 1.0 / (inp as f32).sqrt()),
        },
        bias: Some(rng.vec(out, 0.1)),
    }
}

fn norm(rng: &mut SimRng, d: usize, eps: f32) -> LayerNorm {
    LayerNorm {
        weight: (0..d).map(|_| 1.0 + rng.uniform(0.2)).collect(),
        bias: rng.vec(d, 0.1),
        eps,
    }
}

fn conv(
    rng: &mut SimRng,
    out: usize,
    inp: usize,
    k: usize,
    stride: usize,
    padding: usize,
) -> Conv2d {
    Conv2d {
        weight: Tensor {
            shape: vec![out, inp, k, k],
            data: rng.vec(out * inp * k * k, 1.0 / ((inp * k * k) as f32).sqrt()),
        },
        bias: Some(rng.vec(out, 0.1)),
        stride,
        padding,
    }
}

fn layer_scale(rng: &mut SimRng, d: usize) -> Vec<f32> {
    (0..d).map(|_| 0.55 + rng.uniform(0.45)).collect()
}

pub fn tiny_dinov2(rng: &mut SimRng, config: Dinov2Config) -> Dinov2 {
    let (h, eps) = (config.hidden_size, config.layer_norm_eps);
    let p = config.patch_size;
    Dinov2 {
        config,
        cls_token: rng.vec(h, 0.5),
        position_embeddings: rng.vec(config.tokens() * h, 0.5),
        patch_embed: conv(rng, h, 3, p, p, 0),
        layers: (0..config.num_hidden_layers)
            .map(|_| VitLayer {
                norm1: norm(rng, h, eps),
                query: linear(rng, h, h),
                key: linear(rng, h, h),
                value: linear(rng, h, h),
                output: linear(rng, h, h),
                layer_scale1: layer_scale(rng, h),
                norm2: norm(rng, h, eps),
                fc1: linear(rng, config.mlp_hidden, h),
                fc2: linear(rng, h, config.mlp_hidden),
                layer_scale2: layer_scale(rng, h),
            })
            .collect(),
        final_norm: norm(rng, h, eps),
    }
}

/// AlexNet's feature convolutions (torchvision `features.0/3/6/8/10`: kernels 11, 5, 3, 3,
/// 3; stride 4 then 1; padding 2, 2, 1, 1, 1) with these output channels.
pub fn tiny_lpips(rng: &mut SimRng, channels: [usize; 5]) -> Lpips {
    let [c0, c1, c2, c3, c4] = channels;
    Lpips {
        convs: [
            conv(rng, c0, 3, 11, 4, 2),
            conv(rng, c1, c0, 5, 1, 2),
            conv(rng, c2, c1, 3, 1, 1),
            conv(rng, c3, c2, 3, 1, 1),
            conv(rng, c4, c3, 3, 1, 1),
        ],
        // The real `linK` weights are non-negative.
        lins: channels.map(|c| (0..c).map(|_| rng.uniform(0.05).abs()).collect()),
    }
}

pub fn tiny_models(seed: u64) -> ScorerModels {
    let mut rng = SimRng::new(seed);
    let backbone = tiny_dinov2(&mut rng, tiny_config());
    let score_head = linear(&mut rng, 1, backbone.config.hidden_size);
    ScorerModels {
        quality: QualityModel {
            backbone,
            score_head,
        },
        lpips: tiny_lpips(&mut rng, [8, 16, 16, 12, 12]),
    }
}

/// `views` images of smooth colour gradients with noise, different per view.
pub fn random_images(views: usize, width: u32, height: u32, seed: u64) -> ScoreImages {
    let mut rng = SimRng::new(seed);
    let (w, h) = (width as usize, height as usize);
    let mut rgb8 = Vec::with_capacity(views * w * h * 3);
    for v in 0..views {
        let phase = v as f32 * 0.4;
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let base = 127.0
                        + 90.0
                            * ((x as f32 / w as f32 * 6.0 + phase + c as f32).sin()
                                * (y as f32 / h as f32 * 4.0 - phase).cos());
                    let v = base + rng.uniform(30.0);
                    rgb8.push(v.clamp(0.0, 255.0) as u8);
                }
            }
        }
    }
    ScoreImages {
        views,
        width,
        height,
        rgb8,
    }
}
