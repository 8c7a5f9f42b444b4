//! The image task's alignment (`VALIDATOR_SCORING.md` §7): the validator's
//! `ImageVSImageMetric` (three-gen-subnet 5fc61f1, `validation/engine/metrics/
//! alignment_scorer.py:104-181`, called from `validation_engine.py:76-78`) on our renders,
//! CPU reference.
//!
//! The service loads `AutoModel.from_pretrained("microsoft/LLM2CLIP-Openai-L-14-336",
//! revision="92512331…", torch_dtype=float16, trust_remote_code=True)` and uses its image
//! side only: `get_image_features` = `visual_projection(post_layernorm(CLS))` of a CLIP
//! ViT-L/14 at 336 (24 layers, width 1024, 16 heads, MLP 4096, quick GELU, eps 1e-5),
//! projection 1024 → 1280 without bias. The prompt image (decoded as [`prompt_image`]
//! describes) and the 16 views go through the same preprocessing (`/255`, fp16, bicubic to
//! 336, `Normalize(mean×3, std×3)`), each embedding is L2-normalised, the 16 cosines
//! `prompt · view` go through the outlier filter and their geometric mean is the alignment:
//! no clip to [0, 1], no ÷ 0.35 (unlike the text task).
//!
//! This reference is `f32`; the service runs fp16 (see [`vit`]).
//!
//! One job per file: [`prompt_image`] (base64 → the service's RGB pixels), [`files`] (the
//! model folder and its typed weights), [`vit`] (preprocessing and the forward pass).

pub mod files;
pub mod prompt_image;
pub mod vit;

pub use files::{Llm2ClipVision, VisionConfig};
pub use prompt_image::{PromptImage, PromptImageError};

use super::{aggregate, images::ScoreImages};

/// Why the image alignment could not be computed; the service scores each of these 0
/// (its `execute_validation` turns any exception into score 0).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Llm2ClipError {
    #[error(transparent)]
    Prompt(#[from] PromptImageError),
    #[error("image alignment model: {0}")]
    Model(String),
    #[error("image alignment input: {0}")]
    Input(String),
}

/// The alignment of an image task, typed where the service's number is not a number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ImageAlignment {
    /// The geometric mean of the kept cosines (finite, ≥ 0 when every kept cosine is ≥ 0).
    Measured(f64),
    /// A cosine the filter kept is negative: the service's `torch.log` of it is NaN, so its
    /// alignment is NaN; NaN passes its `alignment < 0.3` test and makes the final score NaN,
    /// which the neuron's `score >= 0.6` never accepts (and which a JSON response cannot even
    /// carry). Recorded with the count of negative kept cosines and the smallest one; the
    /// gate reads it as 0 (a model the validator will not accept).
    NegativeCosine { negative: usize, min: f64 },
}

impl ImageAlignment {
    /// The value the service's formula yields: the mean, or NaN.
    pub fn service_value(&self) -> f64 {
        match *self {
            Self::Measured(v) => v,
            Self::NegativeCosine { .. } => f64::NAN,
        }
    }

    /// The value our gate compares against the cut-off: the mean, or 0 for a NaN alignment.
    pub fn gate_value(&self) -> f64 {
        match *self {
            Self::Measured(v) => v,
            Self::NegativeCosine { .. } => 0.0,
        }
    }
}

/// The cosines → alignment step alone: the service's outlier filter (which marks dropped
/// values with −1 and then drops every −1, so an exact −1 cosine goes too), then the
/// geometric mean ([`aggregate::image_alignment`]).
pub fn alignment_of_cosines(cosines: &[f64]) -> (Vec<f64>, ImageAlignment) {
    let kept: Vec<f64> = aggregate::filter_outliers(cosines)
        .into_iter()
        .filter(|&c| c != -1.0)
        .collect();
    let negatives: Vec<f64> = kept.iter().copied().filter(|&c| c < 0.0).collect();
    let alignment = if negatives.is_empty() {
        ImageAlignment::Measured(aggregate::geometric_mean(&kept))
    } else {
        ImageAlignment::NegativeCosine {
            negative: negatives.len(),
            min: negatives.iter().copied().fold(f64::INFINITY, f64::min),
        }
    };
    (kept, alignment)
}

/// Everything the image alignment of one model measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageAlignmentScore {
    /// `prompt · view` for each view, in view order.
    pub cosines: Vec<f64>,
    /// The cosines the outlier filter kept (sorted).
    pub kept: Vec<f64>,
    pub alignment: ImageAlignment,
    /// The L2-normalised prompt embedding (parity checks).
    pub prompt_embedding: Vec<f32>,
    /// The L2-normalised view embeddings, in view order (parity checks).
    pub view_embeddings: Vec<Vec<f32>>,
}

/// The image task's alignment of `images` against `prompt`, as the service computes it.
pub fn score_image_alignment(
    model: &Llm2ClipVision,
    prompt: &PromptImage,
    images: &ScoreImages,
) -> Result<ImageAlignmentScore, Llm2ClipError> {
    vit::check_model(model)?;
    let (w, h) = (images.width as usize, images.height as usize);
    let expected = images
        .views
        .checked_mul(images.pixels_per_view())
        .and_then(|v| v.checked_mul(3));
    if images.views == 0 || expected != Some(images.rgb8.len()) {
        return Err(Llm2ClipError::Input(format!(
            "{} bytes for {} views of {w}×{h} RGB",
            images.rgb8.len(),
            images.views
        )));
    }
    let mut inputs: Vec<(&[u8], usize, usize)> = vec![(&prompt.rgb8, prompt.width, prompt.height)];
    inputs.extend((0..images.views).map(|v| (images.view(v), w, h)));
    let mut embeddings = vit::embeddings(model, &inputs)?;
    let view_embeddings = embeddings.split_off(1);
    let prompt_embedding = embeddings
        .pop()
        .ok_or_else(|| Llm2ClipError::Input("no prompt embedding".into()))?;
    let cosines: Vec<f64> = view_embeddings
        .iter()
        .map(|e| {
            // fp32 dot of the normalised vectors (the service: fp16 matmul, cast to fp32).
            f64::from(
                e.iter()
                    .zip(&prompt_embedding)
                    .map(|(a, b)| a * b)
                    .sum::<f32>(),
            )
        })
        .collect();
    let (kept, alignment) = alignment_of_cosines(&cosines);
    Ok(ImageAlignmentScore {
        cosines,
        kept,
        alignment,
        prompt_embedding,
        view_embeddings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_negative_cosine_is_typed_and_a_far_one_is_filtered() {
        let mut c: Vec<f64> = (0..15).map(|i| 0.80 + 0.002 * f64::from(i)).collect();
        c.push(-0.4);
        let (kept, a) = alignment_of_cosines(&c);
        assert_eq!(kept.len(), 15);
        assert!(matches!(a, ImageAlignment::Measured(v) if (v - 0.814).abs() < 1e-3));
        let c: Vec<f64> = (0..16).map(|i| -0.1 + 0.01 * f64::from(i)).collect();
        let (_, a) = alignment_of_cosines(&c);
        assert!(matches!(a, ImageAlignment::NegativeCosine { negative, .. } if negative >= 9));
        assert!(a.service_value().is_nan());
        assert_eq!(a.gate_value(), 0.0);
        // The service's own formula agrees where it is a number.
        let c: Vec<f64> = (0..16).map(|i| 0.5 + 0.01 * f64::from(i)).collect();
        let (_, a) = alignment_of_cosines(&c);
        assert_eq!(a.service_value(), aggregate::image_alignment(&c));
    }
}
