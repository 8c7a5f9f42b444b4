//! `splatfleet-sim generator`: a sample generation service speaking the generation-service contract (ARCHITECTURE.md)
//! (`POST /generate/`, form field `prompt` → 200 with raw binary PLY). Answers are
//! deterministic by prompt and seed: a plausible coloured object of a size drawn from a
//! configured range, or — by configured shares — a sparse model, a tiny one, a degenerate one,
//! invalid bytes, a truncated PLY, an HTTP 500 or a slow answer. A higher `enhance` form field
//! makes sparse and tiny answers less likely, so a retry ladder has something real to win.
//! A fixed [`Fault`] can also be forced for the first attempts or all of them, including the
//! wire-level ones of the bad-input suite: a body that trickles forever, one that never ends,
//! and a `Content-Length` that promises more than is sent. In `cached` mode (benchmarks of
//! the rest of the fleet) every request gets the same PLY, written once at start, at once:
//! zero-time generation.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::{
    body::{Frame, Incoming},
    header, Method, Request, Response, StatusCode,
};
use splatfleet_common::splat::{write_ply, Splat};

use super::{
    http_server::serve,
    misbehaviour::{full, SimBody},
    models::{self, SimRng},
};
use tokio::{net::TcpListener, task::JoinHandle};

/// Largest request body the service reads (image prompts are a few hundred KB).
const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// A misbehaviour to inject instead of (or before) a good answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// Answer normally after `slow_ms`.
    Slow,
    /// HTTP 500 with a text body.
    Error500,
    /// HTTP 200 with bytes that are not a PLY.
    Garbage,
    /// HTTP 200 with a PLY cut in half.
    Truncated,
    /// Never answer.
    Hang,
    /// HTTP 200 and a PLY header, then one byte every 100 ms, forever (slowloris).
    Trickle,
    /// HTTP 200 and a PLY header, then 64 KiB chunks as fast as the client reads, forever.
    Endless,
    /// HTTP 200 whose `Content-Length` is twice the PLY sent; the connection ends short.
    LyingLength,
}

/// Shares (each 0..1, summing to at most 1) of answers that are not a plausible object. The
/// model's prompt and seed pick the answer, so the same request always gets the same one.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AnswerMix {
    /// A clean model too thin to cover its views (7k..150k gaussians).
    pub sparse: f64,
    /// A model under the validator's 7,000-gaussian floor.
    pub tiny: f64,
    /// Mostly-transparent, identity-rotation or NaN-holding models.
    pub degenerate: f64,
    /// HTTP 200 with bytes that are not a PLY.
    pub invalid: f64,
    /// A PLY cut in half.
    pub truncated: f64,
    /// HTTP 500.
    pub error500: f64,
    /// A good answer after `slow_ms`.
    pub slow: f64,
}

impl AnswerMix {
    /// The shares' sum, which must not pass 1.
    pub fn total(&self) -> f64 {
        self.sparse
            + self.tiny
            + self.degenerate
            + self.invalid
            + self.truncated
            + self.error500
            + self.slow
    }
}

/// How the service answers.
#[derive(Debug, Clone)]
pub struct GeneratorSettings {
    /// Gaussians of a plausible object: exactly this many, or, with `gaussians_max`, drawn
    /// per model from `gaussians..=gaussians_max`.
    pub gaussians: usize,
    pub gaussians_max: Option<usize>,
    /// Shares of bad answers (none by default).
    pub mix: AnswerMix,
    /// Median added latency of every answer, milliseconds (0: none), spread log-normally with
    /// `latency_sigma` and capped at `latency_max_ms`.
    pub latency_median_ms: u64,
    pub latency_sigma: f64,
    pub latency_max_ms: u64,
    /// A fault forced on the first `fault_attempts` attempts (missing `attempt` counts as
    /// 0; `u32::MAX` means every request), ahead of the mix.
    pub fault: Fault,
    pub fault_attempts: u32,
    /// Delay of [`Fault::Slow`] and of slow answers from the mix, milliseconds.
    pub slow_ms: u64,
    /// Answer every request at once with one plausible object of `gaussians`, written once
    /// at start (mix, latency and faults are ignored).
    pub cached: bool,
}

impl Default for GeneratorSettings {
    fn default() -> Self {
        Self {
            gaussians: 20_000,
            gaussians_max: None,
            mix: AnswerMix::default(),
            latency_median_ms: 0,
            latency_sigma: 0.5,
            latency_max_ms: 60_000,
            fault: Fault::None,
            fault_attempts: u32::MAX,
            slow_ms: 2_000,
            cached: false,
        }
    }
}

/// A running generation service.
#[derive(Debug)]
pub struct SimGenerator {
    pub addr: SocketAddr,
    requests: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl SimGenerator {
    /// Serves on `127.0.0.1:port` (0: a free port) until dropped.
    pub async fn start(port: u16, settings: GeneratorSettings) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let cached = if settings.cached {
            let ply = write_ply(&models::object(settings.gaussians, 1))
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            Some(Bytes::from(ply))
        } else {
            None
        };
        let settings = Arc::new(settings);
        let counter = Arc::clone(&requests);
        let task = serve(listener, move |req| {
            let settings = Arc::clone(&settings);
            let counter = Arc::clone(&counter);
            let cached = cached.clone();
            async move {
                match cached {
                    Some(ply) => handle_cached(req, ply, &counter).await,
                    None => handle(req, &settings, &counter).await,
                }
            }
        });
        Ok(Self {
            addr,
            requests,
            task,
        })
    }

    /// The base URL to configure (`http://127.0.0.1:port`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `/generate/` requests received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for SimGenerator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn respond(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> Response<SimBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// Cached mode: read the form (the worker expects its request consumed), answer the one PLY.
async fn handle_cached(
    req: Request<Incoming>,
    ply: Bytes,
    requests: &AtomicU64,
) -> Response<SimBody> {
    if req.method() != Method::POST || req.uri().path() != "/generate/" {
        return respond(StatusCode::NOT_FOUND, "not found", "text/plain");
    }
    requests.fetch_add(1, Ordering::SeqCst);
    if let Err(e) = Limited::new(req.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        return respond(StatusCode::BAD_REQUEST, format!("body: {e}"), "text/plain");
    }
    respond(StatusCode::OK, ply, "application/octet-stream")
}

async fn handle(
    req: Request<Incoming>,
    settings: &GeneratorSettings,
    requests: &AtomicU64,
) -> Response<SimBody> {
    if req.method() != Method::POST || req.uri().path() != "/generate/" {
        return respond(StatusCode::NOT_FOUND, "not found", "text/plain");
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let body = match Limited::new(req.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return respond(StatusCode::BAD_REQUEST, format!("body: {e}"), "text/plain"),
    };
    let fields: HashMap<String, String> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let Some(prompt) = fields.get("prompt") else {
        return respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing form field `prompt`",
            "text/plain",
        );
    };
    let seed: u64 = fields.get("seed").and_then(|s| s.parse().ok()).unwrap_or(0);
    let attempt: u32 = fields
        .get("attempt")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let enhance = fields
        .get("enhance")
        .map_or(0, |level| enhance_level(level));
    let model = model_seed(prompt, seed);
    let answer = if attempt < settings.fault_attempts && settings.fault != Fault::None {
        Answer::Forced(settings.fault)
    } else {
        pick_answer(&settings.mix, enhance, model)
    };
    let delay = latency_ms(settings, model);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    answer_with(answer, settings, model).await
}

/// What one request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Object,
    Sparse,
    Tiny,
    Degenerate,
    Forced(Fault),
}

/// `enhance` form values: `standard` is 1, `extreme` 2, a number itself, anything else 0.
fn enhance_level(level: &str) -> u32 {
    match level {
        "standard" => 1,
        "extreme" => 2,
        other => other.parse().unwrap_or(0),
    }
}

/// Picks the answer from the mix; each enhance level quarters the sparse and tiny shares.
fn pick_answer(mix: &AnswerMix, enhance: u32, model: u64) -> Answer {
    let damp = 0.25f64.powi(i32::try_from(enhance.min(8)).unwrap_or(8));
    let draw = SimRng::new(model ^ 0x0005_eed0_fa5e).unit_f64();
    let ladder = [
        (mix.error500, Answer::Forced(Fault::Error500)),
        (mix.invalid, Answer::Forced(Fault::Garbage)),
        (mix.truncated, Answer::Forced(Fault::Truncated)),
        (mix.degenerate, Answer::Degenerate),
        (mix.tiny * damp, Answer::Tiny),
        (mix.sparse * damp, Answer::Sparse),
        (mix.slow, Answer::Forced(Fault::Slow)),
    ];
    let mut edge = 0.0;
    for (share, answer) in ladder {
        edge += share;
        if draw < edge {
            return answer;
        }
    }
    Answer::Object
}

/// The added latency of one answer: log-normal around the median, capped.
fn latency_ms(settings: &GeneratorSettings, model: u64) -> u64 {
    if settings.latency_median_ms == 0 {
        return 0;
    }
    let z = SimRng::new(model ^ 0x1a7e_0c1e).normal();
    let ms = settings.latency_median_ms as f64 * (settings.latency_sigma * z).exp();
    (ms.max(0.0) as u64).min(settings.latency_max_ms)
}

fn ply_response(splat: &Splat) -> Response<SimBody> {
    match write_ply(splat) {
        Ok(bytes) => respond(StatusCode::OK, bytes, "application/octet-stream"),
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("writing the PLY failed: {e}"),
            "text/plain",
        ),
    }
}

async fn answer_with(
    answer: Answer,
    settings: &GeneratorSettings,
    model: u64,
) -> Response<SimBody> {
    let mut rng = SimRng::new(model);
    let object_size = rng.between(
        settings.gaussians,
        settings.gaussians_max.unwrap_or(settings.gaussians),
    );
    let object = || models::object(object_size, model);
    match answer {
        Answer::Object | Answer::Forced(Fault::None) => ply_response(&object()),
        Answer::Sparse => ply_response(&models::sparse(rng.between(7_000, 149_999), model)),
        Answer::Tiny => ply_response(&models::object(rng.between(500, 6_999), model)),
        Answer::Degenerate => ply_response(&models::degenerate(object_size, model).0),
        Answer::Forced(Fault::Slow) => {
            tokio::time::sleep(Duration::from_millis(settings.slow_ms)).await;
            ply_response(&object())
        }
        Answer::Forced(Fault::Error500) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "simulated generator failure",
            "text/plain",
        ),
        Answer::Forced(Fault::Garbage) => respond(
            StatusCode::OK,
            Bytes::from_static(b"this is not a PLY at all\n"),
            "application/octet-stream",
        ),
        Answer::Forced(Fault::Truncated) => {
            let mut bytes = write_ply(&object()).unwrap_or_default();
            bytes.truncate(bytes.len() / 2);
            respond(StatusCode::OK, bytes, "application/octet-stream")
        }
        Answer::Forced(Fault::Hang) => {
            std::future::pending::<()>().await;
            respond(StatusCode::OK, Bytes::new(), "text/plain")
        }
        Answer::Forced(Fault::Trickle) => {
            let header = stream::iter([Bytes::from_static(PLY_HEADER_START)]);
            let drip = stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Some((Bytes::from_static(b"0"), ()))
            });
            streamed(StreamExt::chain(header, drip))
        }
        Answer::Forced(Fault::Endless) => {
            let header = stream::iter([Bytes::from_static(PLY_HEADER_START)]);
            let flood = stream::repeat(Bytes::from(vec![0u8; 64 * 1024]));
            streamed(StreamExt::chain(header, flood))
        }
        Answer::Forced(Fault::LyingLength) => {
            let bytes = Bytes::from(write_ply(&object()).unwrap_or_default());
            let promised = bytes.len() * 2;
            // Streamed: a whole body's exact size would override the header.
            let mut response = streamed(stream::iter([bytes]));
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, header::HeaderValue::from(promised));
            response
        }
    }
}

/// What a streamed bad answer starts with, so it passes a client's first look at a PLY.
const PLY_HEADER_START: &[u8] = b"ply\nformat binary_little_endian 1.0\n";

/// HTTP 200 whose body is `chunks`, sent as they come (chunked, no `Content-Length`).
fn streamed(
    chunks: impl futures_util::Stream<Item = Bytes> + Send + Sync + 'static,
) -> Response<SimBody> {
    let body = StreamBody::new(StreamExt::map(chunks, |chunk| Ok(Frame::data(chunk))));
    let mut response = Response::new(BodyExt::boxed(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// FNV-1a of the prompt mixed with the seed: the same prompt and seed give the same model.
fn model_seed(prompt: &str, seed: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in prompt.bytes().chain(seed.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share_of(mix: &AnswerMix, enhance: u32, wanted: Answer) -> f64 {
        let hits = (0..4_000u64)
            .filter(|&m| pick_answer(mix, enhance, model_seed("p", m)) == wanted)
            .count();
        hits as f64 / 4_000.0
    }

    #[test]
    fn shares_are_honoured_and_enhance_makes_sparse_answers_rarer() {
        let mix = AnswerMix {
            sparse: 0.4,
            error500: 0.1,
            ..AnswerMix::default()
        };
        let plain = share_of(&mix, 0, Answer::Sparse);
        let extreme = share_of(&mix, 2, Answer::Sparse);
        assert!((plain - 0.4).abs() < 0.04, "{plain}");
        assert!(extreme < 0.05, "{extreme}");
        let errors = share_of(&mix, 2, Answer::Forced(Fault::Error500));
        assert!((errors - 0.1).abs() < 0.03, "{errors}");
        assert_eq!(share_of(&AnswerMix::default(), 0, Answer::Object), 1.0);
    }

    #[test]
    fn latency_follows_the_median_and_respects_the_cap() {
        let settings = GeneratorSettings {
            latency_median_ms: 100,
            latency_max_ms: 250,
            ..GeneratorSettings::default()
        };
        let mut samples: Vec<u64> = (0..2_001)
            .map(|m| latency_ms(&settings, model_seed("x", m)))
            .collect();
        samples.sort_unstable();
        assert!(
            (80..=125).contains(&samples[1_000]),
            "median {}",
            samples[1_000]
        );
        assert_eq!(*samples.last().expect("samples"), 250);
    }

    /// One `POST /generate/` over a raw connection; the body of the answer.
    async fn post_generate(url: &str, prompt: &str) -> Vec<u8> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let addr = url.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let form = format!("prompt={prompt}&seed=3");
        let request = format!(
            "POST /generate/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        );
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read");
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("header end");
        assert!(answer.starts_with(b"HTTP/1.1 200"), "status");
        answer.split_off(split + 4)
    }

    #[tokio::test]
    async fn cached_mode_answers_every_prompt_with_the_same_model() {
        let settings = GeneratorSettings {
            gaussians: 7_000,
            cached: true,
            latency_median_ms: 5_000,
            fault: Fault::Hang,
            ..GeneratorSettings::default()
        };
        let generator = SimGenerator::start(0, settings).await.expect("start");
        let first = post_generate(&generator.url(), "a cat").await;
        let second = post_generate(&generator.url(), "a dog").await;
        assert_eq!(first, second, "one model for every prompt");
        let decoded = splatfleet_common::splat::read_ply(
            &first,
            &splatfleet_common::splat::PlyLimits::default(),
        )
        .expect("a PLY");
        assert_eq!(decoded.report.count, 7_000);
        assert_eq!(generator.requests(), 2);
    }

    #[test]
    fn enhance_names_map_to_levels() {
        assert_eq!(enhance_level("standard"), 1);
        assert_eq!(enhance_level("extreme"), 2);
        assert_eq!(enhance_level("3"), 3);
        assert_eq!(enhance_level("bogus"), 0);
    }
}
