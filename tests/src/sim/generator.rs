//! `splatfleet-sim generator`: a sample generation service speaking DESIGN.md §6
//! (`POST /generate/`, form field `prompt` → 200 with raw binary PLY). Each answer is a
//! coloured blob of gaussians, deterministic by prompt and seed, and a [`Fault`] can be
//! injected (slow, HTTP 500, garbage bytes, truncated PLY, hang) for the first attempts or
//! all of them, so the worker's client and retry ladder have something to fail on.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{body::Incoming, header, service::service_fn, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use splatfleet_common::splat::{write_ply, Splat};
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
}

/// How the service answers.
#[derive(Debug, Clone)]
pub struct GeneratorSettings {
    /// Gaussians per model.
    pub gaussians: usize,
    pub fault: Fault,
    /// The fault applies to requests whose `attempt` field is below this (missing counts as
    /// 0); `u32::MAX` means every request.
    pub fault_attempts: u32,
    /// Delay of [`Fault::Slow`], milliseconds.
    pub slow_ms: u64,
}

impl Default for GeneratorSettings {
    fn default() -> Self {
        Self {
            gaussians: 20_000,
            fault: Fault::None,
            fault_attempts: u32::MAX,
            slow_ms: 2_000,
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
        let settings = Arc::new(settings);
        let counter = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let settings = Arc::clone(&settings);
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let settings = Arc::clone(&settings);
                        let counter = Arc::clone(&counter);
                        async move { Ok::<_, Infallible>(handle(req, &settings, &counter).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
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
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

async fn handle(
    req: Request<Incoming>,
    settings: &GeneratorSettings,
    requests: &AtomicU64,
) -> Response<Full<Bytes>> {
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
    let fault = if attempt < settings.fault_attempts {
        settings.fault
    } else {
        Fault::None
    };
    let ply = || write_ply(&blob(settings.gaussians, model_seed(prompt, seed))).unwrap_or_default();
    match fault {
        Fault::None => respond(StatusCode::OK, ply(), "application/octet-stream"),
        Fault::Slow => {
            tokio::time::sleep(Duration::from_millis(settings.slow_ms)).await;
            respond(StatusCode::OK, ply(), "application/octet-stream")
        }
        Fault::Error500 => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "simulated generator failure",
            "text/plain",
        ),
        Fault::Garbage => respond(
            StatusCode::OK,
            Bytes::from_static(b"this is not a PLY at all\n"),
            "application/octet-stream",
        ),
        Fault::Truncated => {
            let mut bytes = ply();
            bytes.truncate(bytes.len() / 2);
            respond(StatusCode::OK, bytes, "application/octet-stream")
        }
        Fault::Hang => {
            std::future::pending::<()>().await;
            respond(StatusCode::OK, Bytes::new(), "text/plain")
        }
    }
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

/// A coloured ellipsoidal blob of `n` opaque gaussians, deterministic by `seed`.
pub fn blob(n: usize, seed: u64) -> Splat {
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64*, mapped to [0, 1).
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32
    };
    let hue = next();
    let mut splat = Splat::zeroed(n, 0, false);
    for i in 0..n {
        // A point in the unit ball, squashed into an ellipsoid.
        let (mut x, mut y, mut z);
        loop {
            x = next() * 2.0 - 1.0;
            y = next() * 2.0 - 1.0;
            z = next() * 2.0 - 1.0;
            if x * x + y * y + z * z <= 1.0 {
                break;
            }
        }
        splat.positions[i] = [x * 0.5, y * 0.35, z * 0.4];
        let shade = (y + 1.0) * 0.5;
        splat.sh_dc[i] = [
            (hue - 0.5) * 2.0 + shade,
            (0.5 - hue) + shade * 0.5,
            next() * 0.5 - 0.25,
        ];
        splat.opacities[i] = 3.0 + next();
        splat.log_scales[i] = [-4.5 + next(), -4.5 + next(), -4.5 + next()];
        splat.rotations[i] = [1.0, next() - 0.5, next() - 0.5, next() - 0.5];
    }
    splat
}
