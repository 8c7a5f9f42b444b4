//! A small fleet around the real puller binary for the puller's tests: simulated validators
//! (scaled time), a fresh database and queue prefix, the puller's config, stand-in workers
//! that consume real `TaskMsg`s and act as the submitter would (submit to the validator,
//! record the submission and the cooldown in one transaction), and a sampler of the tasks
//! queue's ready backlog.

#![allow(dead_code)]

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU32, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use base64::Engine as _;
use serde_json::Value;
use splatfleet_common::{
    bittensor::{nonce::wall_clock_ns, AxonTarget, Dendrite, DendriteSettings},
    broker::{Broker, Disposition, QueueKind},
    config::BrokerSettings,
    db::Pool,
    discovery::ValidatorInfo,
    messages::TaskMsg,
    protocol::sn17::{sign_license, SubmitResults},
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

/// The submitter's contract, minimally: claim the task's one submission, submit, then record
/// the feedback, the task's terminal status and the validator's cooldown in one transaction.
async fn submit_like_the_submitter(dendrite: &Dendrite, pool: &Pool, task: &TaskMsg) -> bool {
    let Ok(mut client) = pool.get().await else {
        return false;
    };
    let Ok(Some(row)) = client
        .query_opt(
            "SELECT t.id FROM tasks t JOIN validators v ON v.id = t.validator_id
             WHERE v.hotkey = $1 AND t.task_id = $2",
            &[&task.validator.hotkey, &task.task_id],
        )
        .await
    else {
        return false;
    };
    let task_row: i64 = row.get(0);
    let Ok(attempt) = client
        .query_one(
            "INSERT INTO attempts (task_id, attempt_no, worker, started_at)
             VALUES ($1, 1, 'stand-in', now())
             ON CONFLICT (task_id, attempt_no) DO UPDATE SET worker = EXCLUDED.worker
             RETURNING id",
            &[&task_row],
        )
        .await
    else {
        return false;
    };
    let attempt_id: i64 = attempt.get(0);
    let claimed = client
        .query_opt(
            "INSERT INTO submissions (task_id, attempt_id, empty, state)
             VALUES ($1, $2, false, 'sending') ON CONFLICT (task_id) DO NOTHING RETURNING id",
            &[&task_row, &attempt_id],
        )
        .await;
    if !matches!(claimed, Ok(Some(_))) {
        return false;
    }
    let target = AxonTarget {
        ip: task.validator.ip.clone(),
        port: task.validator.port,
        hotkey: task.validator.hotkey.clone(),
    };
    let submit_time = wall_clock_ns();
    let signature = sign_license(dendrite.hotkey(), submit_time, &task.prompt, &target.hotkey);
    // 200 kB scores about 0.86 with the simulator's size scorer: a pass.
    let payload = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 200_000]);
    let submission = SubmitResults::new(&task.task_id, payload, submit_time, signature);
    let Ok(answer) = dendrite
        .call(&target, submission, Duration::from_secs(5))
        .await
    else {
        return false;
    };
    let answer = answer.body.synapse;
    let fidelity = answer
        .feedback
        .as_ref()
        .map_or(0.0, |f| f.task_fidelity_score) as f32;
    let cooldown = answer.cooldown_until as f64;
    let Ok(tx) = client.transaction().await else {
        return false;
    };
    let written = async {
        tx.execute(
            "UPDATE submissions SET state = 'completed', sent_at = now(), completed_at = now(),
                 http_status = 200, task_fidelity_score = $2, validation_failed = false,
                 cooldown_until = to_timestamp($3)
             WHERE task_id = $1",
            &[&task_row, &fidelity, &cooldown],
        )
        .await?;
        tx.execute(
            "UPDATE tasks SET status = 'submitted', updated_at = now() WHERE id = $1",
            &[&task_row],
        )
        .await?;
        tx.execute(
            "UPDATE validator_state SET cooldown_until = greatest(cooldown_until, to_timestamp($2))
             FROM tasks t WHERE t.id = $1 AND validator_state.validator_id = t.validator_id",
            &[&task_row, &cooldown],
        )
        .await?;
        tx.commit().await
    }
    .await;
    written.is_ok()
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
