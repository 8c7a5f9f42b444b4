//! A small fleet around the real puller binary for the puller's tests: simulated validators
//! (scaled time), a fresh database and queue prefix, the fleet's config (built as a typed
//! `Config` and serialised), the real submitter binary (the one role that signs: it sends
//! results and the releases the puller requests), stand-in workers that consume real
//! `TaskMsg`s and publish real `ResultMsg`s with a stored model, and a sampler of the tasks
//! queue's ready backlog.

#![allow(dead_code)]

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU32, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use serde_json::Value;
use splatfleet_common::{
    artifacts::ArtifactStore,
    broker::{Broker, Disposition, QueueKind},
    config::{BrokerSettings, Config},
    db::Pool,
    discovery::ValidatorInfo,
    messages::{ArtifactRef, AttemptRecord, ResultMsg, ResultOutcome, TaskMsg},
    splat::{encode_spz, write_ply},
};
use splatfleet_tests::{
    fleet::role_binary,
    process::RoleProcess,
    sim::{
        models,
        setup::{self, Network, NetworkSettings},
        EventLog, RuleSettings, ScoreMode, ScoreSettings,
    },
    FreshDatabase,
};
use tokio_util::sync::CancellationToken;

/// 300 s cooldowns become 5 s, the 30 s throttle half a second.
pub const TIME_SCALE: f64 = 60.0;

/// Bytes of SPZ the stand-in's model has at least: the simulated validators score a payload
/// by its size (0.63 at `reference_bytes` = 100 kB), so this passes their 0.6 threshold.
const STAND_IN_SPZ_BYTES: usize = 150_000;

pub struct Fleet {
    pub network: Network,
    pub keys_dir: PathBuf,
    pub db: FreshDatabase,
    pub broker_settings: BrokerSettings,
    pub broker: Broker,
    pub pool: Pool,
    pub config_path: PathBuf,
    pub validators: Vec<ValidatorInfo>,
    stop: CancellationToken,
    background: Vec<tokio::task::JoinHandle<()>>,
}

/// What the stand-in workers saw.
#[derive(Debug, Default)]
pub struct WorkLog {
    /// Deliveries per (validator hotkey, task id).
    pub deliveries: Mutex<HashMap<(String, String), u32>>,
    /// Results published for the submitter.
    pub submitted: AtomicUsize,
    pub dropped: AtomicUsize,
}

impl Fleet {
    /// Starts `count` simulated validators and writes the fleet's config; `extra` entries
    /// join the validator list.
    pub async fn start(count: u16, extra: Vec<ValidatorInfo>) -> Self {
        let keys_dir =
            std::env::temp_dir().join(format!("splatfleet-puller-{}", uuid::Uuid::new_v4()));
        let settings = NetworkSettings {
            count,
            base_port: 0,
            keys_dir: keys_dir.clone(),
            rules: RuleSettings {
                time_scale: TIME_SCALE,
                ..RuleSettings::default()
            },
            // Scored by payload size: the stand-in's model passes, empty releases score 0.
            scoring: ScoreSettings {
                mode: ScoreMode::PayloadSize,
                reference_bytes: 100_000.0,
                noise: 0.0,
                ..ScoreSettings::default()
            },
            image_fraction: 0.25,
            seed: 17,
            stake: 5_000.0,
        };
        let network = setup::start(&settings, EventLog::in_memory())
            .await
            .expect("sim starts");
        let mut list = network.list.clone();
        list.validators.extend(extra);
        let list_path = keys_dir.join("puller-validators.toml");
        std::fs::write(&list_path, list.to_toml()).expect("write validator list");
        let db = FreshDatabase::create().await;
        let broker_settings = splatfleet_tests::broker_settings();
        let config_path = keys_dir.join("fleet.toml");
        splatfleet_tests::write_config_file(
            &config_path,
            &fleet_config(&keys_dir, &broker_settings, &db, &list_path),
        );
        let broker = Broker::connect(&broker_settings, "puller-test")
            .await
            .expect("broker");
        broker.declare_topology().await.expect("topology");
        let pool = db.migrated_pool().await;
        Self {
            network,
            keys_dir,
            db,
            broker_settings,
            broker,
            pool,
            config_path,
            validators: list.validators,
            stop: CancellationToken::new(),
            background: Vec::new(),
        }
    }

    /// The config the roles read.
    pub fn config(&self) -> Config {
        splatfleet_tests::load_config(&self.config_path)
    }

    /// Changes the config the roles read (before they start).
    pub fn edit_config(&self, edit: impl FnOnce(&mut Config)) {
        let mut config = self.config();
        edit(&mut config);
        splatfleet_tests::write_config_file(&self.config_path, &config);
    }

    pub fn spawn_puller(&self) -> RoleProcess {
        let mut process = RoleProcess::spawn(
            Path::new(env!("CARGO_BIN_EXE_splatfleet-puller")),
            &self.config_path,
        );
        process.wait_for_log(r#""message":"ready""#, Duration::from_secs(30));
        process
    }

    /// The real submitter (built by `cargo test --workspace`): it sends the stand-ins'
    /// results and the releases the puller requests.
    pub fn spawn_submitter(&self) -> RoleProcess {
        let binary = role_binary("splatfleet-submitter").unwrap_or_else(|err| panic!("{err}"));
        let mut process = RoleProcess::spawn(&binary, &self.config_path);
        process.wait_for_log(r#""message":"ready""#, Duration::from_secs(30));
        process
    }

    /// Starts `count` stand-in workers: each takes one task at a time, "generates" for
    /// `generate`, then publishes a passing result for the submitter, except every
    /// `drop_every`-th task, which it acknowledges and forgets (a task the fleet lost).
    pub async fn spawn_workers(
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
        let store = ArtifactStore::open(&self.config().object_store).expect("artifact store");
        store
            .put("ply", "ply", ply.into())
            .await
            .expect("store the stand-in model")
    }

    /// Samples the tasks queue's ready count every 10 ms; returns the largest seen so far.
    pub async fn spawn_backlog_sampler(&mut self) -> Arc<AtomicU32> {
        let max = Arc::new(AtomicU32::new(0));
        let channel = self.broker.channel().await.expect("channel");
        let queue = self.broker.topology().queue(QueueKind::Tasks);
        let (max_seen, stop) = (max.clone(), self.stop.clone());
        self.background.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Ok(signal) = splatfleet_puller::capacity::probe(&channel, &queue).await {
                    max_seen.fetch_max(signal.ready, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
        max
    }

    pub fn events(&self, kind: &str) -> Vec<Value> {
        self.network.events.of_kind(kind)
    }

    pub fn uid_of(&self, hotkey: &str) -> Option<u64> {
        self.validators
            .iter()
            .find(|v| v.hotkey == hotkey)
            .map(|v| u64::from(v.uid))
    }

    pub async fn finish(mut self) {
        self.stop.cancel();
        for task in self.background.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.pool.close();
        self.broker.close().await;
        splatfleet_tests::delete_topology(&self.broker_settings).await;
        std::fs::remove_dir_all(&self.keys_dir).ok();
        self.db.drop_now().await;
    }
}

/// The stand-in worker's answer to `task`: the stored model, passing its gate.
fn stand_in_result(task: &TaskMsg, model: &ArtifactRef) -> ResultMsg {
    let now_ms = (splatfleet_tests::sim::rules::now_secs() * 1000.0) as i64;
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

/// The fleet's config for the puller's tests: fast ticks and backoffs, a 3 s task deadline
/// with 1 s of grace, the simulated validators' scaled 5 s cooldown assumed after a release
/// they no longer held, the miner wallet the simulator wrote, and its validator list.
fn fleet_config(
    dir: &Path,
    broker: &BrokerSettings,
    db: &FreshDatabase,
    validators_file: &Path,
) -> Config {
    let mut config = splatfleet_tests::test_config(dir, broker, &db.settings, 10);
    config.log.level = "info,splatfleet_puller=debug".into();
    let puller = &mut config.puller;
    puller.tick_ms = 50;
    puller.cooldown_margin_ms = 300;
    puller.backoff_initial_ms = 500;
    puller.backoff_max_ms = 4000;
    puller.pull_timeout_ms = 2000;
    puller.task_deadline_secs = 3;
    puller.lost_task_grace_secs = 1;
    let submitter = &mut config.submitter;
    submitter.release_poll_ms = 100;
    submitter.assumed_cooldown_secs = 5;
    submitter.retry_initial_ms = 200;
    submitter.retry_max_ms = 1000;
    submitter.submit_timeout_secs = 5;
    splatfleet_tests::use_simulated_world(&mut config, dir, validators_file);
    config
}

/// A validator entry with a fresh hotkey at `port` on 127.0.0.1.
pub fn stranger(uid: u16, port: u16) -> ValidatorInfo {
    let (hotkey, _) = splatfleet_common::bittensor::Hotkey::generate();
    ValidatorInfo {
        uid,
        hotkey: hotkey.ss58().to_owned(),
        ip: "127.0.0.1".into(),
        port,
        stake: 5_000.0,
        validator_permit: true,
    }
}

/// Cooldown violations the simulated validators counted.
pub fn violations(fleet: &Fleet) -> Vec<Value> {
    fleet.events("violation")
}
