//! Talking to one validator: a `PullTask` call turned into a [`PullOutcome`]. (The puller
//! never submits: a task it must give up is recorded as a release request in the ledger, and
//! the submitter, the one role that signs, sends it.)

use std::time::Duration;

use splatfleet_common::{
    bittensor::{AxonTarget, Dendrite, DendriteError},
    protocol::sn17::{ProtocolTask, PullTask},
};

/// Longest task id the fleet records (the `tasks.task_id` column's limit).
const MAX_TASK_ID_CHARS: usize = 256;

/// What a PullTask call came to.
#[derive(Debug, Clone)]
pub enum PullOutcome {
    /// A task: new, or the one the validator already assigned to us.
    Task {
        task: ProtocolTask,
        validation_threshold: f64,
        throttle_period_secs: i64,
    },
    /// No task: the validator says we are on cooldown until then. `violations` above zero
    /// means it counted this pull as a cooldown violation.
    Cooldown { until: i64, violations: i64 },
    /// Connect error, timeout or 5xx: worth retrying later, with backoff.
    Unavailable(String),
    /// 401: the validator refused our signature or nonce.
    Unauthorized(String),
    /// Any other refusal or an answer we cannot use.
    Refused(String),
}

impl PullOutcome {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Task { .. } => "task",
            Self::Cooldown { violations, .. } if *violations > 0 => "violation",
            Self::Cooldown { .. } => "cooldown",
            Self::Unavailable(_) => "unavailable",
            Self::Unauthorized(_) => "unauthorized",
            Self::Refused(_) => "refused",
        }
    }
}

/// Sorts a dendrite failure into what the scheduler does about it.
fn classify(err: DendriteError) -> PullOutcome {
    if err.is_transient() {
        PullOutcome::Unavailable(err.to_string())
    } else if err.status() == Some(401) {
        PullOutcome::Unauthorized(err.to_string())
    } else {
        PullOutcome::Refused(err.to_string())
    }
}

/// Asks `target` for a task.
pub async fn pull_task(dendrite: &Dendrite, target: &AxonTarget, timeout: Duration) -> PullOutcome {
    let answer = match dendrite.call(target, PullTask::default(), timeout).await {
        Ok(response) => response.body.synapse,
        Err(err) => return classify(err),
    };
    match answer.task {
        Some(task) => {
            let id_chars = task.id().chars().count();
            if id_chars == 0 || id_chars > MAX_TASK_ID_CHARS {
                return PullOutcome::Refused(format!(
                    "task id of {id_chars} characters (1 to {MAX_TASK_ID_CHARS} accepted)"
                ));
            }
            if !(0.0..=1.0).contains(&answer.validation_threshold) {
                return PullOutcome::Refused(format!(
                    "validation_threshold {} outside 0..1",
                    answer.validation_threshold
                ));
            }
            // Refused, not recorded: a prompt the validator's own scorer refuses is not worth
            // GPU time or storage; the validator keeps the task and is backed off.
            if let Some(problem) = task.prompt_problem() {
                return PullOutcome::Refused(problem);
            }
            PullOutcome::Task {
                task,
                validation_threshold: answer.validation_threshold,
                throttle_period_secs: answer.throttle_period.max(0),
            }
        }
        None => PullOutcome::Cooldown {
            until: answer.cooldown_until,
            violations: answer.cooldown_violations,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> DendriteError {
        if status >= 500 {
            DendriteError::ServerError {
                target: "v".into(),
                synapse: "PullTask",
                status,
                message: String::new(),
            }
        } else {
            DendriteError::Rejected {
                target: "v".into(),
                synapse: "PullTask",
                status,
                message: String::new(),
            }
        }
    }

    #[test]
    fn failures_sort_into_backoff_stop_and_refusal() {
        assert_eq!(classify(http(401)).label(), "unauthorized");
        assert_eq!(classify(http(500)).label(), "unavailable");
        assert_eq!(classify(http(503)).label(), "unavailable");
        assert_eq!(classify(http(403)).label(), "refused");
        let refused_connection = DendriteError::Connect {
            target: "v".into(),
            reason: "refused".into(),
        };
        assert_eq!(classify(refused_connection).label(), "unavailable");
        let timeout = DendriteError::Timeout {
            target: "v".into(),
            after: Duration::from_secs(1),
        };
        assert_eq!(classify(timeout).label(), "unavailable");
    }
}
