//! Test support for talking to the real RabbitMQ and PostgreSQL: a unique queue prefix and a
//! fresh database per test (so tests run in parallel), config files that point at them, and
//! role processes started and stopped the way an operator would.
//!
//! Where the services live comes from `SPLATFLEET_TEST_AMQP_URL` and
//! `SPLATFLEET_TEST_PG_{HOST,PORT,USER,PASSWORD}`, defaulting to the ones `ops/dev-up.sh`
//! starts on 127.0.0.1.

pub mod corpus;
pub mod fault_proxy;
pub mod fault_suite;
pub mod fleet;
pub mod harness;
pub mod private_broker;
pub mod private_postgres;
pub mod process;
pub mod sim;

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
};

use rand::Rng;
use splatfleet_common::config::{
    AmqpUrl, BrokerSettings, Config, DatabaseSettings, LogFormat, LogSettings,
};

pub fn amqp_url() -> String {
    std::env::var("SPLATFLEET_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.into())
}

/// Database settings for the server under test, naming `dbname`.
pub fn database_settings(dbname: &str) -> DatabaseSettings {
    DatabaseSettings {
        host: env_or("SPLATFLEET_TEST_PG_HOST", "127.0.0.1"),
        port: env_or("SPLATFLEET_TEST_PG_PORT", "5432")
            .parse()
            .unwrap_or(5432),
        user: env_or("SPLATFLEET_TEST_PG_USER", "postgres"),
        password: std::env::var("SPLATFLEET_TEST_PG_PASSWORD")
            .ok()
            .map(Into::into),
        dbname: dbname.into(),
        ..DatabaseSettings::default()
    }
}

/// A name no other test (or test run) uses: `sft_<random>`.
pub fn unique_name() -> String {
    let n: u64 = rand::rng().random();
    format!("sft_{n:016x}")
}

/// Broker settings with a unique prefix, so this test's queues are its own.
pub fn broker_settings() -> BrokerSettings {
    BrokerSettings {
        url: AmqpUrl::new(&amqp_url()),
        prefix: unique_name(),
        delivery_limit: 3,
        connect_timeout_secs: 10,
        reconnect_max_delay_secs: 1,
        ..BrokerSettings::default()
    }
}

/// A database created for one test and dropped by [`FreshDatabase::drop_now`].
#[derive(Debug)]
pub struct FreshDatabase {
    pub settings: DatabaseSettings,
}

/// A connection to the server's `postgres` database, for what a test does to the server itself
/// (creating and dropping databases, terminating backends).
pub async fn admin_client() -> tokio_postgres::Client {
    let settings = database_settings("postgres");
    let mut pg = tokio_postgres::Config::new();
    pg.host(&settings.host)
        .port(settings.port)
        .user(&settings.user)
        .dbname("postgres");
    if let Ok(password) = std::env::var("SPLATFLEET_TEST_PG_PASSWORD") {
        pg.password(password);
    }
    let (client, connection) = pg
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|err| {
            panic!("PostgreSQL for tests is not reachable (run ops/dev-up.sh): {err}")
        });
    tokio::spawn(connection);
    client
}

impl FreshDatabase {
    pub async fn create() -> Self {
        let name = unique_name();
        admin_client()
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|err| panic!("creating test database {name}: {err}"));
        Self {
            settings: database_settings(&name),
        }
    }

    /// A pool on this database with every migration applied.
    pub async fn migrated_pool(&self) -> splatfleet_common::db::Pool {
        use splatfleet_common::db;
        let pool = db::connect(&self.settings).await.expect("database");
        db::migrate(&pool, db::embedded_migrations())
            .await
            .expect("migrations");
        pool
    }

    /// Drops the database, closing whatever is still connected to it.
    pub async fn drop_now(self) {
        let name = &self.settings.dbname;
        let _ = admin_client()
            .await
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
    }
}

/// Deletes every queue and exchange under `prefix`.
pub async fn delete_topology(settings: &BrokerSettings) {
    let Ok(connection) =
        lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await
    else {
        return;
    };
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    let topology =
        splatfleet_common::broker::Topology::new(&settings.prefix, settings.delivery_limit);
    for queue in [
        topology.queue(splatfleet_common::broker::QueueKind::Tasks),
        topology.queue(splatfleet_common::broker::QueueKind::Results),
        topology.dead_queue(),
    ] {
        let _ = channel.queue_delete(queue.into(), Default::default()).await;
    }
    for exchange in [topology.exchange(), topology.dead_letter_exchange()] {
        let _ = channel
            .exchange_delete(exchange.into(), Default::default())
            .await;
    }
    let _ = connection.close(200, "test done".into()).await;
}

/// A loopback address with a port nobody listens on right now.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("ephemeral port address")
}

/// A test config for these broker and database settings: JSON logs at `log_level`, the
/// broker's URL, prefix and delivery limit with a 10 s connect timeout and 1 s reconnect
/// delay, the database's address, user, password and name, and `drain_timeout_secs`; every
/// other key keeps its default. Callers set their role sections on the value.
pub fn base_config(
    broker: &BrokerSettings,
    database: &DatabaseSettings,
    log_level: &str,
    drain_timeout_secs: u64,
) -> Config {
    let mut config = Config {
        log: LogSettings {
            level: log_level.into(),
            format: LogFormat::Json,
        },
        broker: BrokerSettings {
            url: broker.url.clone(),
            prefix: broker.prefix.clone(),
            delivery_limit: broker.delivery_limit,
            connect_timeout_secs: 10,
            reconnect_max_delay_secs: 1,
            ..BrokerSettings::default()
        },
        database: DatabaseSettings {
            host: database.host.clone(),
            port: database.port,
            user: database.user.clone(),
            password: database.password.clone(),
            dbname: database.dbname.clone(),
            ..DatabaseSettings::default()
        },
        ..Config::default()
    };
    config.shutdown.drain_timeout_secs = drain_timeout_secs;
    // Tests run where there may be no GPU: the CPU reference renderer gates.
    config.worker.require_gpu = false;
    config
}

/// `config` as the TOML of a config file (secrets in clear: the roles read it).
pub fn config_toml(config: &Config) -> String {
    config
        .to_toml_exposing_secrets()
        .expect("a Config serialises to TOML")
}

/// Writes `config` to `path` as a config file.
pub fn write_config_file(path: &Path, config: &Config) {
    std::fs::write(path, config_toml(config)).expect("write test config");
}

/// Points `config` at the simulated world `splatfleet-sim` wrote under `keys_dir`: its miner
/// wallet (`miner`/`default`) and its static validator list, at the simulator's stake.
pub fn use_simulated_world(config: &mut Config, keys_dir: &Path, validators_file: &Path) {
    config.wallet.path = keys_dir.to_path_buf();
    config.wallet.name = "miner".into();
    config.wallet.hotkey = "default".into();
    config.discovery.source = splatfleet_common::config::DiscoverySource::Static;
    config.discovery.validators_file = Some(validators_file.to_path_buf());
    config.discovery.min_stake = 1000.0;
}

/// The config [`write_config`] writes: [`base_config`] with each role's metrics on a free
/// port, the artifact store under `dir/artifacts` and a miner wallet of its own under
/// `dir/wallets` (the puller and the submitter load the hotkey at start).
pub fn test_config(
    dir: &Path,
    broker: &BrokerSettings,
    database: &DatabaseSettings,
    drain_timeout_secs: u64,
) -> Config {
    let mut config = base_config(broker, database, "info", drain_timeout_secs);
    let wallets = dir.join("wallets");
    sim::setup::load_or_create(&wallets, "miner")
        .unwrap_or_else(|err| panic!("test miner wallet: {err}"));
    config.wallet.path = wallets;
    config.wallet.name = "miner".into();
    config.wallet.hotkey = "default".into();
    config.puller.metrics_addr = Some(free_addr());
    config.worker.metrics_addr = Some(free_addr());
    config.submitter.metrics_addr = Some(free_addr());
    config.object_store.root = dir.join("artifacts");
    config
}

/// Writes [`test_config`] into `dir` and returns its path.
pub fn write_config(
    dir: &Path,
    broker: &BrokerSettings,
    database: &DatabaseSettings,
    drain_timeout_secs: u64,
) -> PathBuf {
    let path = dir.join("splatfleet.toml");
    write_config_file(
        &path,
        &test_config(dir, broker, database, drain_timeout_secs),
    );
    path
}

/// Loads a config file written by [`write_config`].
pub fn load_config(path: &Path) -> Config {
    Config::load_with_env(path, std::iter::empty()).expect("test config loads")
}

/// The heartbeat (seconds) RabbitMQ negotiated for the connection named `connection_name`.
pub fn broker_connection_heartbeat(connection_name: &str) -> Option<u32> {
    let list = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "--no-table-headers",
            "--quiet",
            "timeout",
            "client_properties",
        ])
        .output()
        .expect("rabbitmqctl runs (tests need it on PATH, as root)");
    let text = String::from_utf8_lossy(&list.stdout).into_owned();
    let line = text.lines().find(|line| line.contains(connection_name))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Closes this broker connection (found by its client-provided name) from the server side,
/// as a broker failure would, without touching other tests' connections.
pub fn close_broker_connection(connection_name: &str) -> usize {
    let list = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "--no-table-headers",
            "--quiet",
            "pid",
            "client_properties",
        ])
        .output()
        .expect("rabbitmqctl runs (tests need it on PATH, as root)");
    let text = String::from_utf8_lossy(&list.stdout);
    let mut closed = 0;
    for line in text.lines().filter(|line| line.contains(connection_name)) {
        let Some(pid) = line.split_whitespace().next() else {
            continue;
        };
        let status = std::process::Command::new("rabbitmqctl")
            .args(["close_connection", pid, "test closes the connection"])
            .status()
            .expect("rabbitmqctl close_connection runs");
        if status.success() {
            closed += 1;
        }
    }
    closed
}

/// Starts `binary` against a fresh database and queue prefix, waits for "ready", checks
/// `/metrics`, sends SIGTERM and asserts a clean exit (status 0) within the drain timeout.
/// Returns the fresh database (dropped afterwards by the caller) so role-specific checks
/// can look at what the process left there.
pub async fn check_role_stops_on_sigterm(
    binary: &Path,
    role: splatfleet_common::role::Role,
) -> FreshDatabase {
    use std::time::Duration;
    const DRAIN_SECS: u64 = 10;
    let broker = broker_settings();
    let db = FreshDatabase::create().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = write_config(dir.path(), &broker, &db.settings, DRAIN_SECS);
    let config = load_config(&config_path);
    let mut process = process::RoleProcess::spawn(binary, &config_path);
    process.wait_for_log(r#""message":"ready""#, Duration::from_secs(60));
    let metrics = process::scrape_metrics(role.metrics_addr(&config));
    assert!(
        metrics.contains(&format!("splatfleet_build_info{{role=\"{}\"", role.name())),
        "metrics lack build info: {metrics}"
    );
    process.terminate();
    let (status, took) = process.wait_exit(Duration::from_secs(DRAIN_SECS + 5));
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        process.log.join("\n")
    );
    assert!(
        took < Duration::from_secs(DRAIN_SECS),
        "took {took:?} to stop"
    );
    assert!(
        process
            .log
            .iter()
            .any(|line| line.contains("stopped cleanly")),
        "log:\n{}",
        process.log.join("\n")
    );
    delete_topology(&broker).await;
    db
}

/// Bad-input suite: starts `binary` with each config that has a wrong type, once from the file
/// and once from a `SPLATFLEET__…` override, and asserts it stops at once with exit status 78
/// and a message on stderr naming the key, never a panic. Each case is (TOML, environment
/// override, the key the message must name).
pub fn check_role_refuses_wrong_types(binary: &Path, cases: &[(&str, (&str, &str), &str)]) {
    use std::{process::Command, time::Duration};
    let dir = tempfile::tempdir().expect("temp dir");
    for (index, (toml, (env_key, env_value), key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{index}.toml"));
        std::fs::write(&path, toml).expect("write config");
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "").expect("write config");
        for (config, env) in [(&path, None), (&good, Some((*env_key, *env_value)))] {
            let mut command = Command::new(binary);
            command
                .arg("--config")
                .arg(config)
                .env_remove("SPLATFLEET_CONFIG")
                .env_remove("RUST_LOG");
            if let Some((name, value)) = env {
                command.env(name, value);
            }
            let case = format!("{} with {toml:?} / {env:?}", binary.display());
            let started = std::time::Instant::now();
            let mut child = command
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run the role binary");
            // A role that accepted the config would run until stopped: give it 10 s.
            let status = loop {
                if let Some(status) = child.try_wait().expect("poll the role binary") {
                    break status;
                }
                if started.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{case}: still running after 10 s; the config was accepted");
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            assert_eq!(status.code(), Some(78), "{case}: {stderr}");
            assert!(
                stderr.contains(key),
                "{case}: message does not name {key}: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{case}: {stderr}");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{case}: took {:?}",
                started.elapsed()
            );
        }
    }
}

#[cfg(test)]
mod config_tests {
    use std::path::Path;

    use splatfleet_common::config::Config;

    use super::{broker_settings, database_settings, test_config};

    #[test]
    fn the_written_test_config_reads_back() {
        let config = test_config(
            Path::new("/tmp/t"),
            &broker_settings(),
            &database_settings("sft_y"),
            9,
        );
        let text = super::config_toml(&config);
        let back = Config::from_toml_with_env(&text, Path::new("t.toml"), std::iter::empty())
            .expect("reads back");
        assert_eq!(back.puller.metrics_addr, config.puller.metrics_addr);
        assert_eq!(back.object_store.root, Path::new("/tmp/t/artifacts"));
        assert_eq!(back.shutdown.drain_timeout_secs, 9);
    }
}
