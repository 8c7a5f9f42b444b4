//! How the simulator scores a submission. Until SPZ decoding lands this is a deterministic
//! function of the payload size plus hash-derived noise; it is the one place to switch to
//! decoding the splat and scoring its statistics.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Scoring knobs.
#[derive(Debug, Clone)]
pub struct ScoreSettings {
    /// Payload size (decoded bytes) at which the size term reaches 1 − 1/e ≈ 0.63.
    pub reference_bytes: f64,
    /// Half-width of the uniform noise added to the score, derived from the payload hash.
    pub noise: f64,
}

impl Default for ScoreSettings {
    fn default() -> Self {
        Self {
            reference_bytes: 100_000.0,
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
}

/// Scores a base64 payload: `1 − exp(−bytes / reference)` plus noise in `[−noise, noise]`,
/// clamped to `[0, 1]`. Payloads that are not base64 fail validation.
pub fn score_submission(results_b64: &str, settings: &ScoreSettings) -> Scored {
    let Ok(payload) = base64::engine::general_purpose::STANDARD.decode(results_b64.as_bytes())
    else {
        return Scored {
            payload_bytes: 0,
            score: None,
        };
    };
    let size = payload.len() as f64;
    let base = 1.0 - (-size / settings.reference_bytes.max(1.0)).exp();
    let digest = Sha256::digest(&payload);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let unit = u64::from_le_bytes(first) as f64 / u64::MAX as f64;
    let noise = (unit * 2.0 - 1.0) * settings.noise;
    Scored {
        payload_bytes: payload.len(),
        score: Some((base + noise).clamp(0.0, 1.0)),
    }
}
