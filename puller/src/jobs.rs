//! The work the control loop hands off: a pull (call the validator, then record the task as
//! `queued` and publish it with confirms in one transaction). Each job reports a
//! [`JobReport`] back; only the loop changes scheduling state.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};
use splatfleet_common::{
    bittensor::{AxonTarget, Dendrite},
    broker::Publisher,
    db::Pool,
    discovery::ValidatorInfo,
    ledger::{self, Recorded},
    messages::{TaskKind, TaskMsg, ValidatorRef},
    protocol::sn17::ProtocolTask,
};

use crate::{
    metrics,
    pull::{self, PullOutcome},
};

pub(crate) fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A validator in the current set with its Postgres row id.
#[derive(Debug, Clone)]
pub(crate) struct KnownValidator {
    pub(crate) info: ValidatorInfo,
    pub(crate) id: i64,
}

/// What a job reports back to the loop.
#[derive(Debug)]
pub(crate) enum JobOutcome {
    /// We hold this task (new and published, or already ours and still open).
    Held {
        task_id: String,
    },
    Cooldown {
        until: i64,
        violations: i64,
    },
    Unavailable(String),
    Unauthorized(String),
    Refused(String),
    /// Postgres or the broker failed under the job; the validator is backed off like a
    /// failed pull (it still holds the task and hands it out again).
    Error(String),
}

#[derive(Debug)]
pub(crate) struct JobReport {
    pub(crate) hotkey: String,
    pub(crate) validator_id: i64,
    pub(crate) is_pull: bool,
    pub(crate) outcome: JobOutcome,
}

/// What jobs share.
#[derive(Debug)]
pub(crate) struct JobContext {
    pub(crate) pool: Pool,
    pub(crate) publisher: Publisher<TaskMsg>,
    pub(crate) dendrite: Dendrite,
    pub(crate) timeout: Duration,
    pub(crate) task_deadline: Duration,
    pub(crate) publish_tries: u32,
}

fn target(validator: &KnownValidator) -> AxonTarget {
    validator.info.axon()
}

/// One pull: call, record, publish.
pub(crate) async fn pull_job(context: Arc<JobContext>, validator: KnownValidator) -> JobReport {
    let hotkey = validator.info.hotkey.clone();
    let uid = Some(validator.info.uid);
    let started = Instant::now();
    let outcome = pull::pull_task(&context.dendrite, &target(&validator), context.timeout).await;
    let label = outcome.label();
    let outcome = match outcome {
        PullOutcome::Task {
            task,
            validation_threshold,
            throttle_period_secs,
        } => {
            let outcome = take_task(
                &context,
                &validator,
                task,
                validation_threshold,
                throttle_period_secs,
                started,
            )
            .await;
            let label = match &outcome {
                JobOutcome::Held { .. } => label,
                _ => "error",
            };
            metrics::pull(&hotkey, uid, label);
            outcome
        }
        PullOutcome::Cooldown { until, violations } => {
            metrics::pull(&hotkey, uid, label);
            JobOutcome::Cooldown { until, violations }
        }
        PullOutcome::Unavailable(e) => {
            metrics::pull(&hotkey, uid, label);
            JobOutcome::Unavailable(e)
        }
        PullOutcome::Unauthorized(e) => {
            metrics::pull(&hotkey, uid, label);
            JobOutcome::Unauthorized(e)
        }
        PullOutcome::Refused(e) => {
            metrics::pull(&hotkey, uid, label);
            JobOutcome::Refused(e)
        }
    };
    JobReport {
        hotkey,
        validator_id: validator.id,
        is_pull: true,
        outcome,
    }
}

/// Records a pulled task and publishes it, or recognises one we already hold.
async fn take_task(
    context: &JobContext,
    validator: &KnownValidator,
    task: ProtocolTask,
    validation_threshold: f64,
    throttle_period_secs: i64,
    started: Instant,
) -> JobOutcome {
    let pulled_at_unix_ms = (now_secs() * 1000.0) as i64;
    let deadline_unix_ms = pulled_at_unix_ms
        + i64::try_from(context.task_deadline.as_millis()).unwrap_or(i64::MAX / 2);
    let msg = TaskMsg {
        task_id: task.id().to_owned(),
        validator: ValidatorRef {
            uid: validator.info.uid,
            hotkey: validator.info.hotkey.clone(),
            ip: validator.info.ip.clone(),
            port: validator.info.port,
        },
        kind: match task {
            ProtocolTask::Text(_) => TaskKind::Text,
            ProtocolTask::Image(_) => TaskKind::Image,
        },
        prompt: task.prompt().to_owned(),
        validation_threshold: validation_threshold as f32,
        throttle_period_secs: u32::try_from(throttle_period_secs).unwrap_or(u32::MAX),
        pulled_at_unix_ms,
        deadline_unix_ms,
    };
    let prompt_sha256 = hex::encode(Sha256::digest(msg.prompt.as_bytes()));
    let publish = || publish_with_tries(context, &msg);
    let recorded =
        match ledger::record_task(&context.pool, validator.id, &msg, &prompt_sha256, publish).await
        {
            Ok(recorded) => recorded,
            Err(err) => {
                // The validator assigned the task but we could not record it: it stays assigned,
                // and the next pull returns it again.
                return JobOutcome::Error(format!("recording task {}: {err}", msg.task_id));
            }
        };
    match recorded {
        Recorded::Published { .. } => {
            ::metrics::histogram!("splatfleet_puller_pull_to_publish_seconds")
                .record(started.elapsed().as_secs_f64());
            tracing::info!(validator = %msg.validator.hotkey, task_id = %msg.task_id, "task pulled and queued");
            JobOutcome::Held {
                task_id: msg.task_id,
            }
        }
        Recorded::NotPublished(err) => {
            // Rolled back: not ours on record, still the validator's to hand out again.
            JobOutcome::Error(format!("publishing task {}: {err}", msg.task_id))
        }
        Recorded::Existing { id, status } if status.is_terminal() => {
            // We finished this task, yet the validator still holds it: our submission never
            // reached it. Ask for an empty release so the validator hands out the next one;
            // until the submitter has sent it, we hold the task.
            tracing::warn!(validator = %msg.validator.hotkey, task_id = %msg.task_id, %status, "validator still holds a task we closed; requesting its release");
            match ledger::request_release(&context.pool, id, "validator still held a closed task")
                .await
            {
                Ok(requested) => {
                    if requested {
                        metrics::release_requested(
                            &msg.validator.hotkey,
                            Some(msg.validator.uid),
                            "still_held",
                        );
                    }
                    JobOutcome::Held {
                        task_id: msg.task_id,
                    }
                }
                Err(err) => {
                    JobOutcome::Error(format!("requesting the release of {}: {err}", msg.task_id))
                }
            }
        }
        Recorded::Existing { .. } => {
            tracing::debug!(validator = %msg.validator.hotkey, task_id = %msg.task_id, "validator returned the task we hold; not queued twice");
            JobOutcome::Held {
                task_id: msg.task_id,
            }
        }
    }
}

/// Publishes with confirms, up to the configured tries; the tries it took, or the last error.
async fn publish_with_tries(
    context: &JobContext,
    msg: &TaskMsg,
) -> Result<u32, splatfleet_common::broker::PublishError> {
    let mut attempt = 1;
    loop {
        match context.publisher.publish(msg).await {
            Ok(()) => return Ok(attempt),
            Err(err) => {
                ::metrics::counter!("splatfleet_puller_publish_failures_total").increment(1);
                tracing::warn!(task_id = %msg.task_id, attempt, %err, "publishing the task failed");
                if attempt >= context.publish_tries {
                    return Err(err);
                }
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                attempt += 1;
            }
        }
    }
}
