//! `[submitter]`: results at once, the SubmitResults call's limit, how transient send
//! failures and a lost database are retried, and the release loop.

use std::{net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The submitter's knobs (`[submitter]`): how many results at once, how long a
/// SubmitResults call may take, and how transient failures and a lost database are retried.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubmitterSettings {
    /// Where `/metrics` is served; unset means `127.0.0.1:9473`.
    pub metrics_addr: Option<SocketAddr>,
    /// Results handled at once (the consumer's prefetch).
    pub concurrency: u16,
    /// Limit on one SubmitResults call, seconds (the subnet's base miner uses 300).
    pub submit_timeout_secs: u64,
    /// Sends of one result at most, counting the first: a safety cap. What ends resends is the
    /// task's deadline plus `retry_past_deadline_secs`; only connect errors, timeouts and 5xx
    /// answers are tried again.
    pub max_send_tries: u32,
    /// First pause before sending again after a transient failure, milliseconds; doubles
    /// with each further failure.
    pub retry_initial_ms: u64,
    /// Longest pause between sends of one result, milliseconds.
    pub retry_max_ms: u64,
    /// A result is sent again only while the task's deadline plus this many seconds has not
    /// passed (afterwards the validator has most likely moved on).
    pub retry_past_deadline_secs: u64,
    /// First pause before retrying a PostgreSQL write that failed, milliseconds; doubles up
    /// to `db_retry_max_ms`. Writes are retried until they succeed or the role stops.
    pub db_retry_initial_ms: u64,
    pub db_retry_max_ms: u64,
    /// Largest PLY or SPZ artifact loaded, bytes.
    pub max_artifact_bytes: u64,
    /// How often the release loop looks for due empty releases (requested by the puller for
    /// tasks the fleet lost), milliseconds. A release the validator did not answer waits
    /// `retry_initial_ms`, doubling up to `retry_max_ms`, and is never given up.
    pub release_poll_ms: u64,
    /// Cooldown assumed when a validator's real one is unknown (it answered a release with
    /// 403: it no longer held the task), seconds.
    pub assumed_cooldown_secs: u64,
}

impl Default for SubmitterSettings {
    fn default() -> Self {
        Self {
            metrics_addr: None,
            concurrency: 8,
            submit_timeout_secs: 300,
            max_send_tries: 100,
            retry_initial_ms: 1_000,
            retry_max_ms: 30_000,
            retry_past_deadline_secs: 60,
            db_retry_initial_ms: 250,
            db_retry_max_ms: 5_000,
            max_artifact_bytes: 256 * 1024 * 1024,
            release_poll_ms: 1_000,
            assumed_cooldown_secs: 300,
        }
    }
}

impl SubmitterSettings {
    pub fn submit_timeout(&self) -> Duration {
        Duration::from_secs(self.submit_timeout_secs)
    }

    pub fn release_poll(&self) -> Duration {
        Duration::from_millis(self.release_poll_ms)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: &str| {
            Err(ConfigError::Invalid {
                key: format!("submitter.{key}"),
                problem: problem.into(),
            })
        };
        for (key, value) in [
            ("concurrency", u64::from(self.concurrency)),
            ("submit_timeout_secs", self.submit_timeout_secs),
            ("max_send_tries", u64::from(self.max_send_tries)),
            ("retry_initial_ms", self.retry_initial_ms),
            ("retry_max_ms", self.retry_max_ms),
            ("db_retry_initial_ms", self.db_retry_initial_ms),
            ("db_retry_max_ms", self.db_retry_max_ms),
            ("max_artifact_bytes", self.max_artifact_bytes),
            ("release_poll_ms", self.release_poll_ms),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return invalid("retry_max_ms", "must be at least retry_initial_ms");
        }
        if self.db_retry_max_ms < self.db_retry_initial_ms {
            return invalid("db_retry_max_ms", "must be at least db_retry_initial_ms");
        }
        if self.max_send_tries > 1000 {
            return invalid("max_send_tries", "must be at most 1000");
        }
        Ok(())
    }
}
