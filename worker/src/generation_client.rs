//! The generation-service client (DESIGN.md §6): `POST {endpoint}/generate/` with the form
//! fields `prompt`, `seed`, `attempt` and the ladder step's extras, answered by raw PLY bytes.
//! Every way an attempt can fail (connect error, timeout, non-200, oversized or non-PLY body)
//! is a [`GenerateError`] naming the endpoint.

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{header, Method, Request, StatusCode};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};

/// Why one generation request gave no model bytes.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("generation endpoint `{endpoint}` is not a usable URL: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    #[error("generation service {url} could not be reached: {reason}")]
    Connect { url: String, reason: String },
    #[error("generation service {url} did not answer within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("generation service {url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("generation service {url} answered more than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("generation service {url} answered with a body that breaks off: {reason}")]
    Body { url: String, reason: String },
    #[error("generation service {url} answered {bytes} bytes that are not a PLY")]
    NotPly { url: String, bytes: usize },
}

impl GenerateError {
    /// A short label for metrics and records.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadEndpoint { .. } => "bad_endpoint",
            Self::Connect { .. } => "connect",
            Self::Timeout { .. } => "timeout",
            Self::Status { .. } => "status",
            Self::TooLarge { .. } => "too_large",
            Self::Body { .. } => "body",
            Self::NotPly { .. } => "not_ply",
        }
    }
}

/// A client of one generation service.
#[derive(Debug, Clone)]
pub struct GenerationClient {
    url: String,
    max_response_bytes: u64,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl GenerationClient {
    /// A client of the service at `endpoint` (a base URL such as `http://127.0.0.1:8093`).
    pub fn new(endpoint: &str, max_response_bytes: u64) -> Result<Self, GenerateError> {
        let parsed = url::Url::parse(endpoint).map_err(|e| GenerateError::BadEndpoint {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        })?;
        let url = parsed
            .join("generate/")
            .map_err(|e| GenerateError::BadEndpoint {
                endpoint: endpoint.to_owned(),
                reason: e.to_string(),
            })?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Ok(Self {
            url: url.to_string(),
            max_response_bytes,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// The URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Asks for one model; `timeout` bounds the whole exchange.
    pub async fn generate(
        &self,
        prompt: &str,
        fields: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<Bytes, GenerateError> {
        match tokio::time::timeout(timeout, self.send(prompt, fields)).await {
            Ok(result) => result,
            Err(_) => Err(GenerateError::Timeout {
                url: self.url.clone(),
                after: timeout,
            }),
        }
    }

    async fn send(
        &self,
        prompt: &str,
        fields: &BTreeMap<String, String>,
    ) -> Result<Bytes, GenerateError> {
        let form_body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("prompt", prompt);
            for (name, value) in fields {
                form.append_pair(name, value);
            }
            form.finish()
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(&self.url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form_body)))
            .map_err(|e| GenerateError::BadEndpoint {
                endpoint: self.url.clone(),
                reason: e.to_string(),
            })?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| GenerateError::Connect {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
        let status = response.status();
        let limit = usize::try_from(self.max_response_bytes).unwrap_or(usize::MAX);
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    GenerateError::TooLarge {
                        url: self.url.clone(),
                        limit: self.max_response_bytes,
                    }
                } else {
                    GenerateError::Body {
                        url: self.url.clone(),
                        reason: e.to_string(),
                    }
                }
            })?
            .to_bytes();
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(GenerateError::Status {
                url: self.url.clone(),
                status: status.as_u16(),
                body: text,
            });
        }
        if !body.starts_with(b"ply\n") && !body.starts_with(b"ply\r\n") {
            return Err(GenerateError::NotPly {
                url: self.url.clone(),
                bytes: body.len(),
            });
        }
        Ok(body)
    }
}
