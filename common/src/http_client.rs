//! The one HTTP client of the fleet's own calls: validators' axons (the dendrite) and the
//! generation and validation services (the worker). reqwest's pooled client, set up the same
//! way for every caller (connect timeout, no delay, no redirects, no proxy from the
//! environment: a validator's or a local service's answer must come from where we sent the
//! request), and an answer read to a cap. The subtensor is reached through jsonrpsee.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

/// How long an idle pooled connection is kept for the next call.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Why an answer's body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the answer broke off: {0}")]
    Broken(String),
}

/// A pooled client that gives up connecting after `connect_timeout`.
pub fn pooled(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(POOL_IDLE)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
}

/// `response`'s body, at most `limit` bytes: refused from its declared length when that is
/// over, else read chunk by chunk and cut off at the cap.
pub async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, BodyError> {
    if response
        .content_length()
        .is_some_and(|declared| declared > limit as u64)
    {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BodyError::Broken(error_chain(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// An error and the errors under it on one line: reqwest and hyper say only "error sending
/// request" or "client error (Connect)" where the cause is, say, a refused connection or a
/// certificate the system does not trust. A cause whose text is already in the line is not
/// repeated. Used for every call the fleet makes (axons, services, the subtensor).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
