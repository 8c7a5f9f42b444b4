//! The table printed at the end of a check: how many files passed, failures grouped by their
//! first reason's category, the local-score distribution (min, p10, p50, p90, max) with a text
//! histogram, and the first few failing files.

use std::{collections::BTreeMap, fmt::Write as _};

use super::inspect::FileCheck;

/// Histogram bins over 0..1.
const BINS: usize = 10;
/// Width of the longest histogram bar, in characters.
const BAR_WIDTH: usize = 40;
/// Failing files listed by name; the CSV has all of them.
const LISTED_FAILURES: usize = 20;

/// The `p`-th percentile (0..=100) of sorted values, nearest rank.
pub fn percentile(sorted: &[f32], p: f64) -> Option<f32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Renders the summary of `checks` as text.
pub fn render(checks: &[FileCheck]) -> String {
    let mut out = String::new();
    let passed = checks.iter().filter(|c| c.passed).count();
    let failed = checks.len() - passed;
    let _ = writeln!(
        out,
        "checked {} files: {passed} passed, {failed} failed",
        checks.len()
    );
    let mut by_category: BTreeMap<&str, usize> = BTreeMap::new();
    for check in checks.iter().filter(|c| !c.passed) {
        *by_category.entry(check.category()).or_default() += 1;
    }
    if !by_category.is_empty() {
        let _ = writeln!(out, "\nfailed by reason (first reason of each file):");
        let width = by_category.keys().map(|k| k.len()).max().unwrap_or(0);
        for (category, count) in &by_category {
            let _ = writeln!(out, "  {category:<width$}  {count:>6}");
        }
    }
    let mut scores: Vec<f32> = checks
        .iter()
        .filter_map(|c| c.local_score)
        .filter(|s| s.is_finite())
        .collect();
    scores.sort_by(f32::total_cmp);
    if scores.is_empty() {
        let _ = writeln!(out, "\nlocal score: no file reached the gate");
    } else {
        write_distribution(&mut out, &scores);
    }
    let failures: Vec<&FileCheck> = checks.iter().filter(|c| !c.passed).collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "\nfailed files:");
        for check in failures.iter().take(LISTED_FAILURES) {
            let _ = writeln!(out, "  {}: {}", check.path.display(), check.reasons_text());
        }
        if failures.len() > LISTED_FAILURES {
            let _ = writeln!(
                out,
                "  ... and {} more (--csv lists every file)",
                failures.len() - LISTED_FAILURES
            );
        }
    }
    out
}

fn write_distribution(out: &mut String, sorted: &[f32]) {
    let stat = |p: f64| percentile(sorted, p).unwrap_or(f32::NAN);
    let _ = writeln!(
        out,
        "\nlocal score over {} gated files: min {:.3}  p10 {:.3}  p50 {:.3}  p90 {:.3}  max {:.3}",
        sorted.len(),
        stat(0.0),
        stat(10.0),
        stat(50.0),
        stat(90.0),
        stat(100.0)
    );
    let mut counts = [0usize; BINS];
    for score in sorted {
        // A score of exactly 1.0 belongs to the last bin.
        let bin = ((score.clamp(0.0, 1.0) * BINS as f32) as usize).min(BINS - 1);
        counts[bin] += 1;
    }
    let tallest = counts.iter().copied().max().unwrap_or(0).max(1);
    for (bin, count) in counts.iter().enumerate() {
        let low = bin as f32 / BINS as f32;
        let high = (bin + 1) as f32 / BINS as f32;
        let bar = "#".repeat((count * BAR_WIDTH).div_ceil(tallest));
        let _ = writeln!(out, "  {low:.1}-{high:.1} {count:>6} {bar}");
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
        assert_eq!(percentile(&v, 0.0), Some(0.1));
        assert_eq!(percentile(&v, 10.0), Some(0.1));
        assert_eq!(percentile(&v, 50.0), Some(0.5));
        assert_eq!(percentile(&v, 90.0), Some(0.9));
        assert_eq!(percentile(&v, 100.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
