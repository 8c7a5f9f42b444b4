//! One task from start to answer: check an image prompt, climb the retry ladder within the
//! time budget (generate → decode → gate tier 1 → tier 2 when configured, per attempt, each
//! attempt recorded) until an attempt reaches the stop score (in `validator` mode: passes,
//! with at least `sparse_below_gaussians` gaussians), store the best passing model by score
//! (tier 2's, else the predicted or local score: PLY, SPZ, contact sheet) and build the
//! [`ResultMsg`]. Seeds derive from the task id,
//! so a redelivered task asks for the same models and stores under the same keys.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use splatfleet_common::{
    artifacts::{ArtifactError, ArtifactStore},
    config::{GateMode, ValidationUnavailable, WorkerSettings},
    messages::{AttemptRecord, ResultMsg, ResultOutcome, TaskKind, TaskMsg},
    splat::{encode_spz, read_ply, PlyDecoded, PlyLimits},
};
use splatfleet_kernels::scorer::Prompt;

use crate::{
    budget::budget_end_unix_ms,
    gate::{Gate, GateVerdict},
    generation_client::GenerationClient,
    image_prompt::check_image_prompt,
    preview::contact_sheet_png,
    validation_client::ValidationClient,
};

/// Everything a task needs, shared by the slots of one worker.
#[derive(Debug)]
pub struct TaskContext {
    pub client: GenerationClient,
    pub gate: Arc<Mutex<Gate>>,
    /// The gate's tier 2, the subnet's validation service; `None`: tier 2 is off.
    pub validation: Option<ValidationClient>,
    pub store: ArtifactStore,
    pub settings: WorkerSettings,
    /// `host/gpuN`, written into every result.
    pub worker_name: String,
}

/// Why a task could not be answered now (it is requeued, not answered Empty).
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("storing an artifact failed: {0}")]
    Store(#[from] ArtifactError),
}

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A seed per (task, attempt), stable across redeliveries.
fn attempt_seed(task_id: &str, attempt: usize) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in task_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.wrapping_add(attempt as u32 * 7919)
}

/// How long to wait before asking an unreachable generation service again, and how many
/// times per task (each wait also stops at the time budget).
const UNREACHABLE_WAIT: Duration = Duration::from_secs(1);
const UNREACHABLE_RETRIES: u32 = 10;

/// How one attempt ended.
enum Attempted {
    Passed(Chosen),
    Failed,
    /// The generation service could not be reached: the rung was not really tried.
    Unreachable,
}

/// The attempt that passed, with what is needed to store it.
struct Chosen {
    /// Position of its record among the task's attempts.
    index: usize,
    ply_bytes: Bytes,
    decoded: Arc<PlyDecoded>,
    verdict: GateVerdict,
    /// The score it is judged by: tier 2's when the service gave one, else tier 1's.
    score: f32,
    /// The SPZ already encoded for tier 2, so it is not encoded twice.
    spz: Option<Vec<u8>>,
}

/// What tier 2 decided about a model that passed tier 1.
enum Tier2 {
    /// The service scored it at or above the threshold.
    Passed { score: f32 },
    /// No score came, and `validation_unavailable = "tier1"` trusts tier 1.
    Trusted,
    /// Under the threshold, no score under the `fail` policy, or no SPZ to send: the reason.
    Failed(String),
}

impl TaskContext {
    fn result(
        &self,
        task: &TaskMsg,
        outcome: ResultOutcome,
        attempts: Vec<AttemptRecord>,
    ) -> ResultMsg {
        ResultMsg {
            task_id: task.task_id.clone(),
            validator: task.validator.clone(),
            kind: task.kind,
            prompt: task.prompt.clone(),
            outcome,
            attempts,
            worker: self.worker_name.clone(),
            finished_at_unix_ms: now_unix_ms(),
        }
    }

    fn empty(&self, task: &TaskMsg, reason: String, attempts: Vec<AttemptRecord>) -> ResultMsg {
        metrics::counter!("splatfleet_worker_results_total", "outcome" => "empty").increment(1);
        self.result(task, ResultOutcome::Empty { reason }, attempts)
    }

    /// Turns `task` into its answer. Only a store failure is an error.
    pub async fn process(&self, task: &TaskMsg) -> Result<ResultMsg, TaskError> {
        let started = now_unix_ms();
        if task.kind == TaskKind::Image {
            if let Err(err) = check_image_prompt(&task.prompt) {
                return Ok(self.empty(task, err.to_string(), Vec::new()));
            }
        }
        let end = budget_end_unix_ms(
            started,
            task.throttle_period_secs,
            task.deadline_unix_ms,
            self.settings.min_budget_ms,
            self.settings.budget_margin_ms,
        );
        let mut attempts = Vec::new();
        let mut chosen: Option<Chosen> = None;
        let mut rung = 0;
        let mut unreachable_retries = 0;
        while let Some(step) = self.settings.ladder.get(rung) {
            let now = now_unix_ms();
            if now >= end {
                break;
            }
            let remaining = Duration::from_millis(u64::try_from(end - now).unwrap_or(0));
            let timeout = remaining.min(self.settings.generate_timeout());
            let (record, attempted) = self.attempt(task, rung, step, timeout).await;
            attempts.push(record);
            match attempted {
                Attempted::Passed(mut passed) => {
                    passed.index = attempts.len() - 1;
                    let stops = self.stops_ladder(&passed);
                    if !stops && self.is_sparse(&passed) {
                        if let Some(record) = attempts.last_mut() {
                            record.gate_metrics.insert("sparse_candidate".into(), 1.0);
                        }
                    }
                    // Keep the best passing attempt (tier 2's score, else the predicted
                    // score in validator mode, else the local score); ties keep the earlier.
                    if chosen.as_ref().is_none_or(|best| passed.score > best.score) {
                        chosen = Some(passed);
                    }
                    if stops {
                        break;
                    }
                }
                // A service that cannot be reached said nothing about this rung's
                // parameters: wait and ask again rather than spend the rung (a short outage
                // would otherwise burn the whole ladder in seconds).
                Attempted::Unreachable if unreachable_retries < UNREACHABLE_RETRIES => {
                    unreachable_retries += 1;
                    tokio::time::sleep(UNREACHABLE_WAIT.min(remaining)).await;
                    continue;
                }
                Attempted::Unreachable | Attempted::Failed => {}
            }
            rung += 1;
        }
        metrics::histogram!("splatfleet_worker_attempts_per_task").record(attempts.len() as f64);
        let Some(chosen) = chosen else {
            let reason = empty_reason(&attempts, started >= end);
            return Ok(self.empty(task, reason, attempts));
        };
        self.store_chosen(task, chosen, attempts).await
    }

    /// A passing attempt whose model is under `[worker.scorer] sparse_below_gaussians`
    /// (`validator` mode): kept as a candidate, but the ladder climbs on.
    fn is_sparse(&self, passed: &Chosen) -> bool {
        self.settings.gate_mode == GateMode::Validator
            && (passed.decoded.report.count as u64) < self.settings.scorer.sparse_below_gaussians
    }

    /// Whether a passing attempt ends the ladder: it reaches `gate_stop_score` when that is
    /// set; unset, `validator` mode stops at the first pass (its pass rule is the
    /// validator's threshold plus the margin) and the other modes at `gate_pass_threshold`.
    /// A sparse model never stops it ([`TaskContext::is_sparse`]).
    fn stops_ladder(&self, passed: &Chosen) -> bool {
        if self.is_sparse(passed) {
            return false;
        }
        let score = f64::from(passed.score);
        match (self.settings.gate_mode, self.settings.gate_stop_score) {
            (_, Some(stop)) => score >= stop,
            (GateMode::Validator, None) => true,
            (_, None) => score >= self.settings.stop_score(),
        }
    }

    /// One rung of the ladder; the record, and the model when it passed the gate.
    async fn attempt(
        &self,
        task: &TaskMsg,
        index: usize,
        step: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> (AttemptRecord, Attempted) {
        let mut params = step.clone();
        params.insert(
            "seed".into(),
            attempt_seed(&task.task_id, index).to_string(),
        );
        params.insert("attempt".into(), index.to_string());
        let mut record = AttemptRecord::started(params.clone(), now_unix_ms());
        metrics::counter!("splatfleet_worker_attempts_total").increment(1);
        let stage = Instant::now();
        let generated = self.client.generate(&task.prompt, &params, timeout).await;
        record_stage(&mut record, "generate", stage);
        let ply_bytes = match generated {
            Ok(bytes) => bytes,
            Err(err) => {
                metrics::counter!("splatfleet_worker_gate_decisions_total", "reason" => err.kind())
                    .increment(1);
                metrics::counter!("splatfleet_worker_generation_errors_total", "kind" => err.kind())
                    .increment(1);
                record.error = Some(err.to_string());
                let ended = if err.is_unreachable() {
                    Attempted::Unreachable
                } else {
                    Attempted::Failed
                };
                return (record, ended);
            }
        };
        let stage = Instant::now();
        let parse_input = ply_bytes.clone();
        let decoded =
            tokio::task::spawn_blocking(move || read_ply(&parse_input, &PlyLimits::default()))
                .await;
        record_stage(&mut record, "decode", stage);
        let decoded = match decoded {
            Ok(Ok(decoded)) => decoded,
            Ok(Err(err)) => {
                metrics::counter!("splatfleet_worker_gate_decisions_total", "reason" => "bad_ply")
                    .increment(1);
                metrics::counter!("splatfleet_worker_generation_errors_total", "kind" => "bad_ply")
                    .increment(1);
                record.error = Some(format!("PLY does not parse: {err}"));
                return (record, Attempted::Failed);
            }
            Err(err) => {
                record.error = Some(format!("decoding task failed: {err}"));
                return (record, Attempted::Failed);
            }
        };
        record.gaussian_count = u32::try_from(decoded.report.count).ok();
        let stage = Instant::now();
        let gate = Arc::clone(&self.gate);
        let (kind, prompt) = (task.kind, task.prompt.clone());
        let judged = tokio::task::spawn_blocking(move || {
            let prompt = task_prompt(kind, &prompt);
            let verdict = match gate.lock() {
                Ok(mut gate) => gate.evaluate(&decoded, Some(prompt)),
                Err(poisoned) => poisoned.into_inner().evaluate(&decoded, Some(prompt)),
            };
            (decoded, verdict)
        })
        .await;
        record_stage(&mut record, "gate", stage);
        let (decoded, verdict) = match judged {
            Ok(judged) => judged,
            Err(err) => {
                record.error = Some(format!("gate task failed: {err}"));
                return (record, Attempted::Failed);
            }
        };
        for (step, took) in &verdict.steps {
            record_duration(&mut record, step.name(), *took);
        }
        record.local_score = Some(verdict.local_score);
        record.gate_passed = Some(verdict.passed);
        record.gate_metrics = verdict.metrics.clone();
        let decision = if verdict.passed { "passed" } else { "failed" };
        metrics::counter!("splatfleet_worker_gate_decisions_total", "reason" => decision)
            .increment(1);
        if !verdict.passed {
            record.error = Some(verdict.reasons_text());
            return (record, Attempted::Failed);
        }
        let decoded = Arc::new(decoded);
        let (score, spz) = match &self.validation {
            None => (verdict.local_score, None),
            Some(validation) => {
                let stage = Instant::now();
                let (spz, tier2) = self
                    .tier2(task, validation, Arc::clone(&decoded), &mut record)
                    .await;
                record_stage(&mut record, "validate", stage);
                match tier2 {
                    Tier2::Passed { score } => (score, spz),
                    Tier2::Trusted => (verdict.local_score, spz),
                    Tier2::Failed(reason) => {
                        record.gate_passed = Some(false);
                        record.error = Some(reason);
                        return (record, Attempted::Failed);
                    }
                }
            }
        };
        let chosen = Chosen {
            index,
            ply_bytes,
            decoded,
            verdict,
            score,
            spz,
        };
        (record, Attempted::Passed(chosen))
    }

    /// Tier 2: encodes the model as SPZ (what a validator receives) and asks the validation
    /// service; the scores go into `record`, whose local score becomes tier 2's. Hands back
    /// the SPZ for storing.
    async fn tier2(
        &self,
        task: &TaskMsg,
        validation: &ValidationClient,
        decoded: Arc<PlyDecoded>,
        record: &mut AttemptRecord,
    ) -> (Option<Vec<u8>>, Tier2) {
        let decision = |reason: &'static str| {
            metrics::counter!("splatfleet_worker_gate_decisions_total", "reason" => reason)
                .increment(1);
        };
        let encoded = tokio::task::spawn_blocking(move || encode_spz(&decoded.splat)).await;
        let spz = match encoded {
            Ok(Ok(spz)) => spz,
            Ok(Err(err)) => {
                // Validators receive SPZ too: a model without one cannot be submitted.
                decision("spz_encode");
                let reason = format!("tier 2: the model cannot be encoded as SPZ: {err}");
                return (None, Tier2::Failed(reason));
            }
            Err(err) => {
                decision("spz_encode");
                let reason = format!("tier 2: SPZ encoding task failed: {err}");
                return (None, Tier2::Failed(reason));
            }
        };
        // A slow answer delays this validator's next task by its overrun, while a failing
        // submission costs 600 s: wait past the time budget, but never past the deadline.
        let until_deadline = u64::try_from(task.deadline_unix_ms - now_unix_ms()).unwrap_or(0);
        let timeout = self
            .settings
            .validation_timeout()
            .min(Duration::from_millis(until_deadline));
        let answer = validation
            .validate(task.kind, &task.prompt, &spz, timeout)
            .await;
        let scores = match answer {
            Ok(scores) => scores,
            Err(err) => {
                decision("tier2_unavailable");
                metrics::counter!("splatfleet_worker_validation_errors_total", "kind" => err.kind())
                    .increment(1);
                record.gate_metrics.insert("tier2_unavailable".into(), 1.0);
                let tier2 = match self.settings.validation_unavailable {
                    ValidationUnavailable::Tier1 => {
                        tracing::warn!(task_id = %task.task_id, %err, "tier 2 unavailable; trusting tier 1");
                        Tier2::Trusted
                    }
                    ValidationUnavailable::Fail => Tier2::Failed(format!(
                        "tier 2 unavailable ({err}) and validation_unavailable = \"fail\""
                    )),
                };
                return (Some(spz), tier2);
            }
        };
        let threshold = self.tier2_threshold(task);
        for (name, value) in scores.gate_metrics() {
            record.gate_metrics.insert(name.into(), value);
        }
        record
            .gate_metrics
            .insert("tier2_threshold".into(), threshold);
        record.local_score = Some(scores.score as f32);
        if scores.score < threshold {
            decision("tier2_failed");
            let reason = format!(
                "tier 2 (validation service) score {:.3} under the threshold {threshold:.3}",
                scores.score
            );
            return (Some(spz), Tier2::Failed(reason));
        }
        decision("tier2_passed");
        let score = scores.score as f32;
        (Some(spz), Tier2::Passed { score })
    }

    /// The tier-2 pass threshold: the configured one, or the task's own announced threshold
    /// when that is higher (a validator may ask for more than the subnet's 0.6).
    fn tier2_threshold(&self, task: &TaskMsg) -> f64 {
        let configured = self.settings.validation_pass_threshold;
        // The message carries it as f32: 0.6 widens to 0.6000000238, which would hold every
        // task to more than the configured 0.6. Six decimals is what an f32 can say.
        let announced = (f64::from(task.validation_threshold) * 1e6).round() / 1e6;
        if announced.is_finite() && (0.0..=1.0).contains(&announced) {
            configured.max(announced)
        } else {
            configured
        }
    }

    /// Stores the chosen model's PLY, SPZ and contact sheet and builds the Ready result.
    async fn store_chosen(
        &self,
        task: &TaskMsg,
        chosen: Chosen,
        mut attempts: Vec<AttemptRecord>,
    ) -> Result<ResultMsg, TaskError> {
        let stage = Instant::now();
        let ply = self.store.put("ply", "ply", chosen.ply_bytes).await?;
        let encoding = Instant::now();
        let encoded = match chosen.spz {
            Some(bytes) => Ok(bytes),
            None => encode_spz(&chosen.decoded.splat),
        };
        let encode_took = encoding.elapsed();
        let spz = match encoded {
            Ok(bytes) => Some(self.store.put("spz", "spz", Bytes::from(bytes)).await?),
            Err(err) => {
                tracing::warn!(task_id = %task.task_id, %err, "SPZ encoding failed; the submitter will encode the PLY");
                None
            }
        };
        let preview = match chosen.verdict.views.as_ref().map(contact_sheet_png) {
            Some(Ok(png)) => Some(self.store.put("preview", "png", Bytes::from(png)).await?),
            Some(Err(err)) => {
                tracing::warn!(task_id = %task.task_id, %err, "no preview");
                None
            }
            None => None,
        };
        let local_score = chosen.score;
        if let Some(record) = attempts.get_mut(chosen.index) {
            record.ply = Some(ply.clone());
            record_duration(record, "spz", encode_took);
            record_stage(record, "store", stage);
        }
        metrics::counter!("splatfleet_worker_results_total", "outcome" => "ready").increment(1);
        let outcome = ResultOutcome::Ready {
            ply,
            spz,
            preview,
            local_score,
            chosen_attempt: u16::try_from(chosen.index).unwrap_or(u16::MAX),
        };
        Ok(self.result(task, outcome, attempts))
    }
}

fn record_stage(record: &mut AttemptRecord, stage: &'static str, started: Instant) {
    record_duration(record, stage, started.elapsed());
}

/// One stage's time: whole milliseconds in the attempt record, seconds in the histogram.
fn record_duration(record: &mut AttemptRecord, stage: &'static str, took: Duration) {
    let ms = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
    record.stage_ms.insert(stage.into(), ms);
    observe_stage(stage, took);
}

/// A stage's time in `splatfleet_worker_stage_seconds` (also for stages outside an attempt,
/// such as the result's publish).
pub fn observe_stage(stage: &'static str, took: Duration) {
    metrics::histogram!("splatfleet_worker_stage_seconds", "stage" => stage)
        .record(took.as_secs_f64());
}

/// Why nothing is submitted, naming the last attempt's failure.
fn empty_reason(attempts: &[AttemptRecord], budget_gone_at_start: bool) -> String {
    if attempts.is_empty() {
        return if budget_gone_at_start {
            "the task's deadline passed before any attempt".into()
        } else {
            "the time budget ran out before any attempt".into()
        };
    }
    let last = attempts
        .last()
        .and_then(|a| a.error.clone())
        .unwrap_or_else(|| "unknown".into());
    format!(
        "no attempt passed the gate ({} tried); last: {last}",
        attempts.len()
    )
}

/// The task's prompt as the scorer takes it: text as sent, an image as its base64 text.
fn task_prompt(kind: TaskKind, prompt: &str) -> Prompt<'_> {
    match kind {
        TaskKind::Text => Prompt::Text(prompt),
        TaskKind::Image => Prompt::ImageBase64(prompt),
    }
}
