//! Bad-input suite, the whole fleet: puller, worker and submitter (each role's `run`, as its
//! binary calls it) against two simulated validators, real RabbitMQ and PostgreSQL, and the
//! simulated generation service. Validator 0 first hands out an image task whose prompt is not
//! base64. The task must go through the fleet like any other and end as a recorded empty
//! submission whose reason names the broken prompt, accepted by the validator without penalty,
//! while the fleet keeps running and answers validator 1's tasks with models.

use std::{path::Path, time::Duration};

use splatfleet_common::{
    config::{Config, PullerSettings, WorkerSettings},
    protocol::sn17::ProtocolTask,
    shutdown::Shutdown,
};
use splatfleet_tests::{
    base_config, broker_settings, delete_topology,
    sim::{
        setup::{self, NetworkSettings},
        EventLog, GeneratorSettings, RuleSettings, ScoreSettings, SimGenerator,
    },
    write_config_file, FreshDatabase,
};

const BROKEN_TASK: &str = "t-not-base64";

/// The fleet's config: `base` with the roles' sections for this run, written into `dir`.
fn fleet_config(
    dir: &Path,
    base: Config,
    validators_file: &Path,
    generator_url: &str,
) -> std::path::PathBuf {
    let mut config = base;
    config.puller = PullerSettings {
        tick_ms: 50,
        cooldown_margin_ms: 300,
        backoff_initial_ms: 500,
        backoff_max_ms: 4000,
        pull_timeout_ms: 2000,
        task_deadline_secs: 60,
        lost_task_grace_secs: 60,
        ..PullerSettings::default()
    };
    config.worker = WorkerSettings {
        generation_endpoints: vec![generator_url.to_owned()],
        generate_timeout_ms: 5000,
        min_budget_ms: 15000,
        ladder: vec![[("enhance".to_owned(), "standard".to_owned())].into()],
        gate_views: 4,
        gate_render_size: 64,
        gate_pass_threshold: 0.3,
        require_gpu: false,
        ..WorkerSettings::default()
    };
    config.submitter.retry_initial_ms = 200;
    config.submitter.retry_max_ms = 800;
    config.object_store.root = dir.join("artifacts");
    splatfleet_tests::use_simulated_world(&mut config, dir, validators_file);
    let path = dir.join("fleet.toml");
    write_config_file(&path, &config);
    path
}

async fn count(client: &tokio_postgres::Client, query: &str) -> i64 {
    client
        .query_one(query, &[])
        .await
        .map(|row| row.get(0))
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_non_base64_image_task_ends_as_a_recorded_empty_submission_and_the_fleet_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let network = setup::start(
        &NetworkSettings {
            count: 2,
            base_port: 0,
            keys_dir: dir.path().to_owned(),
            rules: RuleSettings {
                time_scale: 60.0,
                ..RuleSettings::default()
            },
            // 8,000 gaussians score 1 − e⁻² ≈ 0.86: the models pass, no penalty.
            scoring: ScoreSettings {
                noise: 0.0,
                reference_gaussians: 4_000.0,
                ..ScoreSettings::default()
            },
            image_fraction: 0.0,
            seed: 10,
            stake: 5_000.0,
        },
        EventLog::in_memory(),
    )
    .await
    .expect("sim starts");
    setup::load_or_create(dir.path(), "miner").expect("miner wallet");
    network.validators[0].hand_out_first(vec![ProtocolTask::image(
        BROKEN_TASK,
        "this image is not base64 !!",
    )]);
    let list = dir.path().join("fleet-validators.toml");
    std::fs::write(&list, network.list.to_toml()).expect("validator list");
    let generator = SimGenerator::start(
        0,
        GeneratorSettings {
            gaussians: 8_000,
            ..GeneratorSettings::default()
        },
    )
    .await
    .expect("generator");

    let db = FreshDatabase::create().await;
    let broker = broker_settings();
    let base = base_config(&broker, &db.settings, "warn", 10);
    let path = fleet_config(dir.path(), base, &list, &generator.url());
    let config = Config::load_with_env(&path, std::iter::empty()).expect("fleet config");

    let shutdown = Shutdown::new();
    let puller = tokio::spawn(splatfleet_puller::run(config.clone(), shutdown.clone()));
    let worker = tokio::spawn(splatfleet_worker::run(config.clone(), shutdown.clone(), 0));
    let submitter = tokio::spawn(splatfleet_submitter::run(config.clone(), shutdown.clone()));

    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host={} port={} user={} dbname={}",
            db.settings.host, db.settings.port, db.settings.user, db.settings.dbname
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect to the fleet's database");
    tokio::spawn(connection);

    let broken_answered = format!(
        "SELECT count(*) FROM submissions s JOIN tasks t ON t.id = s.task_id
         WHERE t.task_id = '{BROKEN_TASK}' AND t.kind = 'image' AND s.empty
           AND s.state = 'completed' AND s.http_status = 200
           AND s.empty_reason LIKE 'image prompt is not valid base64%'"
    );
    let models_answered = "SELECT count(*) FROM submissions s JOIN tasks t ON t.id = s.task_id
         JOIN validators v ON v.id = t.validator_id
         WHERE NOT s.empty AND s.state = 'completed' AND s.http_status = 200";
    let started = std::time::Instant::now();
    loop {
        let broken = count(&client, &broken_answered).await;
        let models = count(&client, models_answered).await;
        if broken == 1 && models >= 1 {
            break;
        }
        for (name, role) in [
            ("puller", puller.is_finished()),
            ("worker", worker.is_finished()),
            ("submitter", submitter.is_finished()),
        ] {
            assert!(!role, "the {name} stopped");
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "broken task answered {broken}, models answered {models}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The validator got an empty result for it: no penalty, no violation.
    let submits: Vec<_> = network
        .events
        .of_kind("submit")
        .into_iter()
        .filter(|e| e["task_id"] == BROKEN_TASK)
        .collect();
    assert_eq!(submits.len(), 1, "{submits:?}");
    assert_eq!(submits[0]["payload_chars"], 0);
    assert!(network.events.of_kind("penalty").is_empty());
    assert!(network.events.of_kind("violation").is_empty());
    // The worker never asked the generation service about the broken prompt.
    let generated_for_broken: i64 = count(
        &client,
        &format!(
            "SELECT count(*) FROM attempts a JOIN tasks t ON t.id = a.task_id
             WHERE t.task_id = '{BROKEN_TASK}'"
        ),
    )
    .await;
    assert_eq!(generated_for_broken, 0);

    shutdown.trigger();
    let stop = Duration::from_secs(20);
    let puller = tokio::time::timeout(stop, puller)
        .await
        .expect("puller stops");
    assert!(matches!(puller, Ok(Ok(()))), "puller: {puller:?}");
    let worker = tokio::time::timeout(stop, worker)
        .await
        .expect("worker stops");
    assert!(matches!(worker, Ok(Ok(()))), "worker: {worker:?}");
    let submitter = tokio::time::timeout(stop, submitter)
        .await
        .expect("submitter stops");
    assert!(matches!(submitter, Ok(Ok(()))), "submitter: {submitter:?}");
    drop(client);
    delete_topology(&broker).await;
    db.drop_now().await;
}
