//! One SubmitResults call and what it came to: an answer (feedback and `cooldown_until`), a
//! transient failure worth sending again (connect error, timeout, broken exchange, 5xx), or
//! a permanent refusal (401, 403 "no task assigned", any other 4xx, an unusable answer).
//! [`sign_and_send`] is the fleet's one signing call site: results and empty releases alike
//! (an empty submission still needs the license signature over the exact prompt, which v45
//! checks before it looks at the results).

use std::time::{Duration, Instant};

use splatfleet_common::{
    bittensor::{AxonTarget, Dendrite},
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

/// What one SubmitResults call answers.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    pub target: &'a AxonTarget,
    /// The validator's task id.
    pub task_id: &'a str,
    /// Exactly as the validator sent it: the license signature covers it.
    pub prompt: &'a str,
    /// The SPZ model; `None`: an empty submission.
    pub spz: Option<&'a [u8]>,
}

/// Signs `submission` with the miner's hotkey and sends it once.
pub async fn sign_and_send(
    dendrite: &Dendrite,
    submission: Submission<'_>,
    timeout: Duration,
) -> SendOutcome {
    let target = submission.target;
    let submission = SubmitResults::signed(
        dendrite.hotkey(),
        &target.hotkey,
        submission.task_id,
        submission.prompt,
        submission.spz,
    );
    let started = Instant::now();
    let result = dendrite.call(target, submission, timeout).await;
    let latency = started.elapsed();
    match result {
        Ok(response) => SendOutcome::Answered {
            feedback: response.body.synapse.feedback,
            cooldown_until: response.body.synapse.cooldown_until,
            latency,
        },
        Err(err) if err.is_transient() => SendOutcome::Transient {
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
