//! One SubmitResults call and what it came to: an answer (feedback and `cooldown_until`), a
//! transient failure worth sending again (connect error, timeout, broken exchange, 5xx), or
//! a permanent refusal (401, 403 "no task assigned", any other 4xx, an unusable answer).

use std::time::{Duration, Instant};

use splatfleet_common::{
    bittensor::{AxonTarget, Dendrite, DendriteError},
    protocol::sn17::{Feedback, SubmitResults},
};

/// What one send came to.
#[derive(Debug, Clone)]
pub enum SendOutcome {
    Answered {
        feedback: Option<Feedback>,
        cooldown_until: i64,
        latency: Duration,
    },
    Transient {
        status: Option<u16>,
        error: String,
        latency: Duration,
    },
    Permanent {
        status: Option<u16>,
        error: String,
        latency: Duration,
    },
}

/// Sorts a dendrite failure: `true` when sending again may succeed.
pub fn is_transient(err: &DendriteError) -> bool {
    match err.status() {
        Some(status) => status >= 500,
        None => matches!(
            err,
            DendriteError::Connect { .. }
                | DendriteError::Timeout { .. }
                | DendriteError::Transport { .. }
        ),
    }
}

/// Sends `submission` to `target` once.
pub async fn send_once(
    dendrite: &Dendrite,
    target: &AxonTarget,
    submission: SubmitResults,
    timeout: Duration,
) -> SendOutcome {
    let started = Instant::now();
    let result = dendrite.call(target, submission, timeout).await;
    let latency = started.elapsed();
    match result {
        Ok(response) => SendOutcome::Answered {
            feedback: response.body.synapse.feedback,
            cooldown_until: response.body.synapse.cooldown_until,
            latency,
        },
        Err(err) if is_transient(&err) => SendOutcome::Transient {
            status: err.status(),
            error: err.to_string(),
            latency,
        },
        Err(err) => SendOutcome::Permanent {
            status: err.status(),
            error: err.to_string(),
            latency,
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
                synapse: "SubmitResults",
                status,
                message: String::new(),
            }
        } else {
            DendriteError::Rejected {
                target: "v".into(),
                synapse: "SubmitResults",
                status,
                message: String::new(),
            }
        }
    }

    #[test]
    fn five_hundreds_connect_errors_and_timeouts_are_retried_refusals_are_not() {
        assert!(is_transient(&http(500)));
        assert!(is_transient(&http(503)));
        assert!(!is_transient(&http(401)));
        assert!(!is_transient(&http(403)));
        assert!(!is_transient(&http(400)));
        assert!(is_transient(&DendriteError::Timeout {
            target: "v".into(),
            after: Duration::from_secs(1)
        }));
        assert!(is_transient(&DendriteError::Connect {
            target: "v".into(),
            reason: "refused".into()
        }));
    }
}
