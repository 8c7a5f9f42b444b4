//! Bad answers a simulated validator can give to `PullTask` or `SubmitResults` instead of its
//! rules' answer, for the bad-input suite (`tests/RELIABILITY.md`): a body over any sane cap
//! sent chunked (no `Content-Length` to refuse up front), JSON cut off mid-way, the other
//! synapse's JSON, fields of the wrong type quoting a long value, an error status whose message
//! is enormous, and an HTML page where JSON belongs. Off unless a test sets one with
//! [`super::SimValidator::misbehave_on_pull`] or [`super::SimValidator::misbehave_on_submit`];
//! the request is still verified and the rules still run first (a task is assigned, a
//! submission scored), so only the answer the fleet reads is bad.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::{combinators::BoxBody, BodyExt as _, Full, StreamBody};
use hyper::{body::Frame, header, Response, StatusCode};
use serde_json::json;

/// The body type every simulated axon answer has: whole, or streamed in chunks.
pub type SimBody = BoxBody<Bytes, Infallible>;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> SimBody {
    Full::new(bytes.into()).boxed()
}

/// How a misbehaving validator answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misbehaviour {
    /// 200 with `bytes` of JSON-looking body, chunked (64 KiB chunks), no `Content-Length`.
    OversizedChunked { bytes: usize },
    /// 200 with the first half of the real answer.
    TruncatedJson,
    /// 200 naming the other synapse: for PullTask a SubmitResults body, for SubmitResults the
    /// honest answer renamed `PullTask`.
    WrongSynapse,
    /// 200 with the asked synapse's JSON whose `cooldown_until` is a string of `chars`
    /// characters (and, for PullTask, whose task has `"type": 3`; for SubmitResults, whose
    /// feedback is a number).
    WrongFieldTypes { chars: usize },
    /// 500 whose `{"message": …}` is `chars` characters long.
    HugeErrorMessage { chars: usize },
    /// 200 with an HTML page, as a misconfigured proxy in front of the axon would send.
    Html,
}

impl Misbehaviour {
    /// A short name for event logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::OversizedChunked { .. } => "oversized_chunked",
            Self::TruncatedJson => "truncated_json",
            Self::WrongSynapse => "wrong_synapse",
            Self::WrongFieldTypes { .. } => "wrong_field_types",
            Self::HugeErrorMessage { .. } => "huge_error_message",
            Self::Html => "html",
        }
    }

    /// The answer to the synapse named `asked`, given the JSON the rules would have sent.
    pub fn answer(&self, asked: &str, honest_json: &[u8]) -> Response<SimBody> {
        let pull = asked == "PullTask";
        match self {
            Self::OversizedChunked { bytes } => {
                const CHUNK: usize = 64 * 1024;
                let mut first = format!(r#"{{"name":"{asked}","padding":""#).into_bytes();
                first.resize(CHUNK, b'x');
                let rest = bytes.saturating_sub(CHUNK).div_ceil(CHUNK);
                let chunks = std::iter::once(Bytes::from(first))
                    .chain(std::iter::repeat_n(Bytes::from(vec![b'x'; CHUNK]), rest));
                let body = StreamBody::new(stream::iter(
                    chunks.map(|chunk| Ok::<_, Infallible>(Frame::data(chunk))),
                ));
                response(StatusCode::OK, "application/json", body.boxed())
            }
            Self::TruncatedJson => {
                let half = honest_json.len() / 2;
                response(
                    StatusCode::OK,
                    "application/json",
                    full(honest_json[..half].to_vec()),
                )
            }
            Self::WrongSynapse if pull => {
                let body = json!({
                    "name": "SubmitResults",
                    "task_id": "not-a-pull",
                    "results": "",
                    "feedback": {"validation_failed": false, "task_fidelity_score": 0.9},
                    "cooldown_until": 0,
                });
                json_answer(StatusCode::OK, &body)
            }
            Self::WrongSynapse => {
                // The honest answer renamed, so that only the name gives it away.
                let mut body: serde_json::Value =
                    serde_json::from_slice(honest_json).unwrap_or_else(|_| json!({}));
                body["name"] = json!("PullTask");
                json_answer(StatusCode::OK, &body)
            }
            Self::WrongFieldTypes { chars } if pull => {
                let body = json!({
                    "name": "PullTask",
                    "task": {"type": 3, "id": "t-wrong-types", "prompt": ["not", "a", "string"]},
                    "cooldown_until": "x".repeat(*chars),
                });
                json_answer(StatusCode::OK, &body)
            }
            Self::WrongFieldTypes { chars } => {
                let body = json!({
                    "name": "SubmitResults",
                    "results": "",
                    "feedback": 3,
                    "cooldown_until": "x".repeat(*chars),
                });
                json_answer(StatusCode::OK, &body)
            }
            Self::HugeErrorMessage { chars } => json_answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({ "message": "E".repeat(*chars) }),
            ),
            Self::Html => response(
                StatusCode::OK,
                "text/html",
                full("<html><body><h1>502 Bad Gateway</h1></body></html>"),
            ),
        }
    }
}

fn json_answer(status: StatusCode, value: &serde_json::Value) -> Response<SimBody> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    response(status, "application/json", full(bytes))
}

fn response(status: StatusCode, content_type: &'static str, body: SimBody) -> Response<SimBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
