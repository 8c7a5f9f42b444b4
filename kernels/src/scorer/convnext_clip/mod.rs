//! The validator's text-prompt alignment model, CPU reference: open_clip 2.29.0
//! `convnext_large_d` / `laion2b_s26b_b102k_augreg` as three-gen-subnet's
//! `TextVSImageMetric` uses it (`validation/engine/metrics/alignment_scorer.py:17-101`,
//! `validation_engine.py:28,90-102` at 5fc61f1; `VALIDATOR_SCORING.md` §6).
//!
//! - [`clean`], [`tokenizer`]: the prompt's tokens, exactly as open_clip's `SimpleTokenizer`.
//! - [`model`]: the typed weights and the dimensions read from a file.
//! - [`files`]: the hf-hub file names, the expected tensors, the loader.
//! - [`forward`]: the ConvNeXt image tower and the text transformer on the CPU.
//!
//! [`ConvnextClip::text_alignment`] is the service's number: L2-normalised embeddings, one
//! cosine per view (no logit scale), then [`crate::scorer::aggregate::text_alignment`]
//! (outlier filter, clip to [0, 1], geometric mean, ÷ 0.35).

pub mod clean;
pub mod files;
pub mod forward;
pub mod model;
pub mod tokenizer;

pub use model::{ClipConfig, ConvnextClip};
pub use tokenizer::{ClipTokenizer, TokenizerError};

use crate::scorer::{aggregate, images::ScoreImages};

/// Why an alignment could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("token id {id} is outside the model's vocabulary of {vocab}")]
    TokenOutOfVocabulary { id: u32, vocab: usize },
    #[error("the tokenizer's context {tokenizer} differs from the model's {model}")]
    ContextMismatch { tokenizer: usize, model: usize },
    #[error("no views to score")]
    NoViews,
    #[error("views of {width}×{height} with {bytes} bytes for {views} views")]
    BadImages {
        views: usize,
        width: u32,
        height: u32,
        bytes: usize,
    },
}

/// The text task's alignment of one model: the per-view cosines and the service's value.
#[derive(Debug, Clone, PartialEq)]
pub struct TextAlignment {
    pub cosines: Vec<f64>,
    /// Geometric mean of the filtered, clipped cosines, ÷ 0.35 (not clipped after).
    pub alignment_score: f64,
}

/// `x / ‖x‖` in `f64`.
fn normalised(x: &[f32]) -> Vec<f64> {
    let norm = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
    x.iter().map(|&v| f64::from(v) / norm).collect()
}

impl ConvnextClip {
    /// `encode_image` of every view (before normalisation), after the service's
    /// preprocessing.
    pub fn encode_images(&self, images: &ScoreImages) -> Result<Vec<Vec<f32>>, ClipError> {
        let bad = || ClipError::BadImages {
            views: images.views,
            width: images.width,
            height: images.height,
            bytes: images.rgb8.len(),
        };
        if images.views == 0 {
            return Err(ClipError::NoViews);
        }
        let per_view = images.pixels_per_view().checked_mul(3).ok_or_else(bad)?;
        if per_view == 0 || images.views.checked_mul(per_view) != Some(images.rgb8.len()) {
            return Err(bad());
        }
        let (w, h) = (images.width as usize, images.height as usize);
        let views: Vec<_> = (0..images.views)
            .map(|v| forward::preprocess(images.view(v), w, h))
            .collect();
        let c = &self.config;
        Ok(forward::encode_images(
            &self.visual,
            (c.kernel, c.stem_patch, c.downsample),
            &views,
        ))
    }

    /// `encode_text` of a tokenized prompt (before normalisation).
    pub fn encode_text(&self, ids: &[u32]) -> Result<Vec<f32>, ClipError> {
        if ids.len() != self.config.context {
            return Err(ClipError::ContextMismatch {
                tokenizer: ids.len(),
                model: self.config.context,
            });
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.config.vocab) {
            return Err(ClipError::TokenOutOfVocabulary {
                id,
                vocab: self.config.vocab,
            });
        }
        Ok(forward::encode_text(&self.text, ids))
    }

    /// The cosine of each view's embedding with the prompt's.
    pub fn cosines(
        &self,
        images: &ScoreImages,
        tokenizer: &ClipTokenizer,
        prompt: &str,
    ) -> Result<Vec<f64>, ClipError> {
        let ids = tokenizer.tokenize(prompt)?;
        let text = normalised(&self.encode_text(&ids)?);
        Ok(self
            .encode_images(images)?
            .iter()
            .map(|img| normalised(img).iter().zip(&text).map(|(a, b)| a * b).sum())
            .collect())
    }

    /// The service's alignment score of a text task.
    pub fn text_alignment(
        &self,
        images: &ScoreImages,
        tokenizer: &ClipTokenizer,
        prompt: &str,
    ) -> Result<TextAlignment, ClipError> {
        let cosines = self.cosines(images, tokenizer, prompt)?;
        let alignment_score = aggregate::text_alignment(&cosines);
        Ok(TextAlignment {
            cosines,
            alignment_score,
        })
    }
}
