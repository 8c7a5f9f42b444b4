//! The HTTP exchange the worker has with the local services it calls (generation, validation):
//! one pooled client per service (the fleet's one HTTP client, `splatfleet_common::http_client`),
//! a POST bounded by a timeout over the whole exchange and a cap on the answer, and the
//! failures every such exchange can have, each naming the service and the URL.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{header, StatusCode};
use splatfleet_common::http_client::{self, error_chain, BodyError};

/// An endpoint from the config that is not a URL the service can be reached at.
#[derive(Debug, thiserror::Error)]
#[error("{service} endpoint `{endpoint}` is not a usable URL: {reason}")]
pub struct BadEndpoint {
    pub service: &'static str,
    pub endpoint: String,
    pub reason: String,
}

/// Why one exchange gave no answer body.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("{service} request to {url} could not be built: {reason}")]
    Request {
        service: &'static str,
        url: String,
        reason: String,
    },
    #[error("{service} service {url} could not be reached: {reason}")]
    Connect {
        service: &'static str,
        url: String,
        reason: String,
    },
    #[error("{service} service {url} did not answer within {after:?}")]
    Timeout {
        service: &'static str,
        url: String,
        after: Duration,
    },
    #[error("{service} service {url} answered HTTP {status}: {body}")]
    Status {
        service: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{service} service {url} answered more than {limit} bytes")]
    TooLarge {
        service: &'static str,
        url: String,
        limit: usize,
    },
    #[error("{service} service {url} answered with a body that breaks off: {reason}")]
    Body {
        service: &'static str,
        url: String,
        reason: String,
    },
}

impl ExchangeError {
    /// A short label for metrics and records.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Request { .. } => "bad_endpoint",
            Self::Connect { .. } => "connect",
            Self::Timeout { .. } => "timeout",
            Self::Status { .. } => "status",
            Self::TooLarge { .. } => "too_large",
            Self::Body { .. } => "body",
        }
    }
}

/// `endpoint` (a base URL such as `http://127.0.0.1:8093`) joined with `path`; relative, so
/// a base URL's own path is kept.
pub fn endpoint_url(
    service: &'static str,
    endpoint: &str,
    path: &str,
) -> Result<String, BadEndpoint> {
    let bad = |reason: String| BadEndpoint {
        service,
        endpoint: endpoint.to_owned(),
        reason,
    };
    let base = url::Url::parse(endpoint).map_err(|e| bad(e.to_string()))?;
    let joined = base.join(path).map_err(|e| bad(e.to_string()))?;
    Ok(joined.to_string())
}

/// A pooled HTTP client for one kind of service.
#[derive(Debug, Clone)]
pub struct ServiceHttp {
    service: &'static str,
    /// `None` when the client could not be built, which every exchange then reports.
    client: Option<reqwest::Client>,
}

impl ServiceHttp {
    /// A client whose errors name `service` ("generation", "validation").
    pub fn new(service: &'static str) -> Self {
        let client = match http_client::pooled(Duration::from_secs(5)) {
            Ok(client) => Some(client),
            Err(err) => {
                tracing::error!(service, err = %error_chain(&err), "the HTTP client could not be built");
                None
            }
        };
        Self { service, client }
    }

    /// POSTs `body` to `url` and returns the 200 answer's body, at most `limit` bytes;
    /// `timeout` bounds the whole exchange, the body included.
    pub async fn post(
        &self,
        url: &str,
        content_type: &'static str,
        body: Bytes,
        limit: usize,
        timeout: Duration,
    ) -> Result<Bytes, ExchangeError> {
        match tokio::time::timeout(timeout, self.exchange(url, content_type, body, limit)).await {
            Ok(result) => result,
            Err(_) => Err(ExchangeError::Timeout {
                service: self.service,
                url: url.to_owned(),
                after: timeout,
            }),
        }
    }

    async fn exchange(
        &self,
        url: &str,
        content_type: &'static str,
        body: Bytes,
        limit: usize,
    ) -> Result<Bytes, ExchangeError> {
        let service = self.service;
        let Some(client) = &self.client else {
            return Err(ExchangeError::Request {
                service,
                url: url.to_owned(),
                reason: "the HTTP client could not be built (see the log at start)".into(),
            });
        };
        let response = client
            .post(url)
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let reason = error_chain(&e);
                if e.is_builder() {
                    ExchangeError::Request {
                        service,
                        url: url.to_owned(),
                        reason,
                    }
                } else {
                    ExchangeError::Connect {
                        service,
                        url: url.to_owned(),
                        reason,
                    }
                }
            })?;
        let status = response.status();
        let body = http_client::read_capped(response, limit)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => ExchangeError::TooLarge {
                    service,
                    url: url.to_owned(),
                    limit,
                },
                BodyError::Broken(reason) => ExchangeError::Body {
                    service,
                    url: url.to_owned(),
                    reason,
                },
            })?;
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(ExchangeError::Status {
                service,
                url: url.to_owned(),
                status: status.as_u16(),
                body: text,
            });
        }
        Ok(body)
    }
}
