//! The generation-service client (ARCHITECTURE.md, the generation service): `POST {endpoint}/generate/` with the form
//! fields `prompt`, `seed`, `attempt` and the ladder step's extras, answered by raw PLY bytes.
//! Every way an attempt can fail (connect error, timeout, non-200, oversized or non-PLY body)
//! is a [`GenerateError`] naming the endpoint.

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;

use crate::service_http::{endpoint_url, BadEndpoint, ExchangeError, ServiceHttp};

const SERVICE: &str = "generation";

/// Why one generation request gave no model bytes.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    BadEndpoint(#[from] BadEndpoint),
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    #[error("generation service {url} answered {bytes} bytes that are not a PLY")]
    NotPly { url: String, bytes: usize },
}

impl GenerateError {
    /// A short label for metrics and records.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadEndpoint(_) => "bad_endpoint",
            Self::Exchange(e) => e.kind(),
            Self::NotPly { .. } => "not_ply",
        }
    }

    /// The service could not be reached at all (nothing listening, connection refused):
    /// it said nothing about the request.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Exchange(ExchangeError::Connect { .. }))
    }
}

/// A client of one generation service.
#[derive(Debug, Clone)]
pub struct GenerationClient {
    url: String,
    max_response_bytes: u64,
    http: ServiceHttp,
}

impl GenerationClient {
    /// A client of the service at `endpoint` (a base URL such as `http://127.0.0.1:8093`).
    pub fn new(endpoint: &str, max_response_bytes: u64) -> Result<Self, GenerateError> {
        Ok(Self {
            url: endpoint_url(SERVICE, endpoint, "generate/")?,
            max_response_bytes,
            http: ServiceHttp::new(SERVICE),
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
        let form_body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("prompt", prompt);
            for (name, value) in fields {
                form.append_pair(name, value);
            }
            form.finish()
        };
        let limit = usize::try_from(self.max_response_bytes).unwrap_or(usize::MAX);
        let body = self
            .http
            .post(
                &self.url,
                "application/x-www-form-urlencoded",
                Bytes::from(form_body),
                limit,
                timeout,
            )
            .await?;
        if !body.starts_with(b"ply\n") && !body.starts_with(b"ply\r\n") {
            return Err(GenerateError::NotPly {
                url: self.url.clone(),
                bytes: body.len(),
            });
        }
        Ok(body)
    }
}
