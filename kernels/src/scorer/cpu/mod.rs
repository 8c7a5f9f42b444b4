//! The CPU reference of the scorer: every operation (matrix products through a crate, the
//! rest by hand), the DINOv2 quality forward, LPIPS and SSIM of the 8-bit views. CI's path,
//! and the ground truth the GPU path is checked against.

use super::{aggregate::PartScores, images::ScoreImages, model::ScorerModels};

/// Per-view quality and per-pair SSIM and LPIPS of `images`, as the service computes them.
pub fn score_parts(models: &ScorerModels, images: &ScoreImages) -> PartScores {
    let _ = (models, images);
    unimplemented!("being written")
}
