//! The CPU reference of the scorer: every operation (matrix products through
//! `matrixmultiply`, the rest by hand), the DINOv2 quality forward, LPIPS and SSIM of the
//! 8-bit views, tied together by [`try_score_parts`]. CI's path, and the ground truth the GPU
//! path is checked against.
//!
//! One job per file: [`ops`] (tensor operations), [`resize`] (`F.interpolate`), [`dinov2`]
//! (the backbone), [`quality`] (the service's per-view quality), [`lpips`], [`ssim`],
//! [`check`] (every shape, before any math).
//!
//! Numerics: `f32` storage and element-wise arithmetic in PyTorch's operation order;
//! reductions that torch does in `f32` (LayerNorm statistics, LPIPS channel sums and means,
//! the SSIM mean) are accumulated in `f64` here; matrix products are `matrixmultiply`'s
//! `f32` kernels. Results are deterministic: each view and each pair is computed by
//! sequential code, rayon only spreads them over threads and keeps their order.

pub mod check;
pub mod dinov2;
pub mod lpips;
pub mod ops;
pub mod quality;
pub mod resize;
pub mod ssim;
#[cfg(test)]
pub(crate) mod test_models;

use rayon::prelude::*;

use super::{aggregate::PartScores, images::ScoreImages, model::ScorerModels};

pub use check::check_models;

/// The CLS token of `last_hidden_state` for each view, after the service's preprocessing:
/// the embedding the quality head reads, for parity checks against transformers.
pub fn quality_embeddings(
    model: &super::model::QualityModel,
    images: &ScoreImages,
) -> Result<Vec<Vec<f32>>, ScoreError> {
    check::check_dinov2(&model.backbone)?;
    let (w, h) = (images.width as usize, images.height as usize);
    (0..images.views)
        .into_par_iter()
        .map(|v| dinov2::cls_token(&model.backbone, &quality::preprocess(images.view(v), w, h)))
        .collect()
}

/// Why the CPU reference could not score: a model whose shapes do not fit together, or
/// images it cannot read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoreError {
    #[error("scorer model: {0}")]
    Model(String),
    #[error("score images: {0}")]
    Image(String),
}

/// Per-view quality and per-pair SSIM and LPIPS of `images`, as the service computes them;
/// pairs are `(i, (i + 1) mod n)`, wrap-around included. Each view's LPIPS taps and SSIM
/// planes are computed once and serve both of its pairs; the SSIM planes (9 `f32` planes
/// of the view's size, 9.7 MB at 518²) are held for every view until the pairs are done.
pub fn try_score_parts(
    models: &ScorerModels,
    images: &ScoreImages,
) -> Result<PartScores, ScoreError> {
    check_models(models)?;
    let (w, h) = (images.width as usize, images.height as usize);
    let n = images.views;
    let expected = n
        .checked_mul(images.pixels_per_view())
        .and_then(|v| v.checked_mul(3));
    if expected != Some(images.rgb8.len()) || (n > 0 && (w == 0 || h == 0)) {
        return Err(ScoreError::Image(format!(
            "{} bytes for {n} views of {w}×{h} RGB",
            images.rgb8.len()
        )));
    }
    let per_view = (0..n)
        .into_par_iter()
        .map(|v| -> Result<_, ScoreError> {
            let rgb = images.view(v);
            let quality = quality::view_quality(&models.quality, rgb, w, h)?;
            let lpips = lpips::features(&models.lpips, rgb, w, h);
            let ssim = ssim::prepare(rgb, w, h)?;
            Ok((quality, lpips, ssim))
        })
        .collect::<Result<Vec<_>, ScoreError>>()?;
    let (pair_ssim, pair_lpips): (Vec<f64>, Vec<f64>) = (0..n)
        .into_par_iter()
        .map(|i| {
            let (a, b) = (&per_view[i], &per_view[(i + 1) % n]);
            (
                ssim::ssim(&a.2, &b.2),
                lpips::distance(&models.lpips, &a.1, &b.1),
            )
        })
        .unzip();
    Ok(PartScores {
        view_quality: per_view.iter().map(|v| v.0).collect(),
        pair_ssim,
        pair_lpips,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_models::{random_images, tiny_models};

    #[test]
    fn scores_every_view_and_every_adjacent_pair_with_wrap_around() {
        let models = tiny_models(60);
        let mut images = random_images(4, 48, 40, 61);
        // View 3 is a copy of view 0: the wrap-around pair (3, 0) is identical.
        let n = images.pixels_per_view() * 3;
        let first = images.rgb8[..n].to_vec();
        images.rgb8[3 * n..].copy_from_slice(&first);
        let parts = try_score_parts(&models, &images).expect("tiny models");
        assert_eq!(parts.view_quality.len(), 4);
        assert_eq!(parts.view_quality[0], parts.view_quality[3]);
        assert!(parts.view_quality.iter().all(|q| (0.0..=1.0).contains(q)));
        assert_eq!(parts.pair_lpips[3], 0.0);
        assert!((parts.pair_ssim[3] - 1.0).abs() < 1e-4);
        for i in 0..3 {
            assert!(parts.pair_lpips[i] > 0.0 && parts.pair_ssim[i] < 0.999);
        }
        // Pair (2, 3) is pair (2, 0) and is scored independently of which view is first.
        let a = ssim::prepare(images.view(2), 48, 40).expect("size");
        let b = ssim::prepare(images.view(0), 48, 40).expect("size");
        assert_eq!(parts.pair_ssim[2], ssim::ssim(&a, &b));
        // Deterministic.
        assert_eq!(
            try_score_parts(&models, &images).expect("tiny model"),
            parts
        );
    }

    #[test]
    fn unreadable_input_gives_a_typed_error_not_a_panic() {
        let models = tiny_models(62);
        let mut images = random_images(3, 16, 16, 63);
        images.rgb8.pop();
        assert!(matches!(
            try_score_parts(&models, &images),
            Err(ScoreError::Image(_))
        ));
        let mut broken = models.clone();
        broken.quality.score_head.weight.shape = vec![2, 32];
        assert!(matches!(
            try_score_parts(&broken, &random_images(2, 16, 16, 64)),
            Err(ScoreError::Model(_))
        ));
        // No views: nothing to score.
        let empty = ScoreImages {
            views: 0,
            width: 518,
            height: 518,
            rgb8: vec![],
        };
        assert_eq!(try_score_parts(&models, &empty), Ok(PartScores::default()));
    }

    /// This thread's CPU time (Linux `schedstat`), so stage timings mean something on a
    /// loaded machine; wall time elsewhere.
    fn thread_time() -> std::time::Duration {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .map(std::time::Duration::from_nanos)
            .unwrap_or_else(|| std::time::UNIX_EPOCH.elapsed().unwrap_or_default())
    }

    /// Single-thread CPU time of each stage on one view (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn timing_stages_one_view() {
        let models = tiny_models(72);
        for side in [128usize, 518] {
            let images = random_images(2, side as u32, side as u32, 73);
            let (a, b) = (images.view(0), images.view(1));
            let mut t = thread_time();
            let mut lap = || {
                let now = thread_time();
                let d = now.saturating_sub(t);
                t = now;
                d
            };
            let x = quality::preprocess(a, side, side);
            let t_pre = lap();
            let e = dinov2::embed(&models.quality.backbone, &x).expect("tiny");
            let t_embed = lap();
            let q = quality::quality_logit(&models.quality, &x).expect("tiny");
            let t_dino = lap();
            let li = lpips::input(a, side, side);
            let t_li = lap();
            let fa = lpips::features(&models.lpips, a, side, side);
            let t_lp = lap();
            let fb = lpips::features(&models.lpips, b, side, side);
            let sa = ssim::prepare(a, side, side).expect("size");
            let _ = lap();
            let sb = ssim::prepare(b, side, side).expect("size");
            let t_sp = lap();
            let s = ssim::ssim(&sa, &sb);
            let t_ss = lap();
            let d = lpips::distance(&models.lpips, &fa, &fb);
            let t_ld = lap();
            println!(
                "{side}²: preprocess {t_pre:?}, embed {t_embed:?}, DINOv2 (embed again) + head \
                 {t_dino:?}, LPIPS input {t_li:?}, LPIPS features (input again) {t_lp:?}, \
                 SSIM prepare {t_sp:?}, SSIM pair {t_ss:?}, LPIPS pair {t_ld:?} \
                 ({} {} {q} {s} {d})",
                e.len(),
                li.data.len()
            );
        }
    }

    /// Timing of the tiny model on 16 views (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn timing_tiny_16_views() {
        let models = tiny_models(70);
        for side in [128u32, 518] {
            let images = random_images(16, side, side, 71);
            let t = std::time::Instant::now();
            let parts = try_score_parts(&models, &images).expect("tiny model");
            let dt = t.elapsed();
            assert!(parts.view_quality.iter().all(|v| v.is_finite()));
            println!("try_score_parts, tiny model, 16 views at {side}²: {dt:?}");
        }
    }
}
