//! One task from start to answer: check an image prompt, climb the retry ladder within the
//! time budget (generate → decode → gate per attempt, each attempt recorded), store the best
//! passing model (PLY, SPZ, contact sheet) and build the [`ResultMsg`]. Seeds derive from the
//! task id, so a redelivered task asks for the same models and stores under the same keys.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use bytes::Bytes;
use splatfleet_common::{
    artifacts::{ArtifactError, ArtifactStore},
    config::WorkerSettings,
    messages::{AttemptRecord, ResultMsg, ResultOutcome, TaskKind, TaskMsg},
    splat::{encode_spz, read_ply, PlyDecoded, PlyLimits},
};

use crate::{
    budget::budget_end_unix_ms,
    gate::{Gate, GateVerdict},
    generation_client::GenerationClient,
    image_prompt::check_image_prompt,
    preview::contact_sheet_png,
};

/// Everything a task needs, shared by the slots of one worker.
#[derive(Debug)]
pub struct TaskContext {
    pub client: GenerationClient,
    pub gate: Arc<Mutex<Gate>>,
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

fn ms_since(start: Instant) -> u32 {
    u32::try_from(start.elapsed().as_millis()).unwrap_or(u32::MAX)
}

/// The attempt that passed, with what is needed to store it.
struct Chosen {
    index: usize,
    ply_bytes: Bytes,
    decoded: PlyDecoded,
    verdict: GateVerdict,
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
        let mut chosen = None;
        for (index, step) in self.settings.ladder.iter().enumerate() {
            let now = now_unix_ms();
            if now >= end {
                break;
            }
            let remaining = std::time::Duration::from_millis(u64::try_from(end - now).unwrap_or(0));
            let timeout = remaining.min(self.settings.generate_timeout());
            let (record, passed) = self.attempt(task, index, step, timeout).await;
            attempts.push(record);
            if let Some(passed) = passed {
                chosen = Some(passed);
                break;
            }
        }
        metrics::histogram!("splatfleet_worker_attempts_per_task").record(attempts.len() as f64);
        let Some(chosen) = chosen else {
            let reason = empty_reason(&attempts, started >= end);
            return Ok(self.empty(task, reason, attempts));
        };
        self.store_chosen(task, chosen, attempts).await
    }

    /// One rung of the ladder; the record, and the model when it passed the gate.
    async fn attempt(
        &self,
        task: &TaskMsg,
        index: usize,
        step: &BTreeMap<String, String>,
        timeout: std::time::Duration,
    ) -> (AttemptRecord, Option<Chosen>) {
        let mut params = step.clone();
        params.insert(
            "seed".into(),
            attempt_seed(&task.task_id, index).to_string(),
        );
        params.insert("attempt".into(), index.to_string());
        let mut record = AttemptRecord {
            params: params.clone(),
            started_at_unix_ms: now_unix_ms(),
            stage_ms: BTreeMap::new(),
            gaussian_count: None,
            local_score: None,
            gate_passed: None,
            gate_metrics: BTreeMap::new(),
            ply: None,
            error: None,
        };
        metrics::counter!("splatfleet_worker_attempts_total").increment(1);
        let stage = Instant::now();
        let generated = self.client.generate(&task.prompt, &params, timeout).await;
        record_stage(&mut record, "generate", stage);
        let ply_bytes = match generated {
            Ok(bytes) => bytes,
            Err(err) => {
                metrics::counter!("splatfleet_worker_gate_decisions_total", "reason" => err.kind())
                    .increment(1);
                record.error = Some(err.to_string());
                return (record, None);
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
                record.error = Some(format!("PLY does not parse: {err}"));
                return (record, None);
            }
            Err(err) => {
                record.error = Some(format!("decoding task failed: {err}"));
                return (record, None);
            }
        };
        record.gaussian_count = u32::try_from(decoded.report.count).ok();
        let stage = Instant::now();
        let gate = Arc::clone(&self.gate);
        let judged = tokio::task::spawn_blocking(move || {
            let verdict = match gate.lock() {
                Ok(mut gate) => gate.evaluate(&decoded),
                Err(poisoned) => poisoned.into_inner().evaluate(&decoded),
            };
            (decoded, verdict)
        })
        .await;
        record_stage(&mut record, "gate", stage);
        let (decoded, verdict) = match judged {
            Ok(judged) => judged,
            Err(err) => {
                record.error = Some(format!("gate task failed: {err}"));
                return (record, None);
            }
        };
        record.local_score = Some(verdict.local_score);
        record.gate_passed = Some(verdict.passed);
        record.gate_metrics = verdict.metrics.clone();
        let decision = if verdict.passed { "passed" } else { "failed" };
        metrics::counter!("splatfleet_worker_gate_decisions_total", "reason" => decision)
            .increment(1);
        if !verdict.passed {
            record.error = Some(verdict.reasons_text());
            return (record, None);
        }
        let chosen = Chosen {
            index,
            ply_bytes,
            decoded,
            verdict,
        };
        (record, Some(chosen))
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
        let spz = match encode_spz(&chosen.decoded.splat) {
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
        let local_score = chosen.verdict.local_score;
        if let Some(record) = attempts.get_mut(chosen.index) {
            record.ply = Some(ply.clone());
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
    let elapsed = ms_since(started);
    record.stage_ms.insert(stage.into(), elapsed);
    metrics::histogram!("splatfleet_worker_stage_seconds", "stage" => stage)
        .record(f64::from(elapsed) / 1000.0);
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
