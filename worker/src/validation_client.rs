//! The client of the fidelity gate's tier 2 (ARCHITECTURE.md, the gate): the subnet's own validation
//! service (three-gen-subnet `validation/`, FastAPI, port 8094 by default). A text task goes
//! to `POST {endpoint}/validate_txt_to_3d_ply/` with `{"prompt": ..., "data": <base64 SPZ>,
//! "compression": 2, ...}`, an image task to `/validate_img_to_3d_ply/` with the base64 image
//! in `prompt_image` instead; both answer `{"score", "iqa", "alignment_score", "ssim",
//! "lpips", "preview", "grid_preview"}`. Every way a call gives no usable score is a
//! [`ValidateError`] naming the URL, so the worker can apply its `validation_unavailable`
//! policy and say why.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use splatfleet_common::messages::TaskKind;

use crate::service_http::{endpoint_url, BadEndpoint, ExchangeError, ServiceHttp};

const SERVICE: &str = "validation";

/// Largest answer read. We never ask for previews, so a real answer is a few hundred
/// bytes; the cap leaves room for a service that sends its 518×518 previews anyway.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// `compression` value meaning the `data` field is SPZ (0 would be a raw PLY).
const COMPRESSION_SPZ: u8 = 2;

/// Why one validation call gave no score.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    BadEndpoint(#[from] BadEndpoint),
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    #[error("validation service {url} answered something that is not its JSON: {reason}")]
    Malformed { url: String, reason: String },
    #[error("validation service {url} answered JSON without a `score`")]
    MissingScore { url: String },
    #[error("validation service {url} answered a score that is not a finite number: {score}")]
    NonFiniteScore { url: String, score: f64 },
}

impl ValidateError {
    /// A short label for metrics and records.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadEndpoint(_) => "bad_endpoint",
            Self::Exchange(e) => e.kind(),
            Self::Malformed { .. } => "malformed",
            Self::MissingScore { .. } => "missing_score",
            Self::NonFiniteScore { .. } => "non_finite_score",
        }
    }
}

/// What the service said about one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValidationScores {
    /// The final score, 0..1: what the validator compares with its threshold.
    pub score: f64,
    /// The sub-scores, when the service sent them as finite numbers.
    pub iqa: Option<f64>,
    pub alignment_score: Option<f64>,
    pub ssim: Option<f64>,
    pub lpips: Option<f64>,
}

impl ValidationScores {
    /// `(name, value)` for the attempt's gate metrics, prefixed `tier2_`.
    pub fn gate_metrics(&self) -> Vec<(&'static str, f64)> {
        let mut metrics = vec![("tier2_score", self.score)];
        for (name, value) in [
            ("tier2_iqa", self.iqa),
            ("tier2_alignment_score", self.alignment_score),
            ("tier2_ssim", self.ssim),
            ("tier2_lpips", self.lpips),
        ] {
            if let Some(value) = value {
                metrics.push((name, value));
            }
        }
        metrics
    }
}

/// The request body of both endpoints (`ValidationRequest` in the service).
#[derive(Debug, Serialize)]
struct RequestBody<'a> {
    /// Text tasks: the prompt (the service caps it at 1024 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<&'a str>,
    /// Image tasks: the base64 image, verbatim from the task.
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_image: Option<&'a str>,
    data: &'a str,
    compression: u8,
    generate_single_preview: bool,
    generate_grid_preview: bool,
}

/// The answer (`ValidationResponse`); unknown fields such as `preview` are ignored, so a
/// newer service with more sub-scores still parses.
#[derive(Debug, Deserialize)]
struct ResponseBody {
    score: Option<f64>,
    iqa: Option<f64>,
    // The service declares `alignment` with the serialisation alias `alignment_score`;
    // FastAPI answers by alias, but accept the field name too.
    #[serde(alias = "alignment")]
    alignment_score: Option<f64>,
    ssim: Option<f64>,
    lpips: Option<f64>,
}

/// Parses an answer body of the service at `url`.
pub fn parse_response(url: &str, body: &[u8]) -> Result<ValidationScores, ValidateError> {
    let parsed: ResponseBody =
        serde_json::from_slice(body).map_err(|e| ValidateError::Malformed {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    let score = parsed.score.ok_or_else(|| ValidateError::MissingScore {
        url: url.to_owned(),
    })?;
    if !score.is_finite() {
        return Err(ValidateError::NonFiniteScore {
            url: url.to_owned(),
            score,
        });
    }
    let finite = |value: Option<f64>| value.filter(|v| v.is_finite());
    Ok(ValidationScores {
        score,
        iqa: finite(parsed.iqa),
        alignment_score: finite(parsed.alignment_score),
        ssim: finite(parsed.ssim),
        lpips: finite(parsed.lpips),
    })
}

/// A client of one validation service.
#[derive(Debug, Clone)]
pub struct ValidationClient {
    text_url: String,
    image_url: String,
    http: ServiceHttp,
}

impl ValidationClient {
    /// A client of the service at `endpoint` (a base URL such as `http://127.0.0.1:8094`).
    pub fn new(endpoint: &str) -> Result<Self, ValidateError> {
        Ok(Self {
            text_url: endpoint_url(SERVICE, endpoint, "validate_txt_to_3d_ply/")?,
            image_url: endpoint_url(SERVICE, endpoint, "validate_img_to_3d_ply/")?,
            http: ServiceHttp::new(SERVICE),
        })
    }

    /// The URL a task of `kind` is validated at.
    pub fn url(&self, kind: TaskKind) -> &str {
        match kind {
            TaskKind::Text => &self.text_url,
            TaskKind::Image => &self.image_url,
        }
    }

    /// Scores the SPZ model `spz` against the task's prompt; `timeout` bounds the whole
    /// exchange.
    pub async fn validate(
        &self,
        kind: TaskKind,
        prompt: &str,
        spz: &[u8],
        timeout: Duration,
    ) -> Result<ValidationScores, ValidateError> {
        let url = self.url(kind);
        let data = base64::engine::general_purpose::STANDARD.encode(spz);
        let body = RequestBody {
            prompt: (kind == TaskKind::Text).then_some(prompt),
            prompt_image: (kind == TaskKind::Image).then_some(prompt),
            data: &data,
            compression: COMPRESSION_SPZ,
            generate_single_preview: false,
            generate_grid_preview: false,
        };
        // Serialising a struct of strings, bools and an integer cannot fail; map it anyway
        // rather than unwrap.
        let json = serde_json::to_vec(&body).map_err(|e| ValidateError::Malformed {
            url: url.to_owned(),
            reason: format!("request could not be encoded: {e}"),
        })?;
        drop(data);
        let answer = self
            .http
            .post(
                url,
                "application/json",
                Bytes::from(json),
                MAX_RESPONSE_BYTES,
                timeout,
            )
            .await?;
        parse_response(url, &answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://127.0.0.1:8094/validate_txt_to_3d_ply/";

    #[test]
    fn a_full_answer_parses_with_every_sub_score() {
        let body = br#"{"score": 0.71, "iqa": 0.8, "alignment_score": 0.65, "ssim": 0.9,
            "lpips": 0.1, "preview": null, "grid_preview": null}"#;
        let scores = parse_response(URL, body).expect("parses");
        assert_eq!(
            scores,
            ValidationScores {
                score: 0.71,
                iqa: Some(0.8),
                alignment_score: Some(0.65),
                ssim: Some(0.9),
                lpips: Some(0.1),
            }
        );
        let names: Vec<_> = scores.gate_metrics().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "tier2_score",
                "tier2_iqa",
                "tier2_alignment_score",
                "tier2_ssim",
                "tier2_lpips"
            ]
        );
    }

    #[test]
    fn a_score_alone_parses_and_unknown_fields_are_ignored() {
        let scores = parse_response(URL, br#"{"score": 0, "new_metric": "x"}"#).expect("parses");
        assert_eq!(scores.score, 0.0);
        assert_eq!(scores.iqa, None);
        assert_eq!(scores.gate_metrics(), vec![("tier2_score", 0.0)]);
        let aliased = parse_response(URL, br#"{"score": 0.5, "alignment": 0.4}"#).expect("parses");
        assert_eq!(aliased.alignment_score, Some(0.4));
    }

    #[test]
    fn malformed_answers_are_named() {
        for body in [
            &b"not json"[..],
            b"",
            b"{\"score\": 0.7",
            b"[0.7]",
            b"0.7",
            b"{\"score\": \"0.7\"}",
            b"{\"score\": NaN}",
            b"{\"score\": 0.7, \"iqa\": \"high\"}",
        ] {
            let err = parse_response(URL, body).expect_err("malformed");
            assert_eq!(err.kind(), "malformed", "{body:?}: {err}");
            assert!(err.to_string().contains(URL), "{err}");
        }
    }

    #[test]
    fn a_missing_or_null_score_is_its_own_error() {
        for body in [&br#"{"iqa": 0.7}"#[..], br#"{"score": null}"#, b"{}"] {
            let err = parse_response(URL, body).expect_err("no score");
            assert!(
                matches!(err, ValidateError::MissingScore { .. }),
                "{body:?}: {err:?}"
            );
        }
    }

    #[test]
    fn an_out_of_range_number_is_not_a_score() {
        // JSON cannot spell NaN or infinity; serde_json refuses a literal that overflows f64.
        let err = parse_response(URL, br#"{"score": 1e400}"#).expect_err("overflow");
        assert_eq!(err.kind(), "malformed", "{err}");
    }

    #[test]
    fn requests_carry_the_prompt_in_the_field_of_their_kind() {
        let text = RequestBody {
            prompt: Some("a red teapot"),
            prompt_image: None,
            data: "AAAA",
            compression: COMPRESSION_SPZ,
            generate_single_preview: false,
            generate_grid_preview: false,
        };
        let json: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec(&text).expect("encodes")).expect("json");
        assert_eq!(json["prompt"], "a red teapot");
        assert_eq!(json["compression"], 2);
        assert_eq!(json["data"], "AAAA");
        assert!(json.get("prompt_image").is_none());
    }

    #[test]
    fn each_kind_has_its_endpoint() {
        let client = ValidationClient::new("http://127.0.0.1:8094").expect("client");
        assert_eq!(
            client.url(TaskKind::Text),
            "http://127.0.0.1:8094/validate_txt_to_3d_ply/"
        );
        assert_eq!(
            client.url(TaskKind::Image),
            "http://127.0.0.1:8094/validate_img_to_3d_ply/"
        );
        assert!(matches!(
            ValidationClient::new("not a url"),
            Err(ValidateError::BadEndpoint { .. })
        ));
    }
}
