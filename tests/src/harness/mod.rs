//! The one harness of the roles' end-to-end tests: it owns the world a test runs in and its
//! clean-up. [`World::builder`] starts simulated validators (scaled time, scored by payload
//! size), a fresh database with a migrated pool, a fresh queue prefix with its topology
//! declared, the artifact store, the miner's wallet and dendrite, and the fleet's config,
//! built as a typed `Config` (the role's own settings applied by the caller) and written to
//! a file the role binaries read. On that world a test runs a role binary
//! ([`World::spawn_role`]) or a role's `run` in this process ([`World::run_in_process`]),
//! and stands in for the other roles: pull and record tasks through the ledger
//! (`tasks.rs`), publish results as a worker would or run stand-in workers (`workers.rs`).
//! Every write to the ledger goes through `splatfleet_common::ledger`.
//!
//! A role's tests keep in their `support/mod.rs` only what that role alone needs: its config
//! settings and how it is started.

mod tasks;
mod workers;

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use splatfleet_common::{
    artifacts::ArtifactStore,
    bittensor::{Dendrite, DendriteSettings},
    broker::{queue_counts, Broker, Publisher, QueueKind},
    config::{BrokerSettings, Config},
    db::Pool,
    discovery::ValidatorInfo,
    messages::ResultMsg,
    shutdown::Shutdown,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use tasks::{record_queued_task, record_task_row, task_msg, PulledTask};
pub use workers::{sample_splat, WorkLog};

use crate::{
    process::RoleProcess,
    sim::{
        setup::{self, Network, NetworkSettings},
        EventLog, RuleSettings, ScoreMode, ScoreSettings,
    },
    FreshDatabase,
};

/// The validators' clock runs this much faster: 300 s cooldowns become 5 s, the 30 s
/// throttle half a second.
pub const TIME_SCALE: f64 = 60.0;

/// How a role's `run` ended, its error boxed so the harness serves every role.
pub type RoleOutcome = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// What to start; [`WorldBuilder::start`] starts it.
#[derive(Debug, Clone)]
pub struct WorldBuilder {
    /// Names the world's keys directory and broker connection.
    role: &'static str,
    network: NetworkSettings,
}

impl WorldBuilder {
    /// How many simulated validators (1 unless set).
    pub fn validators(mut self, count: u16) -> Self {
        self.network.count = count;
        self
    }

    /// How much faster than real time the validators' clock runs ([`TIME_SCALE`] unless set).
    pub fn time_scale(mut self, time_scale: f64) -> Self {
        self.network.rules.time_scale = time_scale;
        self
    }

    /// How the validators score a submission (by payload size, without noise, unless set:
    /// a 150 kB model passes their 0.6 threshold, an empty one scores 0).
    pub fn scoring(mut self, scoring: ScoreSettings) -> Self {
        self.network.scoring = scoring;
        self
    }

    /// The seed of the validators' tasks.
    pub fn seed(mut self, seed: u64) -> Self {
        self.network.seed = seed;
        self
    }

    /// Starts the world; `configure` applies the role's settings to the fleet's config
    /// before it is written.
    pub async fn start(self, configure: impl FnOnce(&mut Config)) -> World {
        let keys_dir =
            std::env::temp_dir().join(format!("splatfleet-{}-{}", self.role, uuid::Uuid::new_v4()));
        let network_settings = NetworkSettings {
            keys_dir: keys_dir.clone(),
            ..self.network
        };
        let network = setup::start(&network_settings, EventLog::in_memory())
            .await
            .expect("sim starts");
        let validators = network.list.validators.clone();
        let validators_file = keys_dir.join("fleet-validators.toml");
        std::fs::write(&validators_file, network.list.to_toml()).expect("write validator list");
        let db = FreshDatabase::create().await;
        let broker_settings = crate::broker_settings();
        let mut config = crate::test_config(&keys_dir, &broker_settings, &db.settings, 10);
        crate::use_simulated_world(&mut config, &keys_dir, &validators_file);
        configure(&mut config);
        let config_path = keys_dir.join("fleet.toml");
        crate::write_config_file(&config_path, &config);
        let broker = Broker::connect(&broker_settings, &format!("{}-test", self.role))
            .await
            .expect("broker");
        broker.declare_topology().await.expect("topology");
        let publisher = broker
            .publisher::<ResultMsg>()
            .await
            .expect("results publisher");
        let pool = db.migrated_pool().await;
        let store = ArtifactStore::open(&config.object_store).expect("artifact store");
        let miner = setup::load_or_create(&keys_dir, "miner").expect("miner wallet");
        let dendrite = Dendrite::new(Arc::new(miner), DendriteSettings::default());
        World {
            network,
            validators,
            validators_file,
            keys_dir,
            db,
            broker_settings,
            broker,
            publisher,
            pool,
            store,
            dendrite,
            config_path,
            shutdown: Shutdown::new(),
            in_process: None,
            stop: CancellationToken::new(),
            background: Vec::new(),
        }
    }
}

/// A started world (see the module's doc); [`World::finish`] takes it down.
#[derive(Debug)]
pub struct World {
    pub network: Network,
    /// The simulated validators, as the fleet's validator list names them.
    pub validators: Vec<ValidatorInfo>,
    /// The validator list the fleet's config points at.
    pub validators_file: PathBuf,
    /// The validators' and the miner's wallets, the config, the artifacts.
    pub keys_dir: PathBuf,
    pub db: FreshDatabase,
    pub broker_settings: BrokerSettings,
    pub broker: Broker,
    /// Publishes results as a worker does.
    pub publisher: Publisher<ResultMsg>,
    pub pool: Pool,
    pub store: ArtifactStore,
    /// The miner's dendrite, for pulling as the puller does.
    pub dendrite: Dendrite,
    pub config_path: PathBuf,
    /// Stops the role run in process.
    shutdown: Shutdown,
    in_process: Option<JoinHandle<RoleOutcome>>,
    /// Stops the background tasks (stand-in workers, samplers).
    stop: CancellationToken,
    background: Vec<JoinHandle<()>>,
}

impl World {
    /// The builder of a world for `role`'s tests: one validator, [`TIME_SCALE`], scored by
    /// payload size, a quarter of the tasks image tasks, 5000 TAO of stake each.
    pub fn builder(role: &'static str) -> WorldBuilder {
        WorldBuilder {
            role,
            network: NetworkSettings {
                count: 1,
                base_port: 0,
                keys_dir: PathBuf::new(),
                rules: RuleSettings {
                    time_scale: TIME_SCALE,
                    ..RuleSettings::default()
                },
                scoring: ScoreSettings {
                    mode: ScoreMode::PayloadSize,
                    noise: 0.0,
                    ..ScoreSettings::default()
                },
                image_fraction: 0.25,
                seed: 17,
                stake: 5_000.0,
            },
        }
    }

    /// The config the roles read.
    pub fn config(&self) -> Config {
        crate::load_config(&self.config_path)
    }

    /// Changes the config the roles read (before they start).
    pub fn edit_config(&self, edit: impl FnOnce(&mut Config)) {
        let mut config = self.config();
        edit(&mut config);
        crate::write_config_file(&self.config_path, &config);
    }

    /// Starts `binary` with the world's config and waits until it logs "ready".
    pub fn spawn_role(&self, binary: &Path) -> RoleProcess {
        let mut process = self.spawn_role_unready(binary);
        process.wait_for_log(r#""message":"ready""#, Duration::from_secs(30));
        process
    }

    /// Starts `binary` with the world's config without waiting: for a role expected to refuse
    /// to start.
    pub fn spawn_role_unready(&self, binary: &Path) -> RoleProcess {
        RoleProcess::spawn(binary, &self.config_path)
    }

    /// Runs a role's `run` in this process with the world's config, until the role stops by
    /// itself ([`World::stopped_by_itself`]) or [`World::finish`] stops it.
    pub fn run_in_process<Run, Running, E>(&mut self, run: Run)
    where
        Run: FnOnce(Config, Shutdown) -> Running,
        Running: Future<Output = Result<(), E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let running = run(self.config(), self.shutdown.clone());
        self.in_process = Some(tokio::spawn(async move { Ok(running.await?) }));
    }

    /// Waits at most `timeout` for the role run in process to stop by itself, and returns how
    /// it ended.
    pub async fn stopped_by_itself(&mut self, timeout: Duration) -> RoleOutcome {
        let running = self.in_process.take().expect("a role runs in process");
        tokio::time::timeout(timeout, running)
            .await
            .expect("the role stopped by itself")
            .expect("the role's task")
    }

    /// Simulated validators' events of `kind`.
    pub fn events(&self, kind: &str) -> Vec<Value> {
        self.network.events.of_kind(kind)
    }

    /// Simulated validators' events of `kind` about `task_id`.
    pub fn events_about(&self, kind: &str, task_id: &str) -> Vec<Value> {
        self.events(kind)
            .into_iter()
            .filter(|event| event["task_id"] == task_id)
            .collect()
    }

    /// Cooldown violations the simulated validators counted.
    pub fn violations(&self) -> Vec<Value> {
        self.events("violation")
    }

    /// The uid of the validator with `hotkey`.
    pub fn uid_of(&self, hotkey: &str) -> Option<u64> {
        self.validators
            .iter()
            .find(|v| v.hotkey == hotkey)
            .map(|v| u64::from(v.uid))
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

    /// Waits up to 10 s until the dead-letter queue holds `want` ready messages.
    pub async fn wait_dead_letters(&self, want: u32) {
        let channel = self.broker.channel().await.expect("channel");
        let dead_queue = self.broker.topology().dead_queue();
        let started = Instant::now();
        loop {
            let dead = queue_counts(&channel, &dead_queue)
                .await
                .expect("dead queue");
            if dead.ready == want {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "not dead-lettered"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Samples the tasks queue's ready count every 10 ms; returns the largest seen so far.
    pub async fn spawn_backlog_sampler(&mut self) -> Arc<AtomicU32> {
        let max = Arc::new(AtomicU32::new(0));
        let channel = self.broker.channel().await.expect("channel");
        let queue = self.broker.topology().queue(QueueKind::Tasks);
        let (max_seen, stop) = (max.clone(), self.stop.clone());
        self.background.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Ok(counts) = queue_counts(&channel, &queue).await {
                    max_seen.fetch_max(counts.ready, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
        max
    }

    /// Stops the role run in process (it must stop cleanly) and the background tasks, and
    /// removes the database, the queues and the files.
    pub async fn finish(mut self) {
        self.shutdown.trigger();
        if let Some(running) = self.in_process.take() {
            let outcome = tokio::time::timeout(Duration::from_secs(15), running)
                .await
                .expect("the role stops")
                .expect("the role's task");
            outcome.expect("the role stops cleanly");
        }
        self.stop.cancel();
        for task in self.background.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.pool.close();
        self.broker.close().await;
        crate::delete_topology(&self.broker_settings).await;
        std::fs::remove_dir_all(&self.keys_dir).ok();
        self.db.drop_now().await;
    }
}
