//! The release loop: the empty submissions that give back tasks the fleet lost. The puller
//! only records a release request in the ledger (it never signs); this loop takes due
//! requests (`ledger::take_releases`), signs and sends each through [`submit::sign_and_send`]
//! like any result, and records how it ended: taken (`submitted_empty`, the validator's
//! cooldown), not held any more (403: `expired`, an assumed cooldown), or no useful answer
//! (the request waits `retry_initial_ms`, doubling up to `retry_max_ms`, and is tried again:
//! while the validator may still hold the task, giving up would leave it stuck on that task).

use std::sync::Arc;

use splatfleet_common::{
    bittensor::AxonTarget,
    ledger::{self, cooldown, ReleaseJob, ReleaseRecord},
};
use tracing::Instrument as _;

use crate::{
    consume::{now_secs, Handler},
    metrics,
    retry::db_retry,
    submit::{self, SendOutcome, Submission},
};

/// Sends one taken release and records it. `assumed_cooldown_secs`: the cooldown assumed
/// when the validator no longer held the task.
pub async fn send_release(handler: Arc<Handler>, job: ReleaseJob, assumed_cooldown_secs: f64) {
    let span = tracing::info_span!("release", task_id = %job.task_id, validator = %job.hotkey);
    async move {
        let target = AxonTarget {
            ip: job.ip.clone(),
            port: job.port,
            hotkey: job.hotkey.clone(),
        };
        let submission = Submission {
            target: &target,
            task_id: &job.task_id,
            prompt: &job.prompt,
            spz: None,
        };
        let outcome = tokio::select! {
            () = handler.stop.cancelled() => None,
            outcome = submit::sign_and_send(&handler.dendrite, submission, handler.submit_timeout) => Some(outcome),
        };
        let (record, label) = match outcome {
            None => (ReleaseRecord::Interrupted, "interrupted"),
            Some(outcome) => classify(
                outcome,
                job.tries,
                &handler,
                now_secs(),
                assumed_cooldown_secs,
            ),
        };
        match &record {
            ReleaseRecord::Released { .. } => {
                tracing::info!(tries = job.tries, "lost task released with an empty submission");
            }
            ReleaseRecord::NotHeld { error, .. } => {
                tracing::warn!(%error, "the validator no longer held the lost task; assuming a cooldown");
            }
            ReleaseRecord::Failed {
                error, retry_at, ..
            } => {
                tracing::warn!(%error, tries = job.tries, retry_in_secs = retry_at - now_secs(), "releasing the lost task failed; trying again later");
            }
            ReleaseRecord::Interrupted => {}
        }
        metrics::released(&job.hotkey, job.uid, label);
        // The send happened: record it even while PostgreSQL is away (until the role stops;
        // then the hold runs out and the release is sent again, which the validator answers
        // with a 403 that is recorded as `expired`).
        let recorded = db_retry("record release", handler.db_backoff, &handler.stop, || {
            ledger::finish_release(&handler.pool, job.task_row, &handler.instance, &record)
        })
        .await;
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("the release was taken over by another submitter before it was recorded");
            }
            Err(err) => tracing::warn!(?err, "recording the release failed"),
        }
    }
    .instrument(span)
    .await;
}

/// What a release's send came to, for the records.
fn classify(
    outcome: SendOutcome,
    tries: u32,
    handler: &Handler,
    now: f64,
    assumed_cooldown_secs: f64,
) -> (ReleaseRecord, &'static str) {
    match outcome {
        SendOutcome::Answered {
            feedback,
            cooldown_until,
            ..
        } => (
            ReleaseRecord::Released {
                cooldown_until: cooldown_until as f64,
                feedback,
            },
            "released",
        ),
        SendOutcome::Permanent {
            status: Some(403),
            error,
            ..
        } => (
            ReleaseRecord::NotHeld {
                error,
                assumed_cooldown_until: cooldown::assumed_until(now, assumed_cooldown_secs),
            },
            "not_held",
        ),
        SendOutcome::Permanent { status, error, .. }
        | SendOutcome::Transient { status, error, .. } => {
            let wait = handler.send_policy.backoff.delay(tries.max(1));
            (
                ReleaseRecord::Failed {
                    status,
                    error,
                    retry_at: now + wait.as_secs_f64(),
                },
                "failed",
            )
        }
    }
}
