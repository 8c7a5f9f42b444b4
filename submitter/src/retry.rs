//! Retry policy: exponential backoff, when a transient send failure is worth another try
//! (tries left and the task still worth submitting), and retrying PostgreSQL work until it
//! succeeds or the role stops, so a lost database delays results without losing any.

use std::{future::Future, time::Duration};

use splatfleet_common::db::DbError;
use tokio_util::sync::CancellationToken;

/// Exponential backoff from `initial`, doubling up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The pause after the `failures`-th consecutive failure (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// When a transient send failure is tried again.
#[derive(Debug, Clone, Copy)]
pub struct SendPolicy {
    pub max_tries: u32,
    pub backoff: Backoff,
    /// Seconds after the task's deadline during which sending is still worth it.
    pub past_deadline_secs: f64,
}

impl SendPolicy {
    /// The pause before the next send after `tries` sends (all recorded on the row, so
    /// tries made before a restart count too), or why not to send again.
    pub fn next(
        &self,
        tries: u32,
        failures_here: u32,
        now_secs: f64,
        deadline_secs: f64,
    ) -> Result<Duration, String> {
        if tries >= self.max_tries {
            return Err(format!(
                "gave up after {tries} sends (submitter.max_send_tries)"
            ));
        }
        let delay = self.backoff.delay(failures_here);
        if now_secs + delay.as_secs_f64() > deadline_secs + self.past_deadline_secs {
            return Err(
                "gave up: the task's deadline has passed (submitter.retry_past_deadline_secs)"
                    .into(),
            );
        }
        Ok(delay)
    }
}

/// Whether a PostgreSQL failure is worth retrying: the database or the connection went away
/// (or was too busy), as opposed to a query the database refuses.
pub fn is_transient(err: &DbError) -> bool {
    match err {
        DbError::Pool(_) | DbError::Unreachable { .. } => true,
        DbError::Build { .. } => false,
        DbError::Query(err) => match err.code() {
            None => true,
            Some(code) => {
                let code = code.code();
                code.starts_with("08") // connection exception
                    || code.starts_with("53") // insufficient resources
                    || code.starts_with("57P") // admin shutdown, crash shutdown, cannot connect now
                    || code == "40001" // serialization failure
                    || code == "40P01" // deadlock
                    || code == "55000" // database not accepting connections
            }
        },
    }
}

/// How retried database work ended without a result.
#[derive(Debug, thiserror::Error)]
pub enum DbRetryError {
    #[error("stopped while waiting for PostgreSQL")]
    Stopped,
    #[error(transparent)]
    Refused(DbError),
}

/// Runs `work` until it succeeds, retrying transient failures with backoff; a refused query
/// is returned at once, and shutdown ends the wait.
pub async fn db_retry<T, F, Fut>(
    what: &str,
    backoff: Backoff,
    stop: &CancellationToken,
    mut work: F,
) -> Result<T, DbRetryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DbError>>,
{
    let mut failures = 0u32;
    loop {
        match work().await {
            Ok(value) => {
                if failures > 0 {
                    tracing::info!(what, failures, "PostgreSQL is back; carrying on");
                }
                return Ok(value);
            }
            Err(err) if is_transient(&err) => {
                failures = failures.saturating_add(1);
                crate::metrics::db_retry();
                let delay = backoff.delay(failures);
                tracing::warn!(what, %err, failures, ?delay, "PostgreSQL unavailable; holding the result and retrying");
                tokio::select! {
                    () = stop.cancelled() => return Err(DbRetryError::Stopped),
                    () = tokio::time::sleep(delay) => {}
                }
            }
            Err(err) => return Err(DbRetryError::Refused(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
        };
        let delays: Vec<u128> = (1..=5).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
    }

    #[test]
    fn sends_stop_at_the_try_limit_and_past_the_deadline() {
        let policy = SendPolicy {
            max_tries: 3,
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(4),
            },
            past_deadline_secs: 10.0,
        };
        assert_eq!(policy.next(1, 1, 100.0, 200.0), Ok(Duration::from_secs(1)));
        assert!(policy.next(3, 3, 100.0, 200.0).is_err());
        assert!(policy.next(1, 1, 209.5, 200.0).is_err());
    }
}
