//! Messages between roles (ARCHITECTURE.md, messages), version 1: `TaskMsg` from the puller to workers
//! and `ResultMsg` from workers to submitters. Large bytes (PLY, SPZ, previews) never ride
//! here; results carry object-store keys and hashes instead. Image prompts do ride verbatim,
//! because the license signature covers the exact prompt string.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A message type that travels in an [`crate::broker::Envelope`] on one queue.
pub trait Message: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    /// Schema version written in the envelope; bump it when the body changes shape.
    const SCHEMA: u16;
    /// The queue (after the prefix) that carries this message.
    const QUEUE: crate::broker::QueueKind;
    /// The AMQP `message_id`: the task id.
    fn message_id(&self) -> &str;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskKind {
    Text,
    /// The prompt is a base64-encoded image.
    Image,
}

/// Which validator a task came from and where to answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorRef {
    pub uid: u16,
    /// SS58 hotkey.
    pub hotkey: String,
    pub ip: String,
    pub port: u16,
}

/// One pulled task, ready for a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMsg {
    /// The validator's task id (unique per validator).
    pub task_id: String,
    pub validator: ValidatorRef,
    pub kind: TaskKind,
    /// Exactly as the validator sent it.
    pub prompt: String,
    pub validation_threshold: f32,
    /// Seconds after assignment during which finishing costs no extra cooldown.
    pub throttle_period_secs: u32,
    pub pulled_at_unix_ms: i64,
    /// After this the task is not worth submitting.
    pub deadline_unix_ms: i64,
}

impl Message for TaskMsg {
    const SCHEMA: u16 = 1;
    const QUEUE: crate::broker::QueueKind = crate::broker::QueueKind::Tasks;
    fn message_id(&self) -> &str {
        &self.task_id
    }
}

/// Where an artifact was stored and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    pub key: String,
    /// Lower-case hex.
    pub sha256: String,
    pub bytes: u64,
}

/// What the worker decided to submit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ResultOutcome {
    /// A model that passed the gate.
    Ready {
        ply: ArtifactRef,
        spz: Option<ArtifactRef>,
        preview: Option<ArtifactRef>,
        local_score: f32,
        /// Index into `attempts` of the chosen attempt.
        chosen_attempt: u16,
    },
    /// Nothing worth submitting: release the task without penalty.
    Empty { reason: String },
}

/// One generation attempt, recorded whatever its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Generation parameters (seed, enhancement, sampler overrides).
    pub params: BTreeMap<String, String>,
    pub started_at_unix_ms: i64,
    /// Milliseconds per stage (`generate`, `decode`, `render`, `gate`, `store`).
    pub stage_ms: BTreeMap<String, u32>,
    pub gaussian_count: Option<u32>,
    pub local_score: Option<f32>,
    pub gate_passed: Option<bool>,
    pub gate_metrics: BTreeMap<String, f64>,
    pub ply: Option<ArtifactRef>,
    pub error: Option<String>,
}

impl AttemptRecord {
    /// An attempt with `params` started at `started_at_unix_ms`, nothing measured yet.
    pub fn started(params: BTreeMap<String, String>, started_at_unix_ms: i64) -> Self {
        Self {
            params,
            started_at_unix_ms,
            stage_ms: BTreeMap::new(),
            gaussian_count: None,
            local_score: None,
            gate_passed: None,
            gate_metrics: BTreeMap::new(),
            ply: None,
            error: None,
        }
    }
}

/// A worker's answer to one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultMsg {
    pub task_id: String,
    pub validator: ValidatorRef,
    pub kind: TaskKind,
    /// The prompt again, verbatim: the submitter signs over it.
    pub prompt: String,
    pub outcome: ResultOutcome,
    pub attempts: Vec<AttemptRecord>,
    /// Which worker produced it (`host/gpuN`).
    pub worker: String,
    pub finished_at_unix_ms: i64,
}

impl Message for ResultMsg {
    const SCHEMA: u16 = 1;
    const QUEUE: crate::broker::QueueKind = crate::broker::QueueKind::Results;
    fn message_id(&self) -> &str {
        &self.task_id
    }
}
