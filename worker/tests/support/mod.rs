//! What the worker's integration tests share: a worker run in-process against real RabbitMQ
//! and the simulated generation service (CPU renderer, a 4-view 64×64 gate), tasks to feed
//! it, and a way to read what it answered.

#![allow(dead_code)] // Each test file uses its own subset.

use std::time::Duration;

use splatfleet_common::{
    broker::{queue_counts, Broker, Disposition},
    config::Config,
    messages::{ResultMsg, ResultOutcome, TaskKind, TaskMsg, ValidatorRef},
    shutdown::Shutdown,
};
use splatfleet_tests::{
    broker_settings, delete_topology,
    sim::{Fault, GeneratorSettings, SimGenerator},
};
use tokio::sync::mpsc;

pub const WAIT: Duration = Duration::from_secs(20);

pub struct Harness {
    pub config: Config,
    pub broker: Broker,
    pub shutdown: Shutdown,
    pub worker: tokio::task::JoinHandle<Result<(), splatfleet_worker::WorkerError>>,
    pub generator: SimGenerator,
    _artifacts: tempfile::TempDir,
}

impl Harness {
    /// A worker with the test gate and `generator`.
    pub async fn start(generator: GeneratorSettings) -> Self {
        Self::start_with(generator, |_| {}).await
    }

    /// As [`Harness::start`], with `adjust` applied to the config before the worker starts.
    pub async fn start_with(
        generator: GeneratorSettings,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let generator = SimGenerator::start(0, generator).await.expect("generator");
        let artifacts = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            broker: broker_settings(),
            ..Config::default()
        };
        config.object_store.root = artifacts.path().to_owned();
        let worker = &mut config.worker;
        worker.generation_endpoints = vec![generator.url()];
        worker.generate_timeout_ms = 5_000;
        worker.min_budget_ms = 15_000;
        worker.gate_views = 4;
        worker.gate_render_size = 64;
        worker.gate_pass_threshold = 0.3;
        // The CPU reference renderer gates where there is no GPU.
        worker.require_gpu = false;
        adjust(&mut config);
        let broker = Broker::connect(&config.broker, "worker-test")
            .await
            .expect("connect");
        broker.declare_topology().await.expect("topology");
        let shutdown = Shutdown::new();
        let worker = tokio::spawn(splatfleet_worker::run(config.clone(), shutdown.clone(), 0));
        Self {
            config,
            broker,
            shutdown,
            worker,
            generator,
            _artifacts: artifacts,
        }
    }

    pub async fn send(&self, task: &TaskMsg) {
        let publisher = self.broker.publisher::<TaskMsg>().await.expect("publisher");
        publisher.publish(task).await.expect("publish task");
    }

    pub async fn next_result(&self) -> ResultMsg {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let consumer = self
            .broker
            .consumer::<ResultMsg>(1, "results-test")
            .await
            .expect("consumer");
        let stop = Shutdown::new();
        let consuming = tokio::spawn(consumer.run(stop.token().clone(), move |incoming| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(incoming.body);
                Disposition::Ack
            }
        }));
        let result = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("a result in time")
            .expect("result channel open");
        stop.trigger();
        let _ = consuming.await;
        result
    }

    /// Stops the worker (unacked deliveries return to the queue) and checks it stopped cleanly.
    pub async fn stop(self) -> (Broker, Config) {
        self.shutdown.trigger();
        let outcome = tokio::time::timeout(WAIT, self.worker)
            .await
            .expect("worker stops in time")
            .expect("worker task");
        assert!(outcome.is_ok(), "worker failed: {outcome:?}");
        (self.broker, self.config)
    }

    /// Sends `task`, takes its result, then stops the worker and deletes the test topology.
    pub async fn run_task(self, task: &TaskMsg) -> (ResultMsg, Config) {
        self.send(task).await;
        let result = self.next_result().await;
        let (broker, config) = self.stop().await;
        broker.close().await;
        delete_topology(&config.broker).await;
        (result, config)
    }
}

/// The chosen attempt and local score of a `Ready` result; panics, naming the outcome and
/// the attempts, on any other.
pub fn ready(result: &ResultMsg) -> (u16, f32) {
    match &result.outcome {
        ResultOutcome::Ready {
            chosen_attempt,
            local_score,
            ..
        } => (*chosen_attempt, *local_score),
        other => panic!("expected Ready, got {other:?} after {:?}", result.attempts),
    }
}

pub fn task(id: &str, kind: TaskKind, prompt: &str) -> TaskMsg {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    TaskMsg {
        task_id: id.into(),
        validator: ValidatorRef {
            uid: 3,
            hotkey: "5FakeHotkey".into(),
            ip: "127.0.0.1".into(),
            port: 9100,
        },
        kind,
        prompt: prompt.into(),
        validation_threshold: 0.6,
        throttle_period_secs: 0,
        pulled_at_unix_ms: now,
        deadline_unix_ms: now + 60_000,
    }
}

pub fn small_models(fault: Fault) -> GeneratorSettings {
    GeneratorSettings {
        gaussians: 8_000,
        fault,
        ..GeneratorSettings::default()
    }
}

/// Passive-declares `queue` and returns (ready messages, consumers).
pub async fn queue_state(broker: &Broker, queue: &str) -> (u32, u32) {
    let channel = broker.channel().await.expect("channel");
    let counts = queue_counts(&channel, queue).await.expect("queue exists");
    (counts.ready, counts.consumers)
}
