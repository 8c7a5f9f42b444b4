//! Stand-ins for the worker: results built and published by hand for the submitter (a model
//! stored in the world's artifact store, as PLY and SPZ when asked, or an empty answer, each
//! after a failed and a passing attempt), and stand-in workers that consume real `TaskMsg`s
//! and publish a real `ResultMsg` naming one stored model that passes the simulated
//! validators, or acknowledge a task and forget it (a task the fleet lost).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU32, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use splatfleet_common::{
    broker::Disposition,
    messages::{ArtifactRef, AttemptRecord, ResultMsg, ResultOutcome, TaskMsg},
    splat::{encode_spz, write_ply, Splat},
};

use super::{tasks::now_ms, PulledTask, World};
use crate::sim::models;

/// A splat the validator's hard-zero rules pass: `n` gaussians spread over a cube, opaque,
/// rotated.
pub fn sample_splat(n: usize, seed: u32) -> Splat {
    let mut splat = Splat::zeroed(n, 0, false);
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state as f32 / u32::MAX as f32) - 0.5
    };
    for i in 0..n {
        splat.positions[i] = [next(), next(), next()];
        splat.sh_dc[i] = [next(), next(), next()];
        splat.opacities[i] = 2.0 + next();
        splat.log_scales[i] = [-4.0 + next(), -4.0 + next(), -4.0 + next()];
        splat.rotations[i] = [1.0, next(), next(), next()];
    }
    splat
}

/// A worker's two attempts: the first failed its gate, the second (with `ply`) passed it.
fn attempts(ply: Option<&ArtifactRef>) -> Vec<AttemptRecord> {
    let now_ms = now_ms();
    vec![
        AttemptRecord {
            params: BTreeMap::from([("seed".into(), "1".into())]),
            started_at_unix_ms: now_ms - 20_000,
            stage_ms: BTreeMap::from([("generate".into(), 9_000)]),
            gaussian_count: None,
            local_score: Some(0.2),
            gate_passed: Some(false),
            gate_metrics: BTreeMap::from([("coverage".into(), 0.1)]),
            ply: None,
            error: None,
        },
        AttemptRecord {
            params: BTreeMap::from([("seed".into(), "2".into())]),
            started_at_unix_ms: now_ms - 10_000,
            stage_ms: BTreeMap::from([("generate".into(), 8_000), ("gate".into(), 40)]),
            gaussian_count: Some(20_000),
            local_score: Some(0.8),
            gate_passed: Some(true),
            gate_metrics: BTreeMap::from([("coverage".into(), 0.8)]),
            ply: ply.cloned(),
            error: None,
        },
    ]
}

impl World {
    /// A ready result for `task`: the model stored as PLY, and as SPZ too when `with_spz`.
    pub async fn ready_result(&self, task: &PulledTask, with_spz: bool, seed: u32) -> ResultMsg {
        let splat = sample_splat(20_000, seed);
        let ply_bytes = write_ply(&splat).expect("ply");
        let ply = self
            .store
            .put("ply", "ply", Bytes::from(ply_bytes))
            .await
            .expect("store ply");
        let spz = if with_spz {
            let bytes = encode_spz(&splat).expect("spz");
            Some(
                self.store
                    .put("spz", "spz", Bytes::from(bytes))
                    .await
                    .expect("store spz"),
            )
        } else {
            None
        };
        self.result(
            task,
            ResultOutcome::Ready {
                ply: ply.clone(),
                spz,
                preview: None,
                local_score: 0.8,
                chosen_attempt: 1,
            },
            Some(&ply),
        )
    }

    /// An empty result for `task`.
    pub fn empty_result(&self, task: &PulledTask) -> ResultMsg {
        self.result(
            task,
            ResultOutcome::Empty {
                reason: "gate: nothing passed".into(),
            },
            None,
        )
    }

    /// A result for `task` with `outcome`, whose passing attempt names `ply`.
    pub fn result(
        &self,
        task: &PulledTask,
        outcome: ResultOutcome,
        ply: Option<&ArtifactRef>,
    ) -> ResultMsg {
        ResultMsg {
            task_id: task.task_id.clone(),
            validator: task.validator.clone(),
            kind: task.kind,
            prompt: task.prompt.clone(),
            outcome,
            attempts: attempts(ply),
            worker: "host-a/gpu0".into(),
            finished_at_unix_ms: now_ms(),
        }
    }

    /// Publishes `msg` on the results queue.
    pub async fn publish(&self, msg: &ResultMsg) {
        self.publisher.publish(msg).await.expect("publish result");
    }
}

/// Bytes of SPZ the stand-in's model has at least: the simulated validators score a payload
/// by its size (0.63 at `reference_bytes` = 100 kB), so this passes their 0.6 threshold.
const STAND_IN_SPZ_BYTES: usize = 150_000;

/// What the stand-in workers saw.
#[derive(Debug, Default)]
pub struct WorkLog {
    /// Deliveries per (validator hotkey, task id).
    pub deliveries: Mutex<HashMap<(String, String), u32>>,
    /// Results published for the submitter.
    pub submitted: AtomicUsize,
    /// Tasks acknowledged and forgotten.
    pub dropped: AtomicUsize,
}

impl World {
    /// Starts `count` stand-in workers: each takes one task at a time, "generates" for
    /// `generate`, then publishes a passing result for the submitter, except every
    /// `drop_every`-th task, which it acknowledges and forgets (a task the fleet lost).
    pub async fn spawn_stand_in_workers(
        &mut self,
        count: usize,
        generate: Duration,
        drop_every: Option<u32>,
    ) -> Arc<WorkLog> {
        let log = Arc::new(WorkLog::default());
        let model = Arc::new(self.store_stand_in_model().await);
        let seen = Arc::new(AtomicU32::new(0));
        for n in 0..count {
            let consumer = self
                .broker
                .consumer::<TaskMsg>(1, &format!("stand-in-worker-{n}"))
                .await
                .expect("consumer");
            let publisher = Arc::new(
                self.broker
                    .publisher::<ResultMsg>()
                    .await
                    .expect("results publisher"),
            );
            let (log, seen, model) = (log.clone(), seen.clone(), model.clone());
            let stop = self.stop.clone();
            self.background.push(tokio::spawn(async move {
                let _ = consumer
                    .run(stop, move |incoming| {
                        let (log, seen, model, publisher) =
                            (log.clone(), seen.clone(), model.clone(), publisher.clone());
                        async move {
                            let task = incoming.body;
                            *log.deliveries
                                .lock()
                                .expect("work log")
                                .entry((task.validator.hotkey.clone(), task.task_id.clone()))
                                .or_default() += 1;
                            tokio::time::sleep(generate).await;
                            let nth = seen.fetch_add(1, Ordering::SeqCst) + 1;
                            if drop_every.is_some_and(|every| nth % every == 0) {
                                log.dropped.fetch_add(1, Ordering::SeqCst);
                            } else if publisher
                                .publish(&stand_in_result(&task, &model))
                                .await
                                .is_ok()
                            {
                                log.submitted.fetch_add(1, Ordering::SeqCst);
                            }
                            Disposition::Ack
                        }
                    })
                    .await;
            }));
        }
        log
    }

    /// Stores the stand-ins' one model (an object-shaped splat whose SPZ is at least
    /// [`STAND_IN_SPZ_BYTES`]) where the submitter reads it.
    async fn store_stand_in_model(&self) -> ArtifactRef {
        let mut gaussians = 2_000;
        let splat = loop {
            let splat = models::object(gaussians, 17);
            let spz = encode_spz(&splat).expect("encode the stand-in model");
            if spz.len() >= STAND_IN_SPZ_BYTES {
                break splat;
            }
            gaussians *= 2;
        };
        let ply = write_ply(&splat).expect("write the stand-in model");
        self.store
            .put("ply", "ply", ply.into())
            .await
            .expect("store the stand-in model")
    }
}

/// The stand-in worker's answer to `task`: the stored model, passing its gate.
fn stand_in_result(task: &TaskMsg, model: &ArtifactRef) -> ResultMsg {
    let now_ms = now_ms();
    ResultMsg {
        task_id: task.task_id.clone(),
        validator: task.validator.clone(),
        kind: task.kind,
        prompt: task.prompt.clone(),
        outcome: ResultOutcome::Ready {
            ply: model.clone(),
            spz: None,
            preview: None,
            local_score: 0.8,
            chosen_attempt: 0,
        },
        attempts: vec![AttemptRecord {
            local_score: Some(0.8),
            gate_passed: Some(true),
            ply: Some(model.clone()),
            ..AttemptRecord::started(BTreeMap::new(), now_ms)
        }],
        worker: "stand-in".into(),
        finished_at_unix_ms: now_ms,
    }
}
