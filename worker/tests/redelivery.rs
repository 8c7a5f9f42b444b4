//! A task survives the worker that holds it: a worker process killed with SIGKILL mid-task
//! leaves the task to another worker, which completes it with no duplicate artifacts (and
//! whose `/metrics` shows the work); a task delivered twice is stored once under the same
//! keys; a task still running at the drain deadline is nacked back to the queue.

mod support;

use std::{path::Path, time::Duration};

use splatfleet_common::{
    artifacts::sha256_hex,
    broker::{Broker, QueueKind},
    config::WorkerSettings,
    messages::{ResultOutcome, TaskKind},
    role::Role,
};
use splatfleet_tests::{
    base_config, broker_settings, database_settings, delete_topology, free_addr, load_config,
    process::{scrape_metrics, RoleProcess},
    sim::{Fault, SimGenerator},
    unique_name, write_config_file,
};
use support::{queue_state, small_models, task, Harness, WAIT};

/// Every file under `root`, recursively.
fn files_under(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

// Multi-threaded: the test thread blocks reading the workers' logs while the in-process
// generator must keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_task_leaves_it_to_another_with_no_duplicate_artifacts() {
    // Every answer takes 1.5 s, so the first worker is surely inside the task when killed.
    let mut generator = small_models(Fault::None);
    generator.latency_median_ms = 1_500;
    generator.latency_sigma = 0.0;
    let generator = SimGenerator::start(0, generator).await.expect("generator");
    let dir = tempfile::tempdir().expect("temp dir");
    let broker_settings = broker_settings();
    // The worker needs no PostgreSQL; the section is only there to be complete.
    let database = database_settings(&unique_name());
    let metrics_addr = free_addr();
    let config_path = dir.path().join("splatfleet.toml");
    let artifacts = dir.path().join("artifacts");
    let mut config = base_config(&broker_settings, &database, "info", 10);
    config.worker = WorkerSettings {
        metrics_addr: Some(metrics_addr),
        generation_endpoints: vec![generator.url()],
        gate_views: 4,
        gate_render_size: 64,
        gate_pass_threshold: 0.3,
        require_gpu: false,
        ..WorkerSettings::default()
    };
    config.object_store.root = artifacts.clone();
    write_config_file(&config_path, &config);
    let config = load_config(&config_path);
    let binary = Path::new(env!("CARGO_BIN_EXE_splatfleet-worker"));

    let mut first = RoleProcess::spawn(binary, &config_path);
    first.wait_for_log(r#""message":"ready""#, WAIT);
    let broker = Broker::connect(&config.broker, "redelivery-test")
        .await
        .expect("connect");
    let publisher = broker
        .publisher::<splatfleet_common::messages::TaskMsg>()
        .await
        .expect("publisher");
    publisher
        .publish(&task("t-killed", TaskKind::Text, "a brass lantern"))
        .await
        .expect("publish");
    let deadline = tokio::time::Instant::now() + WAIT;
    while generator.requests() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first worker never asked the generator"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill_hard();
    assert!(
        files_under(&artifacts).is_empty(),
        "nothing stored before the kill"
    );

    let mut second = RoleProcess::spawn(binary, &config_path);
    second.wait_for_log(r#""message":"ready""#, WAIT);
    second.wait_for_log(r#""message":"result published""#, WAIT);
    let results = broker.topology().queue(QueueKind::Results);
    let channel = broker.channel().await.expect("channel");
    let got = channel
        .basic_get(results.as_str().into(), Default::default())
        .await
        .expect("get")
        .expect("one result");
    let result: splatfleet_common::messages::ResultMsg =
        splatfleet_common::broker::decode(&got.delivery.data).expect("result decodes");
    assert_eq!(result.task_id, "t-killed");
    let ResultOutcome::Ready {
        ply, spz, preview, ..
    } = &result.outcome
    else {
        panic!("expected Ready, got {:?}", result.outcome);
    };
    assert_eq!(
        generator.requests(),
        2,
        "one generation by the killed worker, one by its successor"
    );
    let stored = files_under(&artifacts);
    assert_eq!(
        stored.len(),
        3,
        "PLY, SPZ and preview, once each: {stored:?}"
    );
    for artifact in [Some(ply), spz.as_ref(), preview.as_ref()] {
        let artifact = artifact.expect("artifact stored");
        let bytes = std::fs::read(artifacts.join(&artifact.key)).expect("artifact file");
        assert_eq!(sha256_hex(&bytes), artifact.sha256, "{}", artifact.key);
    }

    // The successor's metrics show the work it did.
    let metrics = scrape_metrics(
        config
            .worker
            .metrics_addr
            .unwrap_or_else(|| Role::Worker.metrics_addr(&config)),
    );
    for needle in [
        "splatfleet_worker_attempts_per_task_count 1",
        "splatfleet_worker_stage_seconds_bucket{stage=\"generate\"",
        "splatfleet_worker_stage_seconds_bucket{stage=\"gate\"",
        "splatfleet_worker_stage_seconds_bucket{stage=\"store\"",
        "splatfleet_worker_gate_decisions_total{reason=\"passed\"} 1",
        "splatfleet_worker_results_total{outcome=\"ready\"} 1",
        "splatfleet_worker_gpu_backend{backend=\"cpu\"} 1",
        "splatfleet_worker_busy_slots 0",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in:\n{metrics}");
    }
    second.terminate();
    let (status, _) = second.wait_exit(WAIT);
    assert!(status.success(), "{}", second.log.join("\n"));
    broker.close().await;
    delete_topology(&config.broker).await;
}

#[tokio::test]
async fn a_task_delivered_twice_is_stored_once_under_the_same_keys() {
    let harness = Harness::start(small_models(Fault::None)).await;
    let task = task("t-twice", TaskKind::Text, "a green kettle");
    harness.send(&task).await;
    let first = harness.next_result().await;
    harness.send(&task).await;
    let second = harness.next_result().await;
    let keys = |outcome: &ResultOutcome| match outcome {
        ResultOutcome::Ready {
            ply, spz, preview, ..
        } => (ply.clone(), spz.clone(), preview.clone()),
        other => panic!("expected Ready, got {other:?}"),
    };
    assert_eq!(keys(&first.outcome), keys(&second.outcome));
    let stored = files_under(&harness.config.object_store.root);
    assert_eq!(stored.len(), 3, "{stored:?}");
    let (broker, config) = harness.stop().await;
    broker.close().await;
    delete_topology(&config.broker).await;
}

#[tokio::test]
async fn a_task_still_running_at_the_drain_deadline_is_nacked_for_redelivery() {
    let harness = Harness::start_with(small_models(Fault::Hang), |config| {
        config.shutdown.drain_timeout_secs = 1;
        config.worker.generate_timeout_ms = 60_000;
        config.worker.min_budget_ms = 60_000;
    })
    .await;
    harness
        .send(&task("t-drain", TaskKind::Text, "a stone bench"))
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while harness.generator.requests() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker never asked the generator"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopping = tokio::time::Instant::now();
    let topology = harness.broker.topology().clone();
    let (broker, config) = harness.stop().await;
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "stop took {took:?} with a 1 s drain"
    );
    // The nack is settled before the worker returns, but a quorum queue may count the
    // returned message a moment later.
    let tasks = topology.queue(QueueKind::Tasks);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut ready = queue_state(&broker, &tasks).await.0;
    while ready == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        ready = queue_state(&broker, &tasks).await.0;
    }
    assert_eq!(ready, 1, "the unfinished task is back in the queue");
    let (results, _) = queue_state(&broker, &topology.queue(QueueKind::Results)).await;
    assert_eq!(results, 0, "nothing was answered for it");
    broker.close().await;
    delete_topology(&config.broker).await;
}
