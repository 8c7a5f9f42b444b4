//! The CPU forward of both towers, in PyTorch's `f32` semantics, activations channels-last
//! (`pixels × channels` rows, so LayerNorm and the MLPs are row operations from
//! [`crate::scorer::cpu::ops`]). The operations `ops.rs` does not have live here: the
//! depthwise convolution, the stride = kernel convolution as a patch matrix product, the
//! average pool and causal multi-head attention.
//!
//! Image preprocessing is the service's (`alignment_scorer.py:51-58`): `x / 255`, bicubic to
//! 224 (`align_corners=False`), `Normalize(mean × 3, std × 3)`. The service casts to fp16
//! before the resize and runs the towers under fp16 autocast; this reference stays in `f32`
//! (the parity tolerance covers the difference, `VALIDATOR_SCORING.md` §6, §10).

use rayon::prelude::*;

use super::model::{ConvnextBlock, ConvnextTower, TextTower};
use crate::scorer::{
    cpu::{
        ops::{gelu, layer_norm, linear, FeatureMap},
        resize::bicubic,
    },
    model::Linear,
};

/// The service's input size for this model (`score_text_alignment(img_preproc_res=224)`).
pub const CLIP_INPUT_SIZE: usize = 224;
/// OpenAI CLIP's mean and std, which the service multiplies by 3 (`alignment_scorer.py:26-27`).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
/// The service's factor on both.
pub const CLIP_NORM_FACTOR: f32 = 3.0;

/// One 8-bit HWC view as the tower's input: CHW, 224², normalised.
pub fn preprocess(rgb8: &[u8], width: usize, height: usize) -> FeatureMap {
    let x = FeatureMap::from_rgb8(rgb8, width, height);
    let mut x = bicubic(&x, CLIP_INPUT_SIZE, CLIP_INPUT_SIZE);
    let n = x.plane_len();
    for c in 0..3 {
        // torch.tensor(mean) * 3 in f32, then Normalize's (x - mean) / std.
        let mean = CLIP_MEAN[c] * CLIP_NORM_FACTOR;
        let std = CLIP_STD[c] * CLIP_NORM_FACTOR;
        for v in &mut x.data[c * n..(c + 1) * n] {
            *v = (*v - mean) / std;
        }
    }
    x
}

/// A channels-last map: `height × width` rows of `channels`.
#[derive(Debug, Clone)]
struct Rows {
    height: usize,
    width: usize,
    channels: usize,
    data: Vec<f32>,
}

/// A stride = kernel convolution without padding (`stem.0`, `downsample.1`) as one matrix
/// product: each output pixel's `(c, ky, kx)` patch times `conv` (`[out, in·k·k]`).
fn patch_conv(
    at: impl Fn(usize, usize, usize) -> f32,
    (height, width, channels): (usize, usize, usize),
    k: usize,
    conv: &Linear,
) -> Rows {
    let (oh, ow) = (height / k, width / k);
    let mut patches = Vec::with_capacity(oh * ow * channels * k * k);
    for oy in 0..oh {
        for ox in 0..ow {
            for c in 0..channels {
                for ky in 0..k {
                    for kx in 0..k {
                        patches.push(at(oy * k + ky, ox * k + kx, c));
                    }
                }
            }
        }
    }
    Rows {
        height: oh,
        width: ow,
        channels: conv.out_features(),
        data: linear(&patches, oh * ow, conv),
    }
}

/// timm `ConvNeXtBlock`: depthwise k×k conv (padding k/2, bias), LayerNorm over channels,
/// fc1, exact GELU, fc2, times `gamma`, plus the input.
fn block(x: &mut Rows, b: &ConvnextBlock, kernel: usize) {
    let (h, w, c) = (x.height, x.width, x.channels);
    let pad = kernel / 2;
    let mut dw = vec![0f32; x.data.len()];
    for y in 0..h {
        for xx in 0..w {
            let out = &mut dw[(y * w + xx) * c..][..c];
            out.copy_from_slice(&b.dw_bias);
            for ky in 0..kernel {
                let Some(iy) = (y + ky).checked_sub(pad).filter(|&iy| iy < h) else {
                    continue;
                };
                for kx in 0..kernel {
                    let Some(ix) = (xx + kx).checked_sub(pad).filter(|&ix| ix < w) else {
                        continue;
                    };
                    let src = &x.data[(iy * w + ix) * c..][..c];
                    let tap = ky * kernel + kx;
                    for ch in 0..c {
                        out[ch] += b.dw_weight[ch * kernel * kernel + tap] * src[ch];
                    }
                }
            }
        }
    }
    let rows = h * w;
    let normed = layer_norm(&dw, &b.norm);
    let mut hidden = linear(&normed, rows, &b.fc1);
    gelu(&mut hidden);
    let y = linear(&hidden, rows, &b.fc2);
    for (i, (xv, yv)) in x.data.iter_mut().zip(&y).enumerate() {
        *xv += yv * b.gamma[i % c];
    }
}

/// The image tower on one preprocessed view: the embedding before normalisation.
pub fn encode_image(
    tower: &ConvnextTower,
    kernel: usize,
    stem_patch: usize,
    downsample: usize,
    x: &FeatureMap,
) -> Vec<f32> {
    let hw = x.plane_len();
    let mut rows = patch_conv(
        |y, xx, c| x.data[c * hw + y * x.width + xx],
        (x.height, x.width, 3),
        stem_patch,
        &tower.stem,
    );
    rows.data = layer_norm(&rows.data, &tower.stem_norm);
    for stage in &tower.stages {
        if let Some((norm, conv)) = &stage.downsample {
            let normed = layer_norm(&rows.data, norm);
            let (w, c) = (rows.width, rows.channels);
            rows = patch_conv(
                |y, xx, ch| normed[(y * w + xx) * c + ch],
                (rows.height, rows.width, rows.channels),
                downsample,
                conv,
            );
        }
        for b in &stage.blocks {
            block(&mut rows, b, kernel);
        }
    }
    // adaptive_avg_pool2d to 1×1, then the head's LayerNorm2d, flatten, the MLP projection.
    let (pixels, c) = (rows.height * rows.width, rows.channels);
    let pooled: Vec<f32> = (0..c)
        .map(|ch| {
            let sum: f64 = (0..pixels).map(|p| f64::from(rows.data[p * c + ch])).sum();
            (sum / pixels.max(1) as f64) as f32
        })
        .collect();
    let normed = layer_norm(&pooled, &tower.head_norm);
    let mut hidden = linear(&normed, 1, &tower.proj_fc1);
    gelu(&mut hidden);
    linear(&hidden, 1, &tower.proj_fc2)
}

/// The image tower on every view (views in parallel).
pub fn encode_images(
    tower: &ConvnextTower,
    (kernel, stem_patch, downsample): (usize, usize, usize),
    views: &[FeatureMap],
) -> Vec<Vec<f32>> {
    views
        .par_iter()
        .map(|v| encode_image(tower, kernel, stem_patch, downsample, v))
        .collect()
}

/// Causal multi-head self-attention on `n` rows of the packed `qkv` (`[n, 3w]`, q | k | v),
/// `softmax(q kᵀ / √d + mask) v` with the upper triangle masked (open_clip's `-inf` mask).
fn causal_attention(qkv: &[f32], n: usize, width: usize, heads: usize) -> Vec<f32> {
    let d = width / heads;
    let scale = 1.0 / (d as f32).sqrt();
    let mut out = vec![0f32; n * width];
    let mut scores = vec![0f32; n];
    for h in 0..heads {
        for i in 0..n {
            let q = &qkv[i * 3 * width + h * d..][..d];
            let mut max = f32::NEG_INFINITY;
            for (j, s) in scores.iter_mut().enumerate().take(i + 1) {
                let k = &qkv[j * 3 * width + width + h * d..][..d];
                *s = q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
                max = max.max(*s);
            }
            let mut sum = 0f32;
            for s in scores.iter_mut().take(i + 1) {
                *s = (*s - max).exp();
                sum += *s;
            }
            let o = &mut out[i * width + h * d..][..d];
            for (j, s) in scores.iter().enumerate().take(i + 1) {
                let v = &qkv[j * 3 * width + 2 * width + h * d..][..d];
                let p = s / sum;
                for (ov, vv) in o.iter_mut().zip(v) {
                    *ov += p * vv;
                }
            }
        }
    }
    out
}

/// The text tower on `ids` (a full context): the projected feature at the first position of
/// the largest id (`text.argmax(dim=-1)`, the EOT). Rows after it cannot reach it through
/// the causal mask and are not computed.
pub fn encode_text(tower: &TextTower, ids: &[u32]) -> Vec<f32> {
    let w = tower.positional_embedding.shape[1];
    let eot = ids
        .iter()
        .enumerate()
        .fold(
            (0, 0u32),
            |best, (i, &id)| if id > best.1 { (i, id) } else { best },
        )
        .0;
    let n = eot + 1;
    let mut x = vec![0f32; n * w];
    for (t, row) in x.chunks_exact_mut(w).enumerate() {
        let tok = &tower.token_embedding.data[ids[t] as usize * w..][..w];
        let pos = &tower.positional_embedding.data[t * w..][..w];
        for ((o, a), b) in row.iter_mut().zip(tok).zip(pos) {
            *o = a + b;
        }
    }
    for layer in &tower.layers {
        let h = layer_norm(&x, &layer.ln_1);
        let qkv = linear(&h, n, &layer.in_proj);
        let attn = causal_attention(&qkv, n, w, tower.heads);
        let out = linear(&attn, n, &layer.out_proj);
        x.iter_mut().zip(&out).for_each(|(a, b)| *a += b);
        let h = layer_norm(&x, &layer.ln_2);
        let mut m = linear(&h, n, &layer.c_fc);
        gelu(&mut m);
        let m = linear(&m, n, &layer.c_proj);
        x.iter_mut().zip(&m).for_each(|(a, b)| *a += b);
    }
    let last = layer_norm(&x[eot * w..], &tower.ln_final);
    let e = tower.projection.shape[1];
    (0..e)
        .map(|j| {
            last.iter()
                .enumerate()
                .map(|(i, v)| v * tower.projection.data[i * e + j])
                .sum()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_attention_first_row_is_its_own_value_and_rows_ignore_later_ones() {
        // Two rows, one head of width 2: row 0 sees only itself.
        let qkv = [1.0, 0.0, 1.0, 0.0, 5.0, 6.0, 0.0, 1.0, 0.0, 1.0, 7.0, 8.0];
        let out = causal_attention(&qkv, 2, 2, 1);
        assert_eq!(&out[..2], &[5.0, 6.0]);
        let three: Vec<f32> = qkv
            .iter()
            .chain(&[9.0, 9.0, 9.0, 9.0, 100.0, 100.0])
            .copied()
            .collect();
        let out3 = causal_attention(&three, 3, 2, 1);
        assert_eq!(&out3[..4], &out[..4]);
    }
}
