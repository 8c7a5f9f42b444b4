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

    /// [`Backoff::delay`] spread over its upper half by `spread` in [0, 1] ("equal jitter"):
    /// sends that failed together, to a validator that was briefly away, do not all come back
    /// at the same instant.
    pub fn jittered(&self, failures: u32, spread: f64) -> Duration {
        let spread = if spread.is_finite() {
            spread.clamp(0.0, 1.0)
        } else {
            1.0
        };
        self.delay(failures).mul_f64(0.5 + 0.5 * spread)
    }
}

/// When a transient send failure is tried again: until the task's deadline (plus
/// `past_deadline_secs`), with jittered backoff; `max_tries` is only a safety cap (its
/// default lets the deadline decide).
#[derive(Debug, Clone, Copy)]
pub struct SendPolicy {
    pub max_tries: u32,
    pub backoff: Backoff,
    /// Seconds after the task's deadline during which sending is still worth it.
    pub past_deadline_secs: f64,
}

impl SendPolicy {
    /// The pause before the next send after `tries` sends (all recorded on the row, so
    /// tries made before a restart count too), jittered by `spread` in [0, 1], or why not to
    /// send again.
    pub fn next(
        &self,
        tries: u32,
        failures_here: u32,
        now_secs: f64,
        deadline_secs: f64,
        spread: f64,
    ) -> Result<Duration, String> {
        if tries >= self.max_tries {
            return Err(format!(
                "gave up after {tries} sends (submitter.max_send_tries)"
            ));
        }
        let delay = self.backoff.jittered(failures_here, spread);
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
        assert_eq!(
            policy.next(1, 1, 100.0, 200.0, 1.0),
            Ok(Duration::from_secs(1))
        );
        assert!(policy.next(3, 3, 100.0, 200.0, 1.0).is_err());
        assert!(policy.next(1, 1, 209.5, 200.0, 1.0).is_err());
    }

    #[test]
    fn jitter_spreads_over_the_upper_half_of_the_delay() {
        let backoff = Backoff {
            initial: Duration::from_secs(4),
            max: Duration::from_secs(30),
        };
        assert_eq!(backoff.jittered(1, 0.0), Duration::from_secs(2));
        assert_eq!(backoff.jittered(1, 1.0), Duration::from_secs(4));
        assert_eq!(backoff.jittered(2, 0.5), Duration::from_secs(6));
        assert_eq!(backoff.jittered(1, f64::NAN), Duration::from_secs(4));
        assert_eq!(backoff.jittered(1, 7.0), Duration::from_secs(4));
    }

    /// With the default settings, a validator that refuses connections is sent to until the
    /// task's deadline, not for the ~15 s that five doubling sends took.
    #[test]
    fn with_the_defaults_resends_run_until_the_deadline() {
        let settings = splatfleet_common::config::SubmitterSettings::default();
        let policy = SendPolicy {
            max_tries: settings.max_send_tries,
            backoff: Backoff {
                initial: Duration::from_millis(settings.retry_initial_ms),
                max: Duration::from_millis(settings.retry_max_ms),
            },
            past_deadline_secs: settings.retry_past_deadline_secs as f64,
        };
        let (start, deadline) = (0.0, 360.0);
        let (mut now, mut tries) = (start, 1);
        while let Ok(delay) = policy.next(tries, tries, now, deadline, 0.0) {
            now += delay.as_secs_f64();
            tries += 1;
        }
        assert!(
            now > deadline,
            "gave up at {now} s after {tries} sends, before the {deadline} s deadline"
        );
    }
}
