//! How the simulator scores a submission. By default as a validator would begin to: the
//! payload must be base64 of SN17's SPZ and decode; a model that breaks the validator's
//! hard-zero rules (too few gaussians, mostly transparent, identity rotations) scores 0; any
//! other scores `1 − exp(−gaussians / reference)` plus deterministic hash-derived noise, so
//! gate calibration can be studied. Protocol-only tests that send arbitrary bytes use the
//! payload-size mode instead.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use splatfleet_common::splat::{decode_spz, SpzLimits};

/// What the score is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoreMode {
    /// Decode the SPZ and score the splat (what validators do).
    #[default]
    Splat,
    /// Score the payload's size; any base64 passes validation.
    PayloadSize,
}

/// Scoring knobs.
#[derive(Debug, Clone)]
pub struct ScoreSettings {
    pub mode: ScoreMode,
    /// Payload size (decoded bytes) at which the size score reaches 1 − 1/e ≈ 0.63.
    pub reference_bytes: f64,
    /// Gaussian count at which the splat score reaches 1 − 1/e ≈ 0.63.
    pub reference_gaussians: f64,
    /// Half-width of the uniform noise added to the score, derived from the payload hash.
    pub noise: f64,
}

impl Default for ScoreSettings {
    fn default() -> Self {
        Self {
            mode: ScoreMode::Splat,
            reference_bytes: 100_000.0,
            reference_gaussians: 20_000.0,
            noise: 0.02,
        }
    }
}

/// A scored submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub payload_bytes: usize,
    /// `None` when the payload could not be validated (the validator's `validation_failed`).
    pub score: Option<f64>,
    /// Gaussians in the decoded model (splat mode).
    pub gaussians: Option<usize>,
}

/// Scores a base64 payload as `settings.mode` says; clamped to `[0, 1]`.
pub fn score_submission(results_b64: &str, settings: &ScoreSettings) -> Scored {
    let Ok(payload) = base64::engine::general_purpose::STANDARD.decode(results_b64.as_bytes())
    else {
        return Scored {
            payload_bytes: 0,
            score: None,
            gaussians: None,
        };
    };
    let noise = hash_noise(&payload, settings.noise);
    match settings.mode {
        ScoreMode::PayloadSize => {
            let base = 1.0 - (-(payload.len() as f64) / settings.reference_bytes.max(1.0)).exp();
            Scored {
                payload_bytes: payload.len(),
                score: Some((base + noise).clamp(0.0, 1.0)),
                gaussians: None,
            }
        }
        ScoreMode::Splat => match decode_spz(&payload, &SpzLimits::default()) {
            Err(_) => Scored {
                payload_bytes: payload.len(),
                score: None,
                gaussians: None,
            },
            Ok(decoded) => {
                let report = decoded.splat.validity();
                let score = if report.hard_zero().is_empty() {
                    let base = 1.0
                        - (-(report.count as f64) / settings.reference_gaussians.max(1.0)).exp();
                    (base + noise).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                Scored {
                    payload_bytes: payload.len(),
                    score: Some(score),
                    gaussians: Some(report.count),
                }
            }
        },
    }
}

/// Uniform in `[−half_width, half_width]`, fixed by the payload's SHA-256.
fn hash_noise(payload: &[u8], half_width: f64) -> f64 {
    let digest = Sha256::digest(payload);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let unit = u64::from_le_bytes(first) as f64 / u64::MAX as f64;
    (unit * 2.0 - 1.0) * half_width
}

#[cfg(test)]
mod tests {
    use splatfleet_common::splat::{encode_spz, Splat};

    use super::*;

    fn spz_b64(n: usize, opacity: f32) -> String {
        let mut s = Splat::zeroed(n, 0, false);
        for i in 0..n {
            let f = i as f32 / n as f32;
            s.positions[i] = [f, (f * 7.0).sin(), (f * 3.0).cos()];
            s.opacities[i] = opacity;
            s.log_scales[i] = [-4.0; 3];
            s.rotations[i] = [0.9, 0.1 + f * 0.1, 0.2, 0.3];
        }
        let bytes = encode_spz(&s).expect("encodes");
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn splat_mode_decodes_and_applies_the_hard_zero_rules() {
        let settings = ScoreSettings {
            noise: 0.0,
            ..ScoreSettings::default()
        };
        let good = score_submission(&spz_b64(30_000, 3.0), &settings);
        assert_eq!(good.gaussians, Some(30_000));
        let expected = 1.0 - (-30_000.0f64 / 20_000.0).exp();
        assert!(
            (good.score.expect("validated") - expected).abs() < 1e-9,
            "{good:?}"
        );
        assert_eq!(
            score_submission(&spz_b64(5_000, 3.0), &settings).score,
            Some(0.0),
            "too few"
        );
        assert_eq!(
            score_submission(&spz_b64(8_000, -20.0), &settings).score,
            Some(0.0),
            "transparent"
        );
        // Identity rotations do not survive SPZ's 8-bit quantisation exactly (0 becomes
        // 1/127.5), so after decoding they are not `allclose` to identity for the validator
        // either: that rule cannot fire on an SPZ submission.

        let not_spz = base64::engine::general_purpose::STANDARD.encode(b"not a splat");
        assert_eq!(
            score_submission(&not_spz, &settings).score,
            None,
            "fails validation"
        );
        assert_eq!(score_submission("%%%", &settings).score, None);
    }

    #[test]
    fn payload_size_mode_scores_any_base64() {
        let settings = ScoreSettings {
            mode: ScoreMode::PayloadSize,
            noise: 0.0,
            ..ScoreSettings::default()
        };
        let payload = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 100_000]);
        let scored = score_submission(&payload, &settings);
        assert!((scored.score.expect("validated") - (1.0 - (-1.0f64).exp())).abs() < 1e-9);
    }
}
