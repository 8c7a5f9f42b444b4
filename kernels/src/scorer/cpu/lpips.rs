//! LPIPS as the service computes it: `LearnedPerceptualImagePatchSimilarity(normalize=True)`
//! of torchmetrics 1.5.1 (net `alex`) on views resized as three-gen-subnet 5fc61f1
//! `engine/metrics/similarity_scorer.py:55-58` resizes them. Each view's normalised AlexNet
//! taps are computed once ([`features`]) and compared per pair ([`distance`]).
//!
//! torchmetrics v1.5.1 `src/torchmetrics/functional/image/lpips.py`: AlexNet slices
//! (:118-127: conv0+relu | pool, conv3+relu | pool, conv6+relu | conv8+relu | conv10+relu),
//! `_normalize_tensor` (:215-218: `in_feat / sqrt(eps + Σ_c in_feat²)`, eps 1e-8),
//! `ScalingLayer` (:233-238), `_LPIPS.forward` (:337-366: `2x − 1`, scaling, squared
//! difference, 1×1 `lins` without bias, spatial mean, sum over taps), no resize (`resize` is
//! left `None` by the metric class).

use super::{
    ops::{conv2d, conv_out, max_pool2d, relu, FeatureMap},
    resize,
};
use crate::{
    constants::{LPIPS_NORM_EPS, LPIPS_SCALE, LPIPS_SHIFT, LPIPS_SIZE},
    scorer::model::Lpips,
};

/// torchvision AlexNet `MaxPool2d(kernel_size=3, stride=2)` after taps 1 and 2.
const POOL_KERNEL: usize = 3;
const POOL_STRIDE: usize = 2;
const POOL_AFTER: [bool; 5] = [true, true, false, false, false];

/// The five tapped ReLU outputs of one view, each normalised per pixel over channels.
#[derive(Debug, Clone, PartialEq)]
pub struct LpipsFeatures {
    pub taps: Vec<FeatureMap>,
}

/// Spatial sides of the five taps for a `size × size` input, or `None` when a window does
/// not fit (torch raises).
pub fn tap_sides(model: &Lpips, size: usize) -> Option<[usize; 5]> {
    let mut side = size;
    let mut out = [0; 5];
    for (k, conv) in model.convs.iter().enumerate() {
        side = conv_out(side, conv.kernel(), conv.stride, conv.padding)?;
        out[k] = side;
        if POOL_AFTER[k] {
            side = conv_out(side, POOL_KERNEL, POOL_STRIDE, 0)?;
        }
    }
    Some(out)
}

/// The network's input for one 8-bit view: `/255 → bicubic to 256 → clip [0, 1]` (the
/// service), `2x − 1` (`normalize=True`), `(x − shift) / scale`.
pub fn input(rgb8: &[u8], width: usize, height: usize) -> FeatureMap {
    let x = FeatureMap::from_rgb8(rgb8, width, height);
    let mut x = resize::bicubic(&x, LPIPS_SIZE, LPIPS_SIZE);
    let n = x.plane_len();
    for (c, plane) in x.data.chunks_exact_mut(n).enumerate() {
        for v in plane {
            // torch.clip keeps NaN; so does f32::clamp.
            let clipped = v.clamp(0.0, 1.0);
            *v = (2.0 * clipped - 1.0 - LPIPS_SHIFT[c]) / LPIPS_SCALE[c];
        }
    }
    x
}

/// `f / √(eps + Σ_c f²)` per pixel (`_normalize_tensor`); the channel sum in `f64`.
fn normalise(f: &mut FeatureMap) {
    let n = f.plane_len();
    let mut sum = vec![0f64; n];
    for plane in f.data.chunks_exact(n) {
        for (s, &v) in sum.iter_mut().zip(plane) {
            *s += f64::from(v) * f64::from(v);
        }
    }
    let norm: Vec<f32> = sum
        .iter()
        .map(|&s| (f64::from(LPIPS_NORM_EPS) + s).sqrt() as f32)
        .collect();
    for plane in f.data.chunks_exact_mut(n) {
        for (v, &d) in plane.iter_mut().zip(&norm) {
            *v /= d;
        }
    }
}

/// The normalised AlexNet taps of one 8-bit view.
pub fn features(model: &Lpips, rgb8: &[u8], width: usize, height: usize) -> LpipsFeatures {
    let mut x = input(rgb8, width, height);
    let mut taps = Vec::with_capacity(5);
    for (k, conv) in model.convs.iter().enumerate() {
        x = conv2d(&x, conv);
        relu(&mut x.data);
        let mut tap = x.clone();
        normalise(&mut tap);
        taps.push(tap);
        if POOL_AFTER[k] {
            x = max_pool2d(&x, POOL_KERNEL, POOL_STRIDE);
        }
    }
    LpipsFeatures { taps }
}

/// LPIPS between two views' features: `Σ_k mean_hw Σ_c lins[k][c]·(a − b)²`, reduced in
/// `f64`. Symmetric, and exactly 0 for identical features.
pub fn distance(model: &Lpips, a: &LpipsFeatures, b: &LpipsFeatures) -> f64 {
    let mut total = 0f64;
    for ((fa, fb), lin) in a.taps.iter().zip(&b.taps).zip(&model.lins) {
        let n = fa.plane_len();
        let mut per_pixel = vec![0f64; n];
        for ((pa, pb), &w) in fa
            .data
            .chunks_exact(n)
            .zip(fb.data.chunks_exact(n))
            .zip(lin)
        {
            for ((s, &va), &vb) in per_pixel.iter_mut().zip(pa).zip(pb) {
                let d = va - vb;
                *s += f64::from(w) * f64::from(d * d);
            }
        }
        total += per_pixel.iter().sum::<f64>() / n as f64;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorer::cpu::test_models::{random_images, tiny_models};

    #[test]
    fn identical_views_are_at_zero_and_the_distance_is_symmetric() {
        let models = tiny_models(30);
        let images = random_images(2, 40, 30, 31);
        let a = features(&models.lpips, images.view(0), 40, 30);
        let b = features(&models.lpips, images.view(1), 40, 30);
        assert_eq!(
            a.taps
                .iter()
                .map(|t| (t.channels, t.height))
                .collect::<Vec<_>>(),
            vec![(8, 63), (16, 31), (16, 15), (12, 15), (12, 15)]
        );
        assert_eq!(tap_sides(&models.lpips, 256), Some([63, 31, 15, 15, 15]));
        assert_eq!(distance(&models.lpips, &a, &a), 0.0);
        let ab = distance(&models.lpips, &a, &b);
        assert!(ab > 0.0 && ab.is_finite());
        assert_eq!(ab, distance(&models.lpips, &b, &a));
    }

    #[test]
    fn taps_are_unit_norm_per_pixel_and_input_is_clipped_then_scaled() {
        let models = tiny_models(32);
        let images = random_images(1, 32, 32, 33);
        let f = features(&models.lpips, images.view(0), 32, 32);
        for tap in &f.taps {
            let n = tap.plane_len();
            // Σ_c f̂² = Σf² / (1e-8 + Σf²): at most 1, close to it where activations are
            // not tiny, 0 where ReLU zeroed every channel.
            let sums: Vec<f32> = (0..n)
                .map(|p| (0..tap.channels).map(|c| tap.data[c * n + p].powi(2)).sum())
                .collect();
            assert!(sums.iter().all(|&s| (0.0..=1.0 + 1e-5).contains(&s)));
            assert!(sums.iter().any(|&s| s > 0.9999), "{sums:?}");
        }
        // White stays 1 after clipping (bicubic overshoot cannot exceed it on a flat image).
        let x = input(&[255u8; 5 * 5 * 3], 5, 5);
        for c in 0..3 {
            let want = (1.0 - LPIPS_SHIFT[c]) / LPIPS_SCALE[c];
            assert!(x.plane(c).iter().all(|&v| (v - want).abs() < 1e-5));
        }
    }
}
