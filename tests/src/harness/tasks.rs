//! Tasks as the puller records them, through the ledger: pulled from a simulated validator
//! with the miner's dendrite ([`World::pull`]), made up for one ([`World::record_task`]), or,
//! without a world, a task row on a bare database ([`record_task_row`]).

use std::time::Duration;

use splatfleet_common::{
    bittensor::AxonTarget,
    db::Pool,
    discovery::ValidatorInfo,
    ledger,
    messages::{TaskKind, TaskMsg, ValidatorRef},
    protocol::sn17::{PullTask, TaskType},
};

use super::World;

/// A task pulled from a simulated validator and recorded as the puller records it.
#[derive(Debug, Clone)]
pub struct PulledTask {
    /// The task's row id.
    pub row: i64,
    pub task_id: String,
    pub prompt: String,
    pub kind: TaskKind,
    pub validator: ValidatorRef,
}

/// The `TaskMsg` the puller publishes for a task of `validator` pulled at `pulled_at_unix_ms`:
/// the validator's 0.6 threshold and 30 s throttle, a deadline 5 minutes after the pull.
pub fn task_msg(
    validator: &ValidatorInfo,
    task_id: &str,
    prompt: &str,
    kind: TaskKind,
    pulled_at_unix_ms: i64,
) -> TaskMsg {
    TaskMsg {
        task_id: task_id.to_owned(),
        validator: ValidatorRef {
            uid: validator.uid,
            hotkey: validator.hotkey.clone(),
            ip: validator.ip.clone(),
            port: validator.port,
        },
        kind,
        prompt: prompt.to_owned(),
        validation_threshold: 0.6,
        throttle_period_secs: 30,
        pulled_at_unix_ms,
        deadline_unix_ms: pulled_at_unix_ms + 5 * 60 * 1000,
    }
}

/// Records `task` for `validator` (its rows added if new) as the puller does, status
/// `queued`; the task's row id. Panics if the task was recorded before.
pub async fn record_queued_task(pool: &Pool, validator: &ValidatorInfo, task: &TaskMsg) -> i64 {
    let ids =
        ledger::validators::upsert_validators(pool, std::slice::from_ref(validator), "static")
            .await
            .expect("validator row");
    let prompt_sha = splatfleet_common::artifacts::sha256_hex(task.prompt.as_bytes());
    match ledger::insert_task(pool, ids[&validator.hotkey], task, &prompt_sha)
        .await
        .expect("task row")
    {
        ledger::TaskInsert::Inserted { id } => id,
        existing => panic!("task {} was recorded before: {existing:?}", task.task_id),
    }
}

/// Without a world: a `queued` text task `task_id` ("a teapot", pulled now) for the validator
/// `hotkey` at uid 1, 127.0.0.1:9000; the task's row id.
pub async fn record_task_row(pool: &Pool, hotkey: &str, task_id: &str) -> i64 {
    let validator = ValidatorInfo {
        uid: 1,
        hotkey: hotkey.to_owned(),
        ip: "127.0.0.1".into(),
        port: 9000,
        stake: 0.0,
        validator_permit: true,
    };
    let task = task_msg(&validator, task_id, "a teapot", TaskKind::Text, now_ms());
    record_queued_task(pool, &validator, &task).await
}

/// Now, in Unix milliseconds.
pub(super) fn now_ms() -> i64 {
    (crate::sim::rules::now_secs() * 1000.0) as i64
}

impl World {
    /// Where validator `validator` listens.
    pub fn target(&self, validator: usize) -> AxonTarget {
        self.validators[validator].axon()
    }

    /// Records a task of validator `validator`, pulled now, as the puller does.
    pub async fn record_task(
        &self,
        validator: usize,
        task_id: &str,
        prompt: &str,
        kind: TaskKind,
    ) -> PulledTask {
        let info = &self.validators[validator];
        let task = task_msg(info, task_id, prompt, kind, now_ms());
        let row = record_queued_task(&self.pool, info, &task).await;
        PulledTask {
            row,
            task_id: task.task_id,
            prompt: task.prompt,
            kind,
            validator: task.validator,
        }
    }

    /// Pulls a task from validator `validator` and records it.
    pub async fn pull(&self, validator: usize) -> PulledTask {
        let answer = self
            .dendrite
            .call(
                &self.target(validator),
                PullTask::default(),
                Duration::from_secs(5),
            )
            .await
            .expect("pull")
            .body
            .synapse;
        let task = answer.task.expect("the validator hands out a task");
        let kind = match task.task_type() {
            TaskType::Text => TaskKind::Text,
            TaskType::Image => TaskKind::Image,
        };
        self.record_task(validator, task.id(), task.prompt(), kind)
            .await
    }
}
