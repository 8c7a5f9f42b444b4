//! The service's aggregation, written once: the outlier filter, the means, the final formula
//! with its constants and the alignment cut-off (`VALIDATOR_SCORING.md` §9;
//! `validation/engine/validation_engine.py:40-60`, `engine/utils/statistics_computation_utils.py`,
//! `engine/metrics/similarity_scorer.py`, `engine/utils/gs_data_checker_utils.py:11-14`).

/// A result is accepted when its score reaches this (`generation.quality_threshold`).
pub const VALIDATOR_THRESHOLD: f64 = 0.6;
/// Alignment under this scores the model 0, whatever else it is.
pub const ALIGNMENT_CUTOFF: f64 = 0.3;
/// Weights of the final score's parts.
pub const IQA_WEIGHT: f64 = 0.75;
pub const ALIGNMENT_WEIGHT: f64 = 0.2;
pub const SSIM_WEIGHT: f64 = 0.025;
pub const LPIPS_WEIGHT: f64 = 0.025;
/// The SSIM and LPIPS terms pass through `1 / (1 + e^(−k(x − x0)))` with these `(k, x0)`.
pub const SSIM_SIGMOID: (f64, f64) = (35.0, 0.83);
pub const LPIPS_SIGMOID: (f64, f64) = (30.0, 0.7);
/// The outlier filter: pytod `KNN` defaults (`n_neighbors = 5`, `contamination = 0.1`).
pub const OUTLIER_NEIGHBOURS: usize = 5;
pub const OUTLIER_CONTAMINATION: f64 = 0.1;

/// The service's `sigmoid(x, k, x0)`.
pub fn sigmoid(x: f64, (k, x0): (f64, f64)) -> f64 {
    1.0 / (1.0 + (-k * (x - x0)).exp())
}

/// pytod's KNN outlier filter as the service applies it: each value's score is its distance
/// to its 5th nearest other value; values scoring strictly above the 90th percentile of the
/// scores (numpy's linear interpolation) are dropped. Order of the result is irrelevant (the
/// service sorts first). Fewer values than neighbours + 1: nothing is dropped (pytod cannot
/// fit them; the service never has fewer than 16).
pub fn filter_outliers(values: &[f64]) -> Vec<f64> {
    let n = values.len();
    if n <= OUTLIER_NEIGHBOURS {
        return values.to_vec();
    }
    let scores: Vec<f64> = values
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let mut d: Vec<f64> = values
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, &y)| (x - y).abs())
                .collect();
            d.sort_by(f64::total_cmp);
            d[OUTLIER_NEIGHBOURS - 1]
        })
        .collect();
    let threshold = percentile_linear(&scores, 100.0 * (1.0 - OUTLIER_CONTAMINATION));
    values
        .iter()
        .zip(&scores)
        .filter(|&(_, &s)| s <= threshold)
        .map(|(&v, _)| v)
        .collect()
}

/// `numpy.percentile(values, q)` with the default linear interpolation.
fn percentile_linear(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Arithmetic mean (0 for no values).
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// `exp(mean(log x))`, as `compute_mean(.., "geometric_mean")`: a zero gives 0, a negative
/// value NaN, exactly as torch does.
pub fn geometric_mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp()
}

/// The image task's alignment as the service computes it (`alignment_scorer.py:175-181`,
/// `validation_engine.py:76-78`): the outlier filter on the prompt-view cosines, then the
/// geometric mean; no clip and no ÷ 0.35 (unlike the text task). A kept negative cosine
/// gives NaN, as in the service (`scorer::llm2clip` types that case).
pub fn image_alignment(cosines: &[f64]) -> f64 {
    geometric_mean(&filter_outliers(cosines))
}

/// The text task: the engine divides the CLIP geometric mean by this and does not clip
/// after (`validation_engine.py:102`, "artificial normalization for current clip version").
pub const TEXT_ALIGNMENT_DIVISOR: f64 = 0.35;

/// The text task's alignment as the service computes it (`alignment_scorer.py:91-95`,
/// `validation_engine.py:90-102`): the outlier filter on the prompt-view cosines, each kept
/// value clipped to [0, 1] (`torch.clip`; NaN stays NaN), the geometric mean, ÷ 0.35.
pub fn text_alignment(cosines: &[f64]) -> f64 {
    let kept: Vec<f64> = filter_outliers(cosines)
        .into_iter()
        .map(|c| c.clamp(0.0, 1.0))
        .collect();
    geometric_mean(&kept) / TEXT_ALIGNMENT_DIVISOR
}

/// The per-view and per-pair numbers the networks produce for one model's 16 renders.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PartScores {
    /// sigmoid(quality logit) of each view.
    pub view_quality: Vec<f64>,
    /// SSIM of each pair `(i, (i + 1) mod n)`, wrap-around included.
    pub pair_ssim: Vec<f64>,
    /// LPIPS distance of each pair `(i, (i + 1) mod n)`.
    pub pair_lpips: Vec<f64>,
}

/// The validator's result for one model, its parts named as the service's JSON names them.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatorScore {
    pub score: f64,
    pub iqa: f64,
    pub alignment_score: f64,
    /// True when `alignment_score` is the configured stand-in, not a measured alignment.
    pub alignment_assumed: bool,
    pub ssim: f64,
    pub lpips: f64,
    pub parts: PartScores,
}

impl ValidatorScore {
    /// The service's aggregation of `parts` with the given alignment (already divided by
    /// 0.35 for text tasks): IQA is the plain mean of the views; SSIM the geometric mean of
    /// the filtered pairs; LPIPS one minus the geometric mean of the filtered pairs; then
    /// the final formula, 0 when alignment is under the cut-off.
    pub fn aggregate(parts: PartScores, alignment_score: f64, alignment_assumed: bool) -> Self {
        let iqa = mean(&parts.view_quality);
        let ssim = geometric_mean(&filter_outliers(&parts.pair_ssim));
        let lpips = 1.0 - geometric_mean(&filter_outliers(&parts.pair_lpips));
        let score = final_score(iqa, alignment_score, ssim, lpips);
        Self {
            score,
            iqa,
            alignment_score,
            alignment_assumed,
            ssim,
            lpips,
            parts,
        }
    }
}

/// `0.75·iqa + 0.2·alignment + 0.025·σ(ssim; 35, 0.83) + 0.025·lpips·σ(lpips; 30, 0.7)`,
/// or 0 when alignment is under 0.3. A NaN alignment passes the cut-off test there, as in
/// the service, and makes the score NaN.
pub fn final_score(iqa: f64, alignment: f64, ssim: f64, lpips: f64) -> f64 {
    if alignment < ALIGNMENT_CUTOFF {
        return 0.0;
    }
    IQA_WEIGHT * iqa
        + ALIGNMENT_WEIGHT * alignment
        + SSIM_WEIGHT * sigmoid(ssim, SSIM_SIGMOID)
        + LPIPS_WEIGHT * lpips * sigmoid(lpips, LPIPS_SIGMOID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_keeps_everything_for_a_tight_cluster_and_drops_a_far_value() {
        let mut values: Vec<f64> = (0..15).map(|i| 0.90 + 0.001 * f64::from(i)).collect();
        values.push(0.2);
        let kept = filter_outliers(&values);
        assert_eq!(kept.len(), 15, "{kept:?}");
        assert!(kept.iter().all(|&v| v > 0.5));
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        // numpy.percentile(range(16), 90) = 13.5
        let v: Vec<f64> = (0..16).map(f64::from).collect();
        assert!((percentile_linear(&v, 90.0) - 13.5).abs() < 1e-12);
    }

    #[test]
    fn cut_off_zeroes_and_maximum_is_about_1_371() {
        assert_eq!(final_score(1.0, 0.29, 1.0, 1.0), 0.0);
        let max = final_score(1.0, 1.0 / 0.35, 1.0, 1.0);
        assert!((max - 1.371).abs() < 1e-3, "{max}");
        assert!(final_score(0.5, f64::NAN, 0.9, 0.9).is_nan());
    }

    #[test]
    fn geometric_mean_of_a_zero_is_zero_and_of_a_negative_is_nan() {
        assert_eq!(geometric_mean(&[0.5, 0.0]), 0.0);
        assert!(geometric_mean(&[0.5, -0.1]).is_nan());
        assert!((geometric_mean(&[0.25, 1.0]) - 0.5).abs() < 1e-12);
    }
}
