//! The dendrite: calls a validator's axon over HTTP exactly as SDK 9.9.0's
//! `Dendrite.call` does (`bittensor/core/dendrite.py`): `POST http://ip:port/<SynapseName>`,
//! the synapse's headers, a JSON body carrying `dendrite` and `axon` terminal objects, and a
//! signature over `{nonce}.{miner}.{validator}.{uuid}.{body_hash}`. Responses are size-capped and
//! every failure is a typed [`DendriteError`].

use std::{sync::Arc, time::Duration};

use reqwest::{header, StatusCode};
use serde::Deserialize;

use crate::http_client::{self, error_chain, BodyError};

use super::{
    keys::Hotkey,
    nonce::NonceClock,
    synapse::{self, Synapse, SynapseBody, TerminalInfo, SDK_VERSION_AS_INT},
};

/// Longest piece of a validator's own text (an error message, a parser's complaint quoting a
/// field) kept in a [`DendriteError`]: errors are logged and stored in Postgres, and a hostile
/// validator must not be able to write megabytes into either.
pub const MAX_ERROR_TEXT_CHARS: usize = 512;

/// `text` cut to [`MAX_ERROR_TEXT_CHARS`] characters, saying how long it was when cut.
fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_TEXT_CHARS) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}… ({} bytes in all)", &text[..cut], text.len()),
    }
}

/// Where a call goes: the axon's address and the validator hotkey it signs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxonTarget {
    pub ip: String,
    pub port: u16,
    pub hotkey: String,
}

impl AxonTarget {
    fn authority(&self) -> String {
        if self.ip.contains(':') {
            format!("[{}]:{}", self.ip, self.port)
        } else {
            format!("{}:{}", self.ip, self.port)
        }
    }
}

/// Dendrite settings that are not per call.
#[derive(Debug, Clone)]
pub struct DendriteSettings {
    /// The IP the dendrite announces in `bt_header_dendrite_ip` (the SDK sends its external IP).
    pub external_ip: String,
    /// Largest response body accepted; a larger one is [`DendriteError::ResponseTooLarge`].
    pub max_response_bytes: usize,
    /// Limit on establishing the TCP connection, inside the per-call timeout.
    pub connect_timeout: Duration,
}

impl Default for DendriteSettings {
    fn default() -> Self {
        Self {
            external_ip: "127.0.0.1".into(),
            max_response_bytes: 8 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a call did not return a parsed response synapse.
#[derive(Debug, thiserror::Error)]
pub enum DendriteError {
    #[error("could not build the request to {target}: {reason}")]
    Request { target: String, reason: String },
    #[error("could not connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("{target} did not answer within {after:?}")]
    Timeout { target: String, after: Duration },
    #[error("{target} broke the exchange: {reason}")]
    Transport { target: String, reason: String },
    #[error("{target} rejected {synapse} with {status}: {message}")]
    Rejected {
        target: String,
        synapse: &'static str,
        status: u16,
        message: String,
    },
    #[error("{target} failed {synapse} with {status}: {message}")]
    ServerError {
        target: String,
        synapse: &'static str,
        status: u16,
        message: String,
    },
    #[error("{target} sent a response over the {limit}-byte cap")]
    ResponseTooLarge { target: String, limit: usize },
    #[error("{target} sent a {synapse} response that is not the synapse's JSON: {reason}")]
    BadResponse {
        target: String,
        synapse: &'static str,
        reason: String,
    },
}

impl DendriteError {
    /// The HTTP status of a 4xx/5xx answer, if that is what this is.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Rejected { status, .. } | Self::ServerError { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether calling again later may succeed: the validator did not answer (connect error,
    /// timeout, a broken exchange) or answered 5xx. The one rule for both the puller's
    /// backoff and the submitter's resends; a 4xx or an unusable answer is a refusal.
    pub fn is_transient(&self) -> bool {
        match self.status() {
            Some(status) => status >= 500,
            None => matches!(
                self,
                Self::Connect { .. } | Self::Timeout { .. } | Self::Transport { .. }
            ),
        }
    }
}

/// A request ready to send: what [`Dendrite::prepare`] built, exposed for inspection.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub nonce: u64,
}

/// A parsed 200 answer.
#[derive(Debug, Clone)]
pub struct SynapseResponse<S> {
    pub body: SynapseBody<S>,
    pub status: u16,
    pub bytes: usize,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
}

/// One miner identity talking to axons. Cheap to clone; clones share the nonce clock and pool.
#[derive(Debug, Clone)]
pub struct Dendrite {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    hotkey: Arc<Hotkey>,
    uuid: String,
    nonces: NonceClock,
    settings: DendriteSettings,
    /// The fleet's one HTTP client (`http_client`); `None` when it could not be built (no
    /// TLS or resolver left in this process), which every call then reports.
    client: Option<reqwest::Client>,
}

impl Dendrite {
    pub fn new(hotkey: Arc<Hotkey>, settings: DendriteSettings) -> Self {
        let client = match http_client::pooled(settings.connect_timeout) {
            Ok(client) => Some(client),
            Err(err) => {
                tracing::error!(err = %error_chain(&err), "the dendrite's HTTP client could not be built");
                None
            }
        };
        Self {
            inner: Arc::new(Inner {
                hotkey,
                // The SDK uses uuid1; any unique string per process works, the axon keys nonces
                // by `{hotkey}:{uuid}`.
                uuid: uuid::Uuid::new_v4().to_string(),
                nonces: NonceClock::new(),
                settings,
                client,
            }),
        }
    }

    pub fn hotkey(&self) -> &Hotkey {
        &self.inner.hotkey
    }

    pub fn uuid(&self) -> &str {
        &self.inner.uuid
    }

    /// Fills the terminal infos, signs and serializes, as `preprocess_synapse_for_request` and
    /// `to_headers` do.
    pub fn prepare<S: Synapse>(
        &self,
        target: &AxonTarget,
        synapse: S,
        timeout: Duration,
    ) -> Result<PreparedRequest, DendriteError> {
        let inner = &self.inner;
        let mut body = SynapseBody::new(synapse);
        body.timeout = Some(timeout.as_secs_f64());
        let nonce = inner.nonces.next();
        let body_hash = body.body_hash();
        let message = synapse::dendrite_signed_message(
            nonce,
            inner.hotkey.ss58(),
            &target.hotkey,
            &inner.uuid,
            &body_hash,
        );
        body.dendrite = Some(TerminalInfo {
            ip: Some(inner.settings.external_ip.clone()),
            version: Some(SDK_VERSION_AS_INT),
            nonce: Some(nonce),
            uuid: Some(inner.uuid.clone()),
            hotkey: Some(inner.hotkey.ss58().to_owned()),
            signature: Some(inner.hotkey.sign_hex(message.as_bytes())),
            ..TerminalInfo::default()
        });
        body.axon = Some(TerminalInfo {
            ip: Some(target.ip.clone()),
            port: Some(target.port),
            hotkey: Some(target.hotkey.clone()),
            ..TerminalInfo::default()
        });
        let first = serde_json::to_vec(&body).map_err(|e| DendriteError::Request {
            target: target.authority(),
            reason: e.to_string(),
        })?;
        // The SDK records the object's size in `total_size` before dumping the body.
        body.total_size = Some(first.len() as u64);
        let bytes = serde_json::to_vec(&body).map_err(|e| DendriteError::Request {
            target: target.authority(),
            reason: e.to_string(),
        })?;
        Ok(PreparedRequest {
            url: format!("http://{}/{}", target.authority(), S::NAME),
            headers: synapse::to_headers(&body),
            body: bytes,
            nonce,
        })
    }

    /// Sends `synapse` to `target` and parses the answer; `timeout` bounds the whole exchange
    /// and is announced in the `timeout` header, as the SDK does.
    pub async fn call<S: Synapse>(
        &self,
        target: &AxonTarget,
        synapse: S,
        timeout: Duration,
    ) -> Result<SynapseResponse<S>, DendriteError> {
        let prepared = self.prepare(target, synapse, timeout)?;
        self.send_prepared::<S>(target, prepared, timeout).await
    }

    /// Sends a request built by [`Self::prepare`] (sending one twice replays its nonce, which
    /// an axon refuses).
    pub async fn send_prepared<S: Synapse>(
        &self,
        target: &AxonTarget,
        prepared: PreparedRequest,
        timeout: Duration,
    ) -> Result<SynapseResponse<S>, DendriteError> {
        match tokio::time::timeout(timeout, self.send::<S>(target, prepared)).await {
            Ok(result) => result,
            Err(_) => Err(DendriteError::Timeout {
                target: target.authority(),
                after: timeout,
            }),
        }
    }

    async fn send<S: Synapse>(
        &self,
        target: &AxonTarget,
        prepared: PreparedRequest,
    ) -> Result<SynapseResponse<S>, DendriteError> {
        let authority = target.authority();
        let Some(client) = &self.inner.client else {
            return Err(DendriteError::Request {
                target: authority,
                reason: "the HTTP client could not be built (see the log at start)".into(),
            });
        };
        let mut request = client
            .post(&prepared.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "*/*");
        for (name, value) in &prepared.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.body(prepared.body).send().await.map_err(|e| {
            let reason = error_chain(&e);
            if e.is_builder() {
                DendriteError::Request {
                    target: authority.clone(),
                    reason,
                }
            } else if e.is_connect() {
                DendriteError::Connect {
                    target: authority.clone(),
                    reason,
                }
            } else {
                DendriteError::Transport {
                    target: authority.clone(),
                    reason,
                }
            }
        })?;
        let status = response.status();
        let limit = self.inner.settings.max_response_bytes;
        let bytes = http_client::read_capped(response, limit)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => DendriteError::ResponseTooLarge {
                    target: authority.clone(),
                    limit,
                },
                BodyError::Broken(reason) => DendriteError::Transport {
                    target: authority.clone(),
                    reason,
                },
            })?;
        if status != StatusCode::OK {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .ok()
                .and_then(|b| b.message)
                .map(|m| bounded(&m))
                .unwrap_or_else(|| {
                    bounded(&String::from_utf8_lossy(
                        &bytes[..bytes.len().min(MAX_ERROR_TEXT_CHARS)],
                    ))
                });
            let code = status.as_u16();
            return Err(if status.is_server_error() {
                DendriteError::ServerError {
                    target: authority,
                    synapse: S::NAME,
                    status: code,
                    message,
                }
            } else {
                DendriteError::Rejected {
                    target: authority,
                    synapse: S::NAME,
                    status: code,
                    message,
                }
            });
        }
        let body: SynapseBody<S> =
            serde_json::from_slice(&bytes).map_err(|e| DendriteError::BadResponse {
                target: authority.clone(),
                synapse: S::NAME,
                // serde quotes a wrong-typed value whole, however long it is.
                reason: bounded(&e.to_string()),
            })?;
        // The axon always answers with the synapse it was asked for; another name means the
        // body is some other synapse whose fields would otherwise read as defaults.
        if let Some(name) = body.name.as_deref().filter(|name| *name != S::NAME) {
            return Err(DendriteError::BadResponse {
                target: authority,
                synapse: S::NAME,
                reason: format!("it names itself `{}`", bounded(name)),
            });
        }
        Ok(SynapseResponse {
            body,
            status: status.as_u16(),
            bytes: bytes.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> DendriteError {
        let (target, synapse, message) = ("v".to_owned(), "SubmitResults", String::new());
        if status >= 500 {
            DendriteError::ServerError {
                target,
                synapse,
                status,
                message,
            }
        } else {
            DendriteError::Rejected {
                target,
                synapse,
                status,
                message,
            }
        }
    }

    #[test]
    fn five_hundreds_connect_errors_and_timeouts_are_transient_refusals_are_not() {
        for status in [500, 503] {
            assert!(http(status).is_transient(), "{status}");
        }
        for status in [400, 401, 403, 404] {
            assert!(!http(status).is_transient(), "{status}");
        }
        assert!(DendriteError::Timeout {
            target: "v".into(),
            after: Duration::from_secs(1)
        }
        .is_transient());
        assert!(DendriteError::Connect {
            target: "v".into(),
            reason: "refused".into()
        }
        .is_transient());
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary_and_say_so() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(MAX_ERROR_TEXT_CHARS + 10);
        let cut = bounded(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_ERROR_TEXT_CHARS)), "{cut}");
        assert!(
            cut.ends_with(&format!("({} bytes in all)", long.len())),
            "{cut}"
        );
        assert!(cut.chars().count() < MAX_ERROR_TEXT_CHARS + 40);
    }
}
