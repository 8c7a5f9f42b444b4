//! Handling one `ResultMsg` delivery, exactly once per task: load the model, claim the
//! submission row, send (again after transient failures, while worth it), record everything
//! in one statement, then ack.
//!
//! The normal path (the puller recorded the task, nobody claimed it yet) costs one statement
//! before the send: task lookup, claim and the first send's mark together
//! (`ledger::claim_first`). Anything else (a task to adopt, a submission row already there,
//! a model that cannot be loaded) goes step by step: find the task, skip it if its submission
//! already finished (or record it as late or unloadable), claim, mark, send.
//!
//! Redeliveries: a result whose submission completed (or failed for good) is acked without
//! sending. One whose sender died mid-send (a `sending` row whose lease ran out) is sent
//! again. What the validator (three-gen-subnet `neurons/validator/validator.py` at 5fc61f1)
//! answers to such a repeat: if the first send was processed, the task was reset, so the
//! axon's `blacklist_submitting_results` refuses the repeat with 403 ("submitted results
//! while having no task assigned"), or, if a new task was pulled since, `submit_results`
//! answers "wrong task" with feedback only and no score; if the first send is still being
//! validated, the validation lock answers feedback only. None of these scores the repeat or
//! adds a penalty, so completing an interrupted send is safe; a 403 then is recorded as a
//! refusal, not retried.
//!
//! PostgreSQL unavailable: every database step is retried until it succeeds (the delivery
//! stays unacked meanwhile), so nothing is lost; on shutdown the delivery is requeued.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use splatfleet_common::{
    artifacts::ArtifactStore,
    bittensor::{AxonTarget, Dendrite},
    broker::{Disposition, Incoming},
    db::Pool,
    ledger::{self, Claim, ClaimRequest, Finish, FirstClaim, SubmissionRow, TaskRow, Verdict},
    messages::{ResultMsg, ResultOutcome},
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::{
    load_artifact::{self, LoadError},
    metrics,
    retry::{db_retry, Backoff, DbRetryError, SendPolicy},
    submit::{self, SendOutcome},
};

/// What a handler needs, shared by all deliveries.
#[derive(Debug)]
pub struct Handler {
    pub pool: Pool,
    pub store: ArtifactStore,
    pub dendrite: Dendrite,
    pub submit_timeout: Duration,
    pub send_policy: SendPolicy,
    pub db_backoff: Backoff,
    pub max_artifact_bytes: u64,
    /// This process's name on the rows it claims.
    pub instance: String,
    pub stop: CancellationToken,
    /// Tasks (validator hotkey, task id) being handled in this process (a redelivery waits
    /// for the first): a claim by this same instance succeeds, so only this keeps two
    /// deliveries here from both sending.
    in_flight: Mutex<HashSet<(String, String)>>,
}

/// How long a claimed submission (or a taken release) is held before another submitter may
/// take it over: one send's limit plus room to record it.
pub fn lease_secs(submit_timeout: Duration) -> f64 {
    submit_timeout.as_secs_f64() + 30.0
}

/// Removes a task from the in-flight set when dropped.
struct InFlight<'a> {
    handler: &'a Handler,
    task: (String, String),
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.handler.in_flight.lock() {
            set.remove(&self.task);
        }
    }
}

/// A result's model, loaded, and what its claim records.
struct Loaded<'m> {
    /// `None`: an empty result.
    spz: Option<Bytes>,
    empty_reason: Option<&'m str>,
    local_score: Option<f32>,
}

pub(crate) fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// Why a step stopped the handling early.
enum Stop {
    Disposition(Disposition),
}

impl From<DbRetryError> for Stop {
    fn from(err: DbRetryError) -> Self {
        match err {
            DbRetryError::Stopped => Stop::Disposition(Disposition::Requeue),
            DbRetryError::Refused(err) => {
                tracing::error!(%err, "PostgreSQL refused the submitter's write; dead-lettering the result");
                Stop::Disposition(Disposition::DeadLetter)
            }
        }
    }
}

impl Handler {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pool: Pool,
        store: ArtifactStore,
        dendrite: Dendrite,
        submit_timeout: Duration,
        send_policy: SendPolicy,
        db_backoff: Backoff,
        max_artifact_bytes: u64,
        instance: String,
        stop: CancellationToken,
    ) -> Self {
        Self {
            pool,
            store,
            dendrite,
            submit_timeout,
            send_policy,
            db_backoff,
            max_artifact_bytes,
            instance,
            stop,
            in_flight: Mutex::new(HashSet::new()),
        }
    }

    fn lease_secs(&self) -> f64 {
        lease_secs(self.submit_timeout)
    }

    /// Handles one delivery and says what to do with it.
    pub async fn handle(self: Arc<Self>, incoming: Incoming<ResultMsg>) -> Disposition {
        let msg = incoming.body;
        let span = tracing::info_span!("result", task_id = %msg.task_id, validator = %msg.validator.hotkey);
        async move {
            match self.handle_result(&msg).await {
                Ok(disposition) | Err(Stop::Disposition(disposition)) => disposition,
            }
        }
        .instrument(span)
        .await
    }

    async fn handle_result(&self, msg: &ResultMsg) -> Result<Disposition, Stop> {
        let _guard = self.enter(msg).await?;
        // The model is loaded before anything is claimed: a result that cannot be loaded
        // must leave no submission row behind (the puller releases its task once lost).
        let loaded = self.load(msg).await;
        let request = ClaimRequest {
            claimed_by: Some(&self.instance),
            lease_secs: self.lease_secs(),
            empty_reason: loaded.as_ref().ok().and_then(|l| l.empty_reason),
            worker: Some(&msg.worker),
            local_score: loaded.as_ref().ok().and_then(|l| l.local_score),
            result_finished_unix_ms: Some(msg.finished_at_unix_ms),
        };
        let known = match &loaded {
            Ok(_) => {
                let first = db_retry("claim task", self.db_backoff, &self.stop, || {
                    ledger::claim_first(&self.pool, &msg.validator.hotkey, &msg.task_id, &request)
                })
                .await?;
                match first {
                    FirstClaim::Claimed(task) => {
                        // Claimed and marked as sent once: straight to the send.
                        let spz = loaded.ok().and_then(|l| l.spz);
                        return self.send(msg, &task, spz, Some(1)).await;
                    }
                    FirstClaim::Existing(task) => Some(task),
                    FirstClaim::UnknownTask => None,
                }
            }
            Err(_) => None,
        };
        self.handle_slowly(msg, known, loaded, &request).await
    }

    /// Everything but the normal path, step by step: an adopted task, a redelivery, a take-over,
    /// a late or unloadable result.
    async fn handle_slowly(
        &self,
        msg: &ResultMsg,
        known: Option<TaskRow>,
        loaded: Result<Loaded<'_>, LoadError>,
        request: &ClaimRequest<'_>,
    ) -> Result<Disposition, Stop> {
        let (validator, uid) = (msg.validator.hotkey.as_str(), Some(msg.validator.uid));
        let task = match known {
            Some(task) => task,
            None => {
                db_retry("find task", self.db_backoff, &self.stop, || {
                    ledger::find_or_adopt_task(&self.pool, msg)
                })
                .await?
            }
        };
        let state = db_retry("read submission", self.db_backoff, &self.stop, || {
            ledger::submission_state(&self.pool, task.id)
        })
        .await?;
        if let Some(disposition) = self.already_handled(msg, task.id, &state).await? {
            return Ok(disposition);
        }
        let spz = match loaded {
            Ok(loaded) => loaded.spz,
            Err(err) => {
                tracing::error!(%err, "cannot load the result's model; recording it and dead-lettering the result");
                let reason = err.to_string();
                db_retry("record unloadable", self.db_backoff, &self.stop, || {
                    ledger::record_unloadable(&self.pool, task.id, msg, &reason)
                })
                .await?;
                metrics::submission(validator, uid, "unloadable");
                return Ok(Disposition::DeadLetter);
            }
        };
        let tries = loop {
            let claim = db_retry("claim submission", self.db_backoff, &self.stop, || {
                ledger::claim(&self.pool, task.id, request)
            })
            .await?;
            match claim {
                Claim::Claimed { tries } => break tries,
                Claim::Taken(state) => {
                    if let Some(disposition) = self.already_handled(msg, task.id, &state).await? {
                        return Ok(disposition);
                    }
                    // Another submitter is sending it now: wait for it to finish or its
                    // lease to run out.
                    tokio::select! {
                        () = self.stop.cancelled() => return Ok(Disposition::Requeue),
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        };
        if tries > 0 {
            tracing::warn!(tries, "completing a send that was interrupted");
        }
        self.send(msg, &task, spz, None).await
    }

    /// The model to submit (`None`: an empty result), with what the claim records about it.
    async fn load<'m>(&self, msg: &'m ResultMsg) -> Result<Loaded<'m>, LoadError> {
        match &msg.outcome {
            ResultOutcome::Ready {
                ply,
                spz,
                local_score,
                ..
            } => {
                let bytes = load_artifact::load_spz(
                    &self.store,
                    ply,
                    spz.as_ref(),
                    self.max_artifact_bytes,
                )
                .await?;
                Ok(Loaded {
                    spz: Some(bytes),
                    empty_reason: None,
                    local_score: Some(*local_score),
                })
            }
            ResultOutcome::Empty { reason } => Ok(Loaded {
                spz: None,
                empty_reason: Some(if reason.is_empty() {
                    "empty result"
                } else {
                    reason.as_str()
                }),
                local_score: None,
            }),
        }
    }

    /// Sends our claimed submission (again after transient failures, while worth it) and
    /// records how it ended. `marked`: the send count when the claim already recorded the
    /// first send (the normal path's [`ledger::claim_first`]).
    async fn send(
        &self,
        msg: &ResultMsg,
        task: &TaskRow,
        spz: Option<Bytes>,
        mut marked: Option<u32>,
    ) -> Result<Disposition, Stop> {
        let (validator, uid) = (msg.validator.hotkey.as_str(), Some(msg.validator.uid));
        let target = AxonTarget {
            ip: msg.validator.ip.clone(),
            port: msg.validator.port,
            hotkey: msg.validator.hotkey.clone(),
        };
        let mut failures_here = 0u32;
        let finish = loop {
            let tries = match marked.take() {
                Some(tries) => tries,
                None => {
                    let marked = db_retry("mark sending", self.db_backoff, &self.stop, || {
                        ledger::mark_sending(&self.pool, task.id, &self.instance, self.lease_secs())
                    })
                    .await?;
                    let Some(now_tries) = marked else {
                        tracing::warn!(
                            "another submitter took the submission over; leaving it to them"
                        );
                        return Ok(Disposition::Ack);
                    };
                    now_tries
                }
            };
            let submission = submit::Submission {
                target: &target,
                task_id: &msg.task_id,
                prompt: &msg.prompt,
                spz: spz.as_deref(),
            };
            let outcome =
                submit::sign_and_send(&self.dendrite, submission, self.submit_timeout).await;
            match outcome {
                SendOutcome::Answered {
                    feedback,
                    cooldown_until,
                    latency,
                } => {
                    metrics::submit_latency(validator, uid, latency.as_secs_f64());
                    break Finish::Answered {
                        feedback,
                        cooldown_until,
                        latency_ms: millis(latency),
                    };
                }
                SendOutcome::Permanent {
                    status,
                    error,
                    latency,
                } => {
                    metrics::submit_latency(validator, uid, latency.as_secs_f64());
                    tracing::warn!(?status, %error, "submission refused; not sending again");
                    break Finish::Refused {
                        status,
                        error,
                        latency_ms: millis(latency),
                    };
                }
                SendOutcome::Transient { status, error, .. } => {
                    failures_here += 1;
                    match self.send_policy.next(
                        tries,
                        failures_here,
                        now_secs(),
                        task.deadline_secs,
                        rand::random::<f64>(),
                    ) {
                        Ok(delay) => {
                            tracing::warn!(?status, %error, tries, ?delay, "submission failed; sending again");
                            metrics::send_retry(validator, uid);
                            tokio::select! {
                                () = self.stop.cancelled() => {
                                    let _ = ledger::release_lease(&self.pool, task.id, &self.instance).await;
                                    return Ok(Disposition::Requeue);
                                }
                                () = tokio::time::sleep(delay) => {}
                            }
                        }
                        Err(why) => {
                            tracing::warn!(?status, %error, tries, "{why}");
                            break Finish::GaveUp {
                                status,
                                error: format!("{error} ({why})"),
                            };
                        }
                    }
                }
            }
        };
        let verdict = db_retry("record submission", self.db_backoff, &self.stop, || {
            ledger::finish(&self.pool, task.id, &self.instance, msg, &finish)
        })
        .await?;
        let Some(verdict) = verdict else {
            tracing::warn!("the submission row was taken over before it was recorded");
            return Ok(Disposition::Ack);
        };
        self.count(msg, &finish, verdict, task.pulled_at_secs);
        Ok(Disposition::Ack)
    }

    /// Waits until no other delivery of this task is handled in this process, then marks it.
    async fn enter(&self, msg: &ResultMsg) -> Result<InFlight<'_>, Stop> {
        let task = (msg.validator.hotkey.clone(), msg.task_id.clone());
        loop {
            let inserted = self
                .in_flight
                .lock()
                .map(|mut set| set.insert(task.clone()))
                .unwrap_or(true);
            if inserted {
                return Ok(InFlight {
                    handler: self,
                    task,
                });
            }
            tokio::select! {
                () = self.stop.cancelled() => return Err(Stop::Disposition(Disposition::Requeue)),
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// `Some` when the task's submission is finished or the puller's: nothing to send.
    async fn already_handled(
        &self,
        msg: &ResultMsg,
        task_row: i64,
        state: &SubmissionRow,
    ) -> Result<Option<Disposition>, Stop> {
        let (validator, uid) = (msg.validator.hotkey.as_str(), Some(msg.validator.uid));
        match state {
            SubmissionRow::Finished { state } => {
                tracing::info!(%state, "submission already finished; acking the redelivery without sending");
                metrics::submission(validator, uid, "duplicate");
                Ok(Some(Disposition::Ack))
            }
            SubmissionRow::Releasing => {
                tracing::warn!("this task is being released (lost) before its result arrived; recording the attempts only");
                db_retry("record late result", self.db_backoff, &self.stop, || {
                    ledger::record_late(&self.pool, task_row, msg)
                })
                .await?;
                metrics::submission(validator, uid, "late");
                Ok(Some(Disposition::Ack))
            }
            SubmissionRow::Unclaimed | SubmissionRow::Sending { .. } => Ok(None),
        }
    }

    /// Counts a recorded submission by the verdict the ledger gave it.
    fn count(&self, msg: &ResultMsg, finish: &Finish, verdict: Verdict, pulled_at_secs: f64) {
        let (validator, uid) = (msg.validator.hotkey.as_str(), Some(msg.validator.uid));
        let outcome = match finish {
            Finish::Answered { feedback, .. } => {
                metrics::pull_to_feedback((now_secs() - pulled_at_secs).max(0.0));
                if verdict != Verdict::Empty {
                    let fidelity = feedback.as_ref().map_or(0.0, |f| f.task_fidelity_score);
                    metrics::score(validator, uid, fidelity);
                }
                match verdict {
                    Verdict::Empty => "empty",
                    Verdict::Accepted => "accepted",
                    Verdict::ValidationFailed => "validation_failed",
                    Verdict::Penalised => {
                        metrics::penalty(validator, uid);
                        "rejected"
                    }
                    Verdict::Lost | Verdict::Sending => "unexpected",
                }
            }
            Finish::Refused { .. } => "refused",
            Finish::GaveUp { .. } => "gave_up",
        };
        tracing::info!(outcome, %verdict, "result handled");
        metrics::submission(validator, uid, outcome);
    }
}
