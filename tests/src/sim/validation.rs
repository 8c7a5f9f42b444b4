//! `splatfleet-sim validation`: a stand-in for the subnet's validation service
//! (three-gen-subnet `validation/server/app.py`), speaking its JSON protocol on 127.0.0.1:
//! `POST /validate_txt_to_3d_ply/` and `/validate_img_to_3d_ply/` take `{prompt |
//! prompt_image, data: base64 model, compression: 0 (PLY) | 2 (SPZ), ...}` and answer
//! `{score, iqa, alignment_score, ssim, lpips, preview, grid_preview}`.
//!
//! Like the real service, a request it cannot read as JSON of that shape is a 422, and any
//! model it cannot decode, or a request without the prompt of its endpoint, scores 0 with
//! HTTP 200 (the real handler catches every error and answers `score = 0`). A model scores
//! deterministically from what it is: 0 if it breaks the validator's hard-zero rules, else
//! `(1 − exp(−gaussians / reference)) × (1 − low-opacity fraction)`, unless an override
//! fixes the score for every model or for models under a gaussian count. Faults (slow,
//! HTTP 500, garbage, no score, hang) and a request log let tests see what the worker sent.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{body::Incoming, header, Method, Request, Response, StatusCode};
use serde::Deserialize;
use splatfleet_common::splat::{decode_spz, read_ply, PlyLimits, Splat, SpzLimits};
use tokio::{net::TcpListener, task::JoinHandle};

use super::http_server::serve;

/// The real service's cap on `data` (500 MiB of base64) plus room for the other fields.
const MAX_REQUEST_BYTES: usize = 501 * 1024 * 1024;

/// The real service's cap on a text prompt, characters.
const MAX_PROMPT_CHARS: usize = 1024;

/// The text-to-3D endpoint.
pub const TEXT_PATH: &str = "/validate_txt_to_3d_ply/";
/// The image-to-3D endpoint.
pub const IMAGE_PATH: &str = "/validate_img_to_3d_ply/";

/// A misbehaviour to inject instead of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ValidationFault {
    /// Answer normally.
    #[default]
    None,
    /// Answer normally after `slow_ms`.
    Slow,
    /// HTTP 500 with a text body.
    Error500,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// HTTP 200 with JSON that has no `score`.
    NoScore,
    /// Never answer.
    Hang,
}

/// How the service scores and answers.
#[derive(Debug, Clone)]
pub struct ValidationSettings {
    pub fault: ValidationFault,
    /// Delay of [`ValidationFault::Slow`], milliseconds.
    pub slow_ms: u64,
    /// Gaussian count at which a clean, opaque model's score reaches 1 − 1/e ≈ 0.63.
    pub reference_gaussians: f64,
    /// Every model that decodes scores this, whatever it is.
    pub fixed_score: Option<f64>,
    /// Models with fewer gaussians than this score `low_score` (applied after `fixed_score`).
    pub low_below_gaussians: Option<usize>,
    pub low_score: f64,
}

impl Default for ValidationSettings {
    fn default() -> Self {
        Self {
            fault: ValidationFault::None,
            slow_ms: 2_000,
            reference_gaussians: 20_000.0,
            fixed_score: None,
            low_below_gaussians: None,
            low_score: 0.2,
        }
    }
}

/// One request the service received on a validation endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// [`TEXT_PATH`] or [`IMAGE_PATH`].
    pub path: String,
    /// `prompt` for text, `prompt_image` for image; `None` when the field was missing.
    pub prompt: Option<String>,
    pub compression: Option<i64>,
    /// Gaussians of the decoded model; `None` when it did not decode (or was not read).
    pub gaussians: Option<usize>,
    /// The score answered; `None` for a fault or a 422.
    pub score: Option<f64>,
}

/// A running validation service.
#[derive(Debug)]
pub struct SimValidation {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl SimValidation {
    /// Serves on `127.0.0.1:port` (0: a free port) until dropped.
    pub async fn start(port: u16, settings: ValidationSettings) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let settings = Arc::new(settings);
        let log = Arc::clone(&received);
        let task = serve(listener, move |req| {
            let settings = Arc::clone(&settings);
            let log = Arc::clone(&log);
            async move { handle(req, &settings, &log).await }
        });
        Ok(Self {
            addr,
            received,
            task,
        })
    }

    /// The base URL to configure (`http://127.0.0.1:port`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received on either validation endpoint so far.
    pub fn requests(&self) -> u64 {
        self.received().len() as u64
    }

    /// Every request received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        match self.received.lock() {
            Ok(log) => log.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl Drop for SimValidation {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The request body; fields the real service checks strictly are typed here so a wrong type
/// is a 422 as there.
#[derive(Debug, Deserialize)]
struct RequestBody {
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    prompt_image: Option<String>,
    data: String,
    #[serde(default)]
    compression: i64,
}

fn respond(status: StatusCode, body: impl Into<Bytes>, json: bool) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let content_type = if json {
        "application/json"
    } else {
        "text/plain"
    };
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

fn unprocessable(detail: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "detail": detail }).to_string();
    respond(StatusCode::UNPROCESSABLE_ENTITY, body, true)
}

async fn handle(
    req: Request<Incoming>,
    settings: &ValidationSettings,
    log: &Mutex<Vec<Received>>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if req.method() != Method::POST || (path != TEXT_PATH && path != IMAGE_PATH) {
        return respond(StatusCode::NOT_FOUND, "not found", false);
    }
    let body = match Limited::new(req.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return respond(StatusCode::BAD_REQUEST, format!("body: {e}"), false),
    };
    let mut received = Received {
        path: path.clone(),
        prompt: None,
        compression: None,
        gaussians: None,
        score: None,
    };
    let parsed = serde_json::from_slice::<RequestBody>(&body);
    if let Ok(request) = &parsed {
        received.prompt = if path == TEXT_PATH {
            request.prompt.clone()
        } else {
            request.prompt_image.clone()
        };
        received.compression = Some(request.compression);
    }
    let answer = match settings.fault {
        ValidationFault::None | ValidationFault::Slow => None,
        ValidationFault::Error500 => Some(respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "simulated validation failure",
            false,
        )),
        ValidationFault::Garbage => Some(respond(
            StatusCode::OK,
            "<html>this is not JSON</html>",
            true,
        )),
        ValidationFault::NoScore => Some(respond(
            StatusCode::OK,
            r#"{"iqa": 0.9, "preview": null}"#,
            true,
        )),
        ValidationFault::Hang => {
            push(log, received);
            std::future::pending::<()>().await;
            return respond(StatusCode::OK, "", false);
        }
    };
    if let Some(answer) = answer {
        push(log, received);
        return answer;
    }
    if settings.fault == ValidationFault::Slow {
        tokio::time::sleep(Duration::from_millis(settings.slow_ms)).await;
    }
    let request = match parsed {
        Ok(request) => request,
        Err(e) => {
            push(log, received);
            return unprocessable(&e.to_string());
        }
    };
    if request
        .prompt
        .as_ref()
        .is_some_and(|p| p.chars().count() > MAX_PROMPT_CHARS)
    {
        push(log, received);
        return unprocessable("prompt: String should have at most 1024 characters");
    }
    let splat = if received.prompt.is_some() {
        decode_model(&request.data, request.compression)
    } else {
        // The real endpoints score a request without their prompt field 0 without decoding.
        None
    };
    received.gaussians = splat.as_ref().map(Splat::len);
    let score = splat.as_ref().map_or(0.0, |s| score_model(s, settings));
    received.score = Some(score);
    push(log, received);
    // Sub-scores: arbitrary but deterministic functions of the score, so records show them.
    let body = serde_json::json!({
        "score": score,
        "iqa": score,
        "alignment_score": (0.5 + score / 2.0).min(1.0),
        "ssim": 0.9,
        "lpips": 0.1,
        "preview": null,
        "grid_preview": null,
    });
    respond(StatusCode::OK, body.to_string(), true)
}

fn push(log: &Mutex<Vec<Received>>, received: Received) {
    match log.lock() {
        Ok(mut log) => log.push(received),
        Err(poisoned) => poisoned.into_inner().push(received),
    }
}

/// The model in `data` (strict base64, as the real service decodes it), or `None`.
fn decode_model(data: &str, compression: i64) -> Option<Splat> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.as_bytes())
        .ok()?;
    match compression {
        2 => decode_spz(&bytes, &SpzLimits::default())
            .ok()
            .map(|decoded| decoded.splat),
        0 => read_ply(&bytes, &PlyLimits::default())
            .ok()
            .map(|decoded| decoded.splat),
        _ => None,
    }
}

/// The deterministic score of a decoded model, in 0..1.
pub fn score_model(splat: &Splat, settings: &ValidationSettings) -> f64 {
    let report = splat.validity();
    let mut score = if report.hard_zero().is_empty() {
        let size = 1.0 - (-(report.count as f64) / settings.reference_gaussians.max(1.0)).exp();
        size * (1.0 - report.low_opacity_fraction())
    } else {
        0.0
    };
    if let Some(fixed) = settings.fixed_score {
        score = fixed;
    }
    if settings
        .low_below_gaussians
        .is_some_and(|n| report.count < n)
    {
        score = settings.low_score;
    }
    if score.is_finite() {
        score.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use splatfleet_common::splat::Splat;

    use super::*;

    fn model(n: usize, opacity: f32) -> Splat {
        let mut s = Splat::zeroed(n, 0, false);
        for i in 0..n {
            let f = i as f32 / n as f32;
            s.positions[i] = [f, (f * 7.0).sin(), (f * 3.0).cos()];
            s.opacities[i] = opacity;
            s.log_scales[i] = [-4.0; 3];
            s.rotations[i] = [0.9, 0.1 + f * 0.1, 0.2, 0.3];
        }
        s
    }

    #[test]
    fn scores_follow_size_and_hard_zero_rules_and_overrides() {
        let settings = ValidationSettings::default();
        let expected = 1.0 - (-30_000.0f64 / 20_000.0).exp();
        assert!((score_model(&model(30_000, 3.0), &settings) - expected).abs() < 1e-9);
        assert_eq!(score_model(&model(5_000, 3.0), &settings), 0.0, "too few");
        assert_eq!(
            score_model(&model(8_000, -20.0), &settings),
            0.0,
            "transparent"
        );
        let fixed = ValidationSettings {
            fixed_score: Some(0.9),
            low_below_gaussians: Some(10_000),
            low_score: 0.1,
            ..ValidationSettings::default()
        };
        assert_eq!(score_model(&model(12_000, 3.0), &fixed), 0.9);
        assert_eq!(score_model(&model(8_000, 3.0), &fixed), 0.1);
    }
}
