//! A small fleet around the real puller binary for the puller's tests: simulated validators
//! (scaled time), a fresh database and queue prefix, the puller's config, stand-in workers
//! that consume real `TaskMsg`s and act as the submitter would (submit to the validator,
//! record the submission and the cooldown in one transaction), and a sampler of the tasks
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
    bittensor::{AxonTarget, Dendrite, DendriteSettings},
    broker::{Broker, Disposition, QueueKind},
    config::BrokerSettings,
    db::Pool,
    discovery::ValidatorInfo,
    ledger,
    messages::{ArtifactRef, AttemptRecord, ResultMsg, ResultOutcome, TaskMsg},
    protocol::sn17::SubmitResults,
};
use splatfleet_tests::{
    process::RoleProcess,
    sim::{
        setup::{self, Network, NetworkSettings},
        EventLog, RuleSettings, ScoreMode, ScoreSettings,
    },
    FreshDatabase,
};
use tokio_util::sync::CancellationToken;

/// 300 s cooldowns become 5 s, the 30 s throttle half a second.
pub const TIME_SCALE: f64 = 60.0;

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
    pub submitted: AtomicUsize,
    pub dropped: AtomicUsize,
}

impl Fleet {
    /// Starts `count` simulated validators and writes the puller's config; `extra` entries
    /// join the validator list and `puller_keys` are appended to `[puller]`.
    pub async fn start(count: u16, extra: Vec<ValidatorInfo>, puller_keys: &str) -> Self {
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
            // The puller only ever sends empty releases; keep the protocol-level scorer.
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
        let config_path =
            write_puller_config(&keys_dir, &broker_settings, &db, &list_path, puller_keys);
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

    pub fn spawn_puller(&self) -> RoleProcess {
        let mut process = RoleProcess::spawn(
            Path::new(env!("CARGO_BIN_EXE_splatfleet-puller")),
            &self.config_path,
        );
        process.wait_for_log(r#""message":"ready""#, Duration::from_secs(30));
        process
    }

    /// Starts `count` stand-in workers: each takes one task at a time, "generates" for
    /// `generate`, then submits a passing result, except every `drop_every`-th task, which
    /// it acknowledges and forgets (a task the fleet lost).
    pub async fn spawn_workers(
        &mut self,
        count: usize,
        generate: Duration,
        drop_every: Option<u32>,
    ) -> Arc<WorkLog> {
        let log = Arc::new(WorkLog::default());
        let miner = setup::load_or_create(&self.keys_dir, "miner").expect("miner wallet");
        let dendrite = Dendrite::new(Arc::new(miner), DendriteSettings::default());
        let seen = Arc::new(AtomicU32::new(0));
        for n in 0..count {
            let consumer = self
                .broker
                .consumer::<TaskMsg>(1, &format!("stand-in-worker-{n}"))
                .await
                .expect("consumer");
            let (log, dendrite, pool, seen) = (
                log.clone(),
                dendrite.clone(),
                self.pool.clone(),
                seen.clone(),
            );
            let stop = self.stop.clone();
            self.background.push(tokio::spawn(async move {
                let _ = consumer
                    .run(stop, move |incoming| {
                        let (log, dendrite, pool, seen) =
                            (log.clone(), dendrite.clone(), pool.clone(), seen.clone());
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
                            } else if submit_like_the_submitter(&dendrite, &pool, &task).await {
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

/// The submitter's contract, minimally, through the ledger: claim the task's one submission,
/// submit, then finish it (attempt, feedback, the task's terminal status and the validator's
/// cooldown in one statement).
async fn submit_like_the_submitter(dendrite: &Dendrite, pool: &Pool, task: &TaskMsg) -> bool {
    let now_ms = (splatfleet_tests::sim::rules::now_secs() * 1000.0) as i64;
    let result = ResultMsg {
        task_id: task.task_id.clone(),
        validator: task.validator.clone(),
        kind: task.kind,
        prompt: task.prompt.clone(),
        outcome: ResultOutcome::Ready {
            ply: stand_in_model(),
            spz: None,
            preview: None,
            local_score: 0.8,
            chosen_attempt: 0,
        },
        attempts: vec![AttemptRecord {
            local_score: Some(0.8),
            gate_passed: Some(true),
            ply: Some(stand_in_model()),
            ..AttemptRecord::started(BTreeMap::new(), now_ms)
        }],
        worker: STAND_IN.into(),
        finished_at_unix_ms: now_ms,
    };
    let request = ledger::ClaimRequest {
        claimed_by: Some(STAND_IN),
        lease_secs: 60.0,
        empty_reason: None,
        worker: Some(STAND_IN),
        local_score: Some(0.8),
        result_finished_unix_ms: Some(now_ms),
    };
    let claimed = ledger::claim_first(pool, &task.validator.hotkey, &task.task_id, &request).await;
    let Ok(ledger::FirstClaim::Claimed(row)) = claimed else {
        return false;
    };
    let target = AxonTarget {
        ip: task.validator.ip.clone(),
        port: task.validator.port,
        hotkey: task.validator.hotkey.clone(),
    };
    // 200 kB scores about 0.86 with the simulator's size scorer: a pass.
    let payload = vec![7u8; 200_000];
    let submission = SubmitResults::signed(
        dendrite.hotkey(),
        &target.hotkey,
        &task.task_id,
        &task.prompt,
        Some(&payload),
    );
    let Ok(answer) = dendrite
        .call(&target, submission, Duration::from_secs(5))
        .await
    else {
        return false;
    };
    let answer = answer.body.synapse;
    let finish = ledger::Finish::Answered {
        feedback: answer.feedback,
        cooldown_until: answer.cooldown_until,
        latency_ms: 0,
    };
    matches!(
        ledger::finish(pool, row.id, STAND_IN, &result, &finish).await,
        Ok(Some(_))
    )
}

/// The stand-in submitter's instance and worker name.
const STAND_IN: &str = "stand-in";

/// What the stand-in "generated" (never read: the stand-in submits fixed bytes).
fn stand_in_model() -> ArtifactRef {
    ArtifactRef {
        key: "ply/stand-in.ply".into(),
        sha256: "b".repeat(64),
        bytes: 200_000,
    }
}

fn write_puller_config(
    dir: &Path,
    broker: &BrokerSettings,
    db: &FreshDatabase,
    validators_file: &Path,
    puller_keys: &str,
) -> PathBuf {
    let base = splatfleet_tests::base_config_toml(
        broker,
        &db.settings,
        "info,splatfleet_puller=debug",
        10,
    );
    let text = format!(
        r#"{base}
[puller]
metrics_addr = "{metrics}"
tick_ms = 50
cooldown_margin_ms = 300
backoff_initial_ms = 500
backoff_max_ms = 4000
pull_timeout_ms = 2000
task_deadline_secs = 3
lost_task_grace_secs = 1
assumed_cooldown_secs = 5
{puller_keys}

[wallet]
path = {wallet:?}
name = "miner"
hotkey = "default"

[discovery]
source = "static"
validators_file = {list:?}
min_stake = 1000.0
"#,
        metrics = splatfleet_tests::free_addr(),
        wallet = dir.display().to_string(),
        list = validators_file.display().to_string(),
    );
    let path = dir.join("puller.toml");
    std::fs::write(&path, text).expect("write puller config");
    path
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
