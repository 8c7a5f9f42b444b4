//! The service's per-view quality score (three-gen-subnet 5fc61f1,
//! `validation/engine/models/quality_model.py`): the preprocessing of `_tensor_transform`
//! (:139-156; constants :37, :40-41), DINOv2 and `DINOv2Net.forward`'s `score_head` on the
//! CLS token of `last_hidden_state` (:175-184), then the sigmoid of `score` (:113-116).

use super::{
    dinov2,
    ops::{linear, sigmoid, FeatureMap},
    resize, ScoreError,
};
use crate::{
    constants::{IMAGENET_MEAN, IMAGENET_STD},
    scorer::model::QualityModel,
};

/// The model's input side (`self._image_size = 518`, quality_model.py:37).
pub const QUALITY_IMAGE_SIZE: usize = 518;

/// `uint8 HWC → float / 255 → CHW → bilinear resize to 518 (align_corners=False,
/// antialias=False) → (x − mean) / std`.
pub fn preprocess(rgb8: &[u8], width: usize, height: usize) -> FeatureMap {
    let x = FeatureMap::from_rgb8(rgb8, width, height);
    let mut x = resize::bilinear(&x, QUALITY_IMAGE_SIZE, QUALITY_IMAGE_SIZE);
    let n = x.plane_len();
    for (c, plane) in x.data.chunks_exact_mut(n).enumerate() {
        for v in plane {
            *v = (*v - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    x
}

/// `score_head(last_hidden_state[:, 0])` of a preprocessed image.
pub fn quality_logit(model: &QualityModel, image: &FeatureMap) -> Result<f32, ScoreError> {
    let cls = dinov2::cls_token(&model.backbone, image)?;
    let logit = linear(&cls, 1, &model.score_head);
    logit
        .first()
        .copied()
        .ok_or_else(|| ScoreError::Model("score_head has no output".into()))
}

/// The per-view value the service averages: `sigmoid(logit)` (computed in `f32`, as the
/// service stores it).
pub fn view_quality(
    model: &QualityModel,
    rgb8: &[u8],
    width: usize,
    height: usize,
) -> Result<f64, ScoreError> {
    let x = preprocess(rgb8, width, height);
    Ok(f64::from(sigmoid(quality_logit(model, &x)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorer::cpu::test_models::{random_images, tiny_models};

    #[test]
    fn preprocessing_normalises_and_resizes() {
        // A flat grey 4×4 image resized to 518 stays flat: (128/255 − mean) / std per channel.
        let x = preprocess(&[128u8; 4 * 4 * 3], 4, 4);
        assert_eq!((x.channels, x.height, x.width), (3, 518, 518));
        for c in 0..3 {
            let want = (128.0f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            assert!(x.plane(c).iter().all(|&v| (v - want).abs() < 1e-6));
        }
    }

    #[test]
    fn view_quality_is_a_probability_and_depends_on_the_view() {
        let models = tiny_models(20);
        let images = random_images(2, 64, 48, 21);
        let q0 = view_quality(&models.quality, images.view(0), 64, 48).expect("tiny model");
        let q1 = view_quality(&models.quality, images.view(1), 64, 48).expect("tiny model");
        assert!((0.0..=1.0).contains(&q0) && (0.0..=1.0).contains(&q1));
        assert_ne!(q0, q1);
    }
}
