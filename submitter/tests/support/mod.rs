//! A rig around the submitter for its tests: simulated validators (scaled time), a fresh
//! database and queue prefix, an artifact directory, the submitter running in-process, and
//! helpers that stand in for the puller (pull a task, record its row) and the worker (store
//! the model, publish the `ResultMsg`).

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use splatfleet_common::{
    artifacts::ArtifactStore,
    bittensor::{AxonTarget, Dendrite, DendriteSettings},
    broker::{Broker, Publisher},
    config::{BrokerSettings, Config, ObjectStoreSettings},
    db::Pool,
    discovery::ValidatorInfo,
    ledger,
    messages::{AttemptRecord, ResultMsg, ResultOutcome, TaskKind, TaskMsg, ValidatorRef},
    protocol::sn17::PullTask,
    shutdown::Shutdown,
    splat::{encode_spz, write_ply, Splat},
};
use splatfleet_tests::{
    sim::{
        setup::{self, Network, NetworkSettings},
        EventLog, RuleSettings, ScoreMode, ScoreSettings,
    },
    FreshDatabase,
};

/// 300 s cooldowns become 5 s.
pub const TIME_SCALE: f64 = 60.0;

pub struct Rig {
    pub network: Network,
    pub keys_dir: PathBuf,
    pub db: FreshDatabase,
    pub broker_settings: BrokerSettings,
    pub broker: Broker,
    pub publisher: Publisher<ResultMsg>,
    pub pool: Pool,
    pub store: ArtifactStore,
    pub dendrite: Dendrite,
    pub config: Config,
    pub shutdown: Shutdown,
    submitter: Option<tokio::task::JoinHandle<Result<(), splatfleet_submitter::SubmitterError>>>,
}

/// A task pulled from a simulated validator and recorded as the puller records it.
#[derive(Debug, Clone)]
pub struct PulledTask {
    pub row: i64,
    pub task_id: String,
    pub prompt: String,
    pub kind: TaskKind,
    pub validator: ValidatorRef,
}

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

impl Rig {
    /// Starts `count` validators and the submitter; `env` overrides config keys
    /// (`SPLATFLEET__SUBMITTER__...`).
    pub async fn start(count: u16, env: &[(&str, &str)]) -> Self {
        let keys_dir =
            std::env::temp_dir().join(format!("splatfleet-submitter-{}", uuid::Uuid::new_v4()));
        let settings = NetworkSettings {
            count,
            base_port: 0,
            keys_dir: keys_dir.clone(),
            rules: RuleSettings {
                time_scale: TIME_SCALE,
                ..RuleSettings::default()
            },
            // Results here include PLY-only and arbitrary payloads: score by size.
            scoring: ScoreSettings {
                mode: ScoreMode::PayloadSize,
                noise: 0.0,
                ..ScoreSettings::default()
            },
            image_fraction: 0.25,
            seed: 8,
            stake: 5_000.0,
        };
        let network = setup::start(&settings, EventLog::in_memory())
            .await
            .expect("sim starts");
        let db = FreshDatabase::create().await;
        let broker_settings = splatfleet_tests::broker_settings();
        let config_path =
            splatfleet_tests::write_config(&keys_dir, &broker_settings, &db.settings, 10);
        let artifacts = keys_dir.join("artifacts");
        let mut overrides: Vec<(String, String)> = vec![
            (
                "SPLATFLEET__WALLET__PATH".into(),
                keys_dir.display().to_string(),
            ),
            ("SPLATFLEET__WALLET__NAME".into(), "miner".into()),
            ("SPLATFLEET__WALLET__HOTKEY".into(), "default".into()),
            (
                "SPLATFLEET__OBJECT_STORE__ROOT".into(),
                artifacts.display().to_string(),
            ),
            (
                "SPLATFLEET__SUBMITTER__SUBMIT_TIMEOUT_SECS".into(),
                "10".into(),
            ),
            (
                "SPLATFLEET__SUBMITTER__RETRY_INITIAL_MS".into(),
                "200".into(),
            ),
            ("SPLATFLEET__SUBMITTER__RETRY_MAX_MS".into(), "800".into()),
            (
                "SPLATFLEET__SUBMITTER__DB_RETRY_INITIAL_MS".into(),
                "100".into(),
            ),
            (
                "SPLATFLEET__SUBMITTER__DB_RETRY_MAX_MS".into(),
                "500".into(),
            ),
            (
                "SPLATFLEET__DATABASE__WAIT_TIMEOUT_MS".into(),
                "1000".into(),
            ),
            (
                "SPLATFLEET__DATABASE__CREATE_TIMEOUT_MS".into(),
                "1000".into(),
            ),
        ];
        overrides.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::load_with_env(&config_path, overrides).expect("config loads");
        let broker = Broker::connect(&broker_settings, "submitter-test")
            .await
            .expect("broker");
        broker.declare_topology().await.expect("topology");
        let publisher = broker.publisher::<ResultMsg>().await.expect("publisher");
        let pool = db.migrated_pool().await;
        let store = ArtifactStore::open(&ObjectStoreSettings {
            root: artifacts,
            ..ObjectStoreSettings::default()
        })
        .expect("artifact store");
        let miner = setup::load_or_create(&keys_dir, "miner").expect("miner wallet");
        let dendrite = Dendrite::new(Arc::new(miner), DendriteSettings::default());
        let shutdown = Shutdown::new();
        let submitter = Some(tokio::spawn(splatfleet_submitter::run(
            config.clone(),
            shutdown.clone(),
        )));
        Self {
            network,
            keys_dir,
            db,
            broker_settings,
            broker,
            publisher,
            pool,
            store,
            dendrite,
            config,
            shutdown,
            submitter,
        }
    }

    pub fn target(&self, validator: usize) -> AxonTarget {
        self.network.list.validators[validator].axon()
    }

    fn validator_ref(&self, validator: usize) -> ValidatorRef {
        let info = &self.network.list.validators[validator];
        ValidatorRef {
            uid: info.uid,
            hotkey: info.hotkey.clone(),
            ip: info.ip.clone(),
            port: info.port,
        }
    }

    /// Records a validator and a task row as the puller does (status `queued`), through the
    /// ledger.
    pub async fn record_task(
        &self,
        validator: usize,
        task_id: &str,
        prompt: &str,
        kind: TaskKind,
    ) -> PulledTask {
        let v = self.validator_ref(validator);
        let info = self.network.list.validators[validator].clone();
        let ids = ledger::validators::upsert_validators(&self.pool, &[info], "static")
            .await
            .expect("validator row");
        let now_ms = (splatfleet_tests::sim::rules::now_secs() * 1000.0) as i64;
        let msg = TaskMsg {
            task_id: task_id.to_owned(),
            validator: v.clone(),
            kind,
            prompt: prompt.to_owned(),
            validation_threshold: 0.6,
            throttle_period_secs: 30,
            pulled_at_unix_ms: now_ms,
            deadline_unix_ms: now_ms + 5 * 60 * 1000,
        };
        let sha = splatfleet_common::artifacts::sha256_hex(prompt.as_bytes());
        let inserted = ledger::insert_task(&self.pool, ids[&v.hotkey], &msg, &sha)
            .await
            .expect("task row");
        let ledger::TaskInsert::Inserted { id } = inserted else {
            panic!("task {task_id} was recorded before: {inserted:?}");
        };
        PulledTask {
            row: id,
            task_id: task_id.to_owned(),
            prompt: prompt.to_owned(),
            kind,
            validator: v,
        }
    }

    /// Pulls a task from `validator` and records it.
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
            splatfleet_common::protocol::sn17::TaskType::Text => TaskKind::Text,
            splatfleet_common::protocol::sn17::TaskType::Image => TaskKind::Image,
        };
        self.record_task(validator, task.id(), task.prompt(), kind)
            .await
    }

    fn attempts(
        &self,
        ply: Option<&splatfleet_common::messages::ArtifactRef>,
        local_score: f32,
    ) -> Vec<AttemptRecord> {
        let now_ms = (splatfleet_tests::sim::rules::now_secs() * 1000.0) as i64;
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
                local_score: Some(local_score),
                gate_passed: Some(true),
                gate_metrics: BTreeMap::from([("coverage".into(), 0.8)]),
                ply: ply.cloned(),
                error: None,
            },
        ]
    }

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

    pub fn result(
        &self,
        task: &PulledTask,
        outcome: ResultOutcome,
        ply: Option<&splatfleet_common::messages::ArtifactRef>,
    ) -> ResultMsg {
        ResultMsg {
            task_id: task.task_id.clone(),
            validator: task.validator.clone(),
            kind: task.kind,
            prompt: task.prompt.clone(),
            outcome,
            attempts: self.attempts(ply, 0.8),
            worker: "host-a/gpu0".into(),
            finished_at_unix_ms: (splatfleet_tests::sim::rules::now_secs() * 1000.0) as i64,
        }
    }

    pub async fn publish(&self, msg: &ResultMsg) {
        self.publisher.publish(msg).await.expect("publish result");
    }

    /// Polls `query` (one bigint) until it returns `want`, or panics after `timeout`.
    pub async fn wait_count(&self, query: &str, want: i64, timeout: Duration) {
        let started = Instant::now();
        let mut last = -1;
        while started.elapsed() < timeout {
            if let Ok(client) = self.pool.get().await {
                if let Ok(row) = client.query_one(query, &[]).await {
                    last = row.get(0);
                    if last == want {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("`{query}` stayed at {last}, wanted {want}");
    }

    /// Sim events of `kind` about `task_id`.
    pub fn events(&self, kind: &str, task_id: &str) -> Vec<serde_json::Value> {
        self.network
            .events
            .of_kind(kind)
            .into_iter()
            .filter(|e| e["task_id"] == task_id)
            .collect()
    }

    /// Waits at most `timeout` for the submitter to stop by itself, and returns how it ended.
    pub async fn stopped_by_itself(
        &mut self,
        timeout: Duration,
    ) -> Result<(), splatfleet_submitter::SubmitterError> {
        let handle = self.submitter.take().expect("the submitter is running");
        tokio::time::timeout(timeout, handle)
            .await
            .expect("the submitter stopped by itself")
            .expect("submitter task")
    }

    /// Stops the submitter (it must stop cleanly) and cleans up.
    pub async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(handle) = self.submitter.take() {
            let outcome = tokio::time::timeout(Duration::from_secs(15), handle)
                .await
                .expect("submitter stops")
                .expect("submitter task");
            outcome.expect("submitter stops cleanly");
        }
        self.pool.close();
        self.broker.close().await;
        splatfleet_tests::delete_topology(&self.broker_settings).await;
        let _ = std::fs::remove_dir_all(&self.keys_dir);
        let db = std::mem::replace(
            &mut self.db,
            FreshDatabase {
                settings: splatfleet_tests::database_settings("unused"),
            },
        );
        db.drop_now().await;
    }
}

/// Without a rig: a `queued` task row `task_id` as the puller records it, for the validator
/// `hotkey` (uid 1 at 127.0.0.1:9000, its rows added if new), through the ledger; the task's
/// row id.
pub async fn insert_task_row(pool: &Pool, hotkey: &str, task_id: &str) -> i64 {
    let validator = ValidatorRef {
        uid: 1,
        hotkey: hotkey.to_owned(),
        ip: "127.0.0.1".into(),
        port: 9000,
    };
    let info = ValidatorInfo {
        uid: validator.uid,
        hotkey: validator.hotkey.clone(),
        ip: validator.ip.clone(),
        port: validator.port,
        stake: 0.0,
        validator_permit: true,
    };
    let ids = ledger::validators::upsert_validators(pool, &[info], "static")
        .await
        .expect("validator");
    let now_ms = (splatfleet_tests::sim::rules::now_secs() * 1000.0) as i64;
    let msg = TaskMsg {
        task_id: task_id.to_owned(),
        validator,
        kind: TaskKind::Text,
        prompt: "a teapot".into(),
        validation_threshold: 0.6,
        throttle_period_secs: 30,
        pulled_at_unix_ms: now_ms,
        deadline_unix_ms: now_ms + 5 * 60 * 1000,
    };
    match ledger::insert_task(pool, ids[hotkey], &msg, &"a".repeat(64))
        .await
        .expect("task")
    {
        ledger::TaskInsert::Inserted { id } => id,
        existing => panic!("task {task_id} was recorded before: {existing:?}"),
    }
}
