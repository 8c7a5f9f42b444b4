//! A whole fleet on one machine for the fault suite, every part its own process: a private
//! RabbitMQ node and PostgreSQL cluster, the simulated validators and generation service
//! (`splatfleet-sim`), a fault proxy in front of each validator and of the generation service,
//! and the roles (`splatfleet-puller`, `splatfleet-worker --gpu N` × N, `splatfleet-submitter`)
//! started from one generated config. The fleet sees the validators and the generation
//! service only through the proxies, so the suite can break those links.
//!
//! The settings keep a CPU worker fast (small models, a 4-view 64×64 gate) and the validators'
//! clock scaled (300 s cooldowns become a few seconds), so a run of minutes covers hundreds of
//! tasks.

pub mod child;

use std::{
    ffi::OsString,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use splatfleet_common::{
    config::{
        AmqpUrl, BrokerSettings, Config, DatabaseSettings, LogFormat, LogSettings, PullerSettings,
        SubmitterSettings, WorkerSettings,
    },
    discovery::{static_list::StaticValidatorList, ValidatorInfo},
};

pub use child::{ChildError, FleetChild};

use crate::{
    fault_proxy::FaultProxy,
    private_broker::{PrivateBroker, PrivateBrokerError},
    private_postgres::{PrivatePostgres, PrivatePostgresError},
};

/// The queue prefix and database name of the fleet (the broker and cluster are private).
pub const PREFIX: &str = "splatfleet";
pub const DBNAME: &str = "splatfleet";

/// How long a role may take to log "ready".
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the fleet could not be started.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("private RabbitMQ: {0}")]
    Broker(#[from] PrivateBrokerError),
    #[error("private PostgreSQL: {0}")]
    Postgres(#[from] PrivatePostgresError),
    #[error(transparent)]
    Child(#[from] ChildError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("binary {0} not found; build the workspace's binaries first (cargo build --workspace --bins), or set SPLATFLEET_BIN_DIR")]
    MissingBinary(PathBuf),
    #[error("the simulator's validator list: {0}")]
    ValidatorList(String),
    #[error("the generator did not say where it listens: {0}")]
    GeneratorAddress(String),
}

/// Where the fleet's binaries are.
#[derive(Debug, Clone)]
pub struct FleetBinaries {
    pub puller: PathBuf,
    pub worker: PathBuf,
    pub submitter: PathBuf,
    pub sim: PathBuf,
}

impl FleetBinaries {
    /// The role binaries next to this test executable (see [`role_binary`]); `sim` is the
    /// simulator's path (`env!("CARGO_BIN_EXE_splatfleet-sim")` in this crate's tests).
    pub fn locate(sim: &Path) -> Result<Self, FleetError> {
        Ok(Self {
            puller: role_binary("splatfleet-puller")?,
            worker: role_binary("splatfleet-worker")?,
            submitter: role_binary("splatfleet-submitter")?,
            sim: sim.to_owned(),
        })
    }
}

/// The binary `name` next to this test executable (`target/<profile>/`, the parent of
/// `deps/`), or in `SPLATFLEET_BIN_DIR`: `cargo test --workspace` builds every role's.
pub fn role_binary(name: &str) -> Result<PathBuf, FleetError> {
    let dir = match std::env::var_os("SPLATFLEET_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().map_err(|source| FleetError::Io {
                what: "finding this executable".into(),
                source,
            })?;
            let mut dir = exe.parent().map(Path::to_owned).unwrap_or_default();
            if dir.file_name().is_some_and(|n| n == "deps") {
                dir.pop();
            }
            dir
        }
    };
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(FleetError::MissingBinary(path))
    }
}

/// The shape of the fleet and the simulated world around it.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    pub validators: u16,
    pub workers: usize,
    /// Divides the validators' durations: 60 turns the 300 s cooldown into 5 s.
    pub time_scale: f64,
    /// Seed of the validators' task mix.
    pub seed: u64,
    /// Gaussians of each generated model.
    pub gaussians: usize,
    /// The puller's task deadline and lost-task grace, seconds.
    pub task_deadline_secs: u64,
    pub lost_task_grace_secs: u64,
}

impl Default for FleetSettings {
    fn default() -> Self {
        Self {
            validators: 4,
            workers: 2,
            time_scale: 60.0,
            seed: 17,
            gaussians: 10_000,
            task_deadline_secs: 30,
            lost_task_grace_secs: 10,
        }
    }
}

/// A role of the fleet, as the suite names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoleSlot {
    Puller,
    Worker(usize),
    Submitter,
}

impl std::fmt::Display for RoleSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Puller => f.write_str("puller"),
            Self::Worker(n) => write!(f, "worker{n}"),
            Self::Submitter => f.write_str("submitter"),
        }
    }
}

/// A running fleet. Dropping it kills every process and stops the private services.
#[derive(Debug)]
pub struct Fleet {
    pub dir: PathBuf,
    pub settings: FleetSettings,
    pub config_path: PathBuf,
    /// The same config with every validator blacklisted: a puller that pulls nothing new but
    /// still releases lost tasks and republishes unconfirmed ones.
    pub drain_config_path: PathBuf,
    pub events_path: PathBuf,
    /// The validators' real addresses (the fleet sees the proxies').
    pub validators: Vec<ValidatorInfo>,
    pub validator_proxies: Vec<FaultProxy>,
    pub generator_proxy: FaultProxy,
    /// Roles in start order: puller, workers, submitter.
    pub roles: Vec<(RoleSlot, FleetChild)>,
    // Declared last: dropped after the processes that use them.
    _simulators: Vec<FleetChild>,
    pub postgres: PrivatePostgres,
    pub broker: PrivateBroker,
}

/// Reads `<keys_dir>/validators.toml` once the simulator has written it.
fn read_validator_list(path: &Path) -> Result<StaticValidatorList, FleetError> {
    StaticValidatorList::load(path).map_err(|e| FleetError::ValidatorList(e.to_string()))
}

impl Fleet {
    /// Starts everything and waits until every role is ready.
    pub async fn start(
        dir: &Path,
        settings: FleetSettings,
        binaries: &FleetBinaries,
    ) -> Result<Self, FleetError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| FleetError::Io { what, source }
        };
        std::fs::create_dir_all(dir).map_err(io("creating the fleet directory"))?;
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(io("creating the log directory"))?;
        let broker = PrivateBroker::start(&dir.join("rabbitmq"))?;
        let postgres = PrivatePostgres::start(&dir.join("postgres"))?;
        postgres.create_database(DBNAME).await?;

        let keys_dir = dir.join("sim");
        let events_path = dir.join("validator-events.jsonl");
        let mut validators_sim = FleetChild::new(
            "sim-validators",
            &binaries.sim,
            os_args(&[
                "validators".into(),
                "--count".into(),
                settings.validators.to_string(),
                "--base-port".into(),
                "0".into(),
                "--keys-dir".into(),
                keys_dir.display().to_string(),
                "--time-scale".into(),
                settings.time_scale.to_string(),
                "--events".into(),
                events_path.display().to_string(),
                "--seed".into(),
                settings.seed.to_string(),
                // Models of `gaussians` score about 0.86: clearly accepted.
                "--score-reference-gaussians".into(),
                (settings.gaussians as f64 / 2.0).to_string(),
            ]),
            Vec::new(),
            logs.join("sim-validators.log"),
        );
        validators_sim.spawn()?;
        validators_sim.wait_for_log("validator list:", READY_TIMEOUT)?;
        let list = read_validator_list(&keys_dir.join("validators.toml"))?;

        let mut generator_sim = FleetChild::new(
            "sim-generator",
            &binaries.sim,
            os_args(&[
                "generator".into(),
                "--port".into(),
                "0".into(),
                "--gaussians".into(),
                settings.gaussians.to_string(),
            ]),
            Vec::new(),
            logs.join("sim-generator.log"),
        );
        generator_sim.spawn()?;
        let line = generator_sim.wait_for_log("generator listening on", READY_TIMEOUT)?;
        let generator_addr = line
            .rsplit("http://")
            .next()
            .map(|rest| rest.trim().trim_end_matches('/'))
            .and_then(|addr| addr.parse::<SocketAddr>().ok())
            .ok_or_else(|| FleetError::GeneratorAddress(line.clone()))?;

        let mut validator_proxies = Vec::new();
        let mut seen = list.clone();
        for v in &mut seen.validators {
            let target: SocketAddr = format!("{}:{}", v.ip, v.port)
                .parse()
                .map_err(|e| FleetError::ValidatorList(format!("{}: {e}", v.ip)))?;
            let proxy = FaultProxy::start(target)
                .await
                .map_err(io("starting a validator proxy"))?;
            v.port = proxy.addr().port();
            validator_proxies.push(proxy);
        }
        let fleet_list = dir.join("fleet-validators.toml");
        std::fs::write(&fleet_list, seen.to_toml()).map_err(io("writing the fleet's list"))?;
        let generator_proxy = FaultProxy::start(generator_addr)
            .await
            .map_err(io("starting the generator proxy"))?;

        let config_path = dir.join("splatfleet.toml");
        let drain_config_path = dir.join("splatfleet-drain.toml");
        let inputs = ConfigInputs {
            settings: &settings,
            amqp_url: broker.amqp_url(),
            pg_port: postgres.port(),
            dir,
            keys_dir: &keys_dir,
            validators_file: &fleet_list,
            generator_url: format!("http://{}", generator_proxy.addr()),
        };
        let every_uid: Vec<u16> = list.validators.iter().map(|v| v.uid).collect();
        for (path, blacklist) in [
            (&config_path, &[][..]),
            (&drain_config_path, &every_uid[..]),
        ] {
            let text = config_text(&inputs, blacklist);
            std::fs::write(path, text).map_err(io("writing the fleet config"))?;
        }

        let mut roles = Vec::new();
        let config_arg = config_path.display().to_string();
        roles.push((
            RoleSlot::Puller,
            FleetChild::new(
                "puller",
                &binaries.puller,
                os_args(&["--config".into(), config_arg.clone()]),
                Vec::new(),
                logs.join("puller.log"),
            ),
        ));
        for n in 0..settings.workers {
            roles.push((
                RoleSlot::Worker(n),
                FleetChild::new(
                    &format!("worker{n}"),
                    &binaries.worker,
                    os_args(&[
                        "--config".into(),
                        config_arg.clone(),
                        "--gpu".into(),
                        n.to_string(),
                    ]),
                    vec![(
                        "SPLATFLEET__WORKER__METRICS_ADDR".into(),
                        crate::free_addr().to_string(),
                    )],
                    logs.join(format!("worker{n}.log")),
                ),
            ));
        }
        roles.push((
            RoleSlot::Submitter,
            FleetChild::new(
                "submitter",
                &binaries.submitter,
                os_args(&["--config".into(), config_arg]),
                Vec::new(),
                logs.join("submitter.log"),
            ),
        ));
        let mut fleet = Self {
            dir: dir.to_owned(),
            settings,
            config_path,
            drain_config_path,
            events_path,
            validators: list.validators,
            validator_proxies,
            generator_proxy,
            roles,
            _simulators: vec![validators_sim, generator_sim],
            postgres,
            broker,
        };
        // The submitter first so migrations and the results queue exist before tasks flow.
        for slot in [RoleSlot::Submitter, RoleSlot::Puller]
            .into_iter()
            .chain((0..fleet.settings.workers).map(RoleSlot::Worker))
        {
            fleet.start_role(slot)?;
            fleet.wait_ready(slot, READY_TIMEOUT)?;
        }
        Ok(fleet)
    }

    pub fn role(&mut self, slot: RoleSlot) -> &mut FleetChild {
        &mut self
            .roles
            .iter_mut()
            .find(|(s, _)| *s == slot)
            .expect("every slot the suite names exists")
            .1
    }

    pub fn start_role(&mut self, slot: RoleSlot) -> Result<(), FleetError> {
        Ok(self.role(slot).spawn()?)
    }

    /// Waits until the role's current run logs "ready".
    pub fn wait_ready(&mut self, slot: RoleSlot, timeout: Duration) -> Result<(), FleetError> {
        self.role(slot)
            .wait_for_log(r#""message":"ready""#, timeout)?;
        Ok(())
    }

    /// Restarts the puller (SIGTERM, then a fresh start) on the drain config, so the fleet
    /// finishes what it holds without pulling more.
    pub fn restart_puller_draining(&mut self) -> Result<(), FleetError> {
        let binary = self.role(RoleSlot::Puller).program().to_owned();
        let log = self.role(RoleSlot::Puller).log_path().to_owned();
        self.role(RoleSlot::Puller).stop(Duration::from_secs(20));
        let drain = FleetChild::new(
            "puller",
            &binary,
            os_args(&[
                "--config".into(),
                self.drain_config_path.display().to_string(),
            ]),
            Vec::new(),
            log,
        );
        *self.role(RoleSlot::Puller) = drain;
        self.start_role(RoleSlot::Puller)?;
        self.wait_ready(RoleSlot::Puller, READY_TIMEOUT)
    }

    /// Every role slot.
    pub fn slots(&self) -> Vec<RoleSlot> {
        self.roles.iter().map(|(slot, _)| *slot).collect()
    }

    /// The task and result queues' messages (ready + unacked) and the dead-letter queue's.
    pub fn queue_messages(&self) -> Result<Vec<(String, u64)>, FleetError> {
        Ok(self.broker.queue_messages(PREFIX)?)
    }

    /// Stops every role with SIGTERM (in pipeline order) and returns the ones that did not
    /// exit 0 within the drain timeout.
    pub fn stop_roles(&mut self) -> Vec<(RoleSlot, String)> {
        let mut unclean = Vec::new();
        for slot in [RoleSlot::Puller]
            .into_iter()
            .chain((0..self.settings.workers).map(RoleSlot::Worker))
            .chain([RoleSlot::Submitter])
        {
            match self.role(slot).stop(Duration::from_secs(20)) {
                Some(status) if status.success() => {}
                Some(status) => unclean.push((slot, status.to_string())),
                None => unclean.push((slot, "killed after 20 s".into())),
            }
        }
        unclean
    }
}

fn os_args(args: &[String]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// What the one config file every role reads is made of.
struct ConfigInputs<'a> {
    settings: &'a FleetSettings,
    amqp_url: String,
    pg_port: u16,
    dir: &'a Path,
    keys_dir: &'a Path,
    validators_file: &'a Path,
    generator_url: String,
}

/// The config text; `blacklist_uids` lists validators the puller must not pull from.
fn config_text(inputs: &ConfigInputs<'_>, blacklist_uids: &[u16]) -> String {
    let ConfigInputs {
        settings,
        amqp_url,
        pg_port,
        dir,
        keys_dir,
        validators_file,
        generator_url,
    } = inputs;
    let mut c = Config {
        log: LogSettings {
            level: "info".into(),
            format: LogFormat::Json,
        },
        broker: BrokerSettings {
            url: AmqpUrl::new(amqp_url),
            prefix: PREFIX.into(),
            delivery_limit: 5,
            heartbeat_secs: 5,
            connect_timeout_secs: 120,
            reconnect_max_delay_secs: 1,
        },
        database: DatabaseSettings {
            host: "127.0.0.1".into(),
            port: *pg_port,
            user: "postgres".into(),
            password: None,
            dbname: DBNAME.into(),
            pool_max_size: 4,
            wait_timeout_ms: 2000,
            create_timeout_ms: 2000,
            recycle_timeout_ms: 1000,
        },
        puller: PullerSettings {
            metrics_addr: Some(crate::free_addr()),
            tick_ms: 200,
            pull_timeout_ms: 5000,
            cooldown_margin_ms: 1000,
            backoff_initial_ms: 500,
            backoff_max_ms: 4000,
            task_deadline_secs: settings.task_deadline_secs,
            lost_task_grace_secs: settings.lost_task_grace_secs,
            blacklist_uids: blacklist_uids.to_vec(),
            ..PullerSettings::default()
        },
        worker: WorkerSettings {
            metrics_addr: Some(crate::free_addr()),
            generation_endpoints: vec![generator_url.clone(); settings.workers],
            slots: 1,
            generate_timeout_ms: 4000,
            min_budget_ms: 10000,
            gate_views: 4,
            gate_render_size: 64,
            gate_pass_threshold: 0.3,
            // The suite runs where there may be no GPU.
            require_gpu: false,
            ..WorkerSettings::default()
        },
        submitter: SubmitterSettings {
            metrics_addr: Some(crate::free_addr()),
            concurrency: 4,
            submit_timeout_secs: 8,
            max_send_tries: 8,
            retry_initial_ms: 300,
            retry_max_ms: 2000,
            retry_past_deadline_secs: 15,
            db_retry_initial_ms: 100,
            db_retry_max_ms: 1000,
            release_poll_ms: 200,
            // The validators' cooldown after a released task, scaled as they scale it.
            assumed_cooldown_secs: (300.0 / settings.time_scale).ceil().max(1.0) as u64,
            ..SubmitterSettings::default()
        },
        ..Config::default()
    };
    c.shutdown.drain_timeout_secs = 15;
    c.object_store.root = dir.join("artifacts");
    crate::use_simulated_world(&mut c, keys_dir, validators_file);
    c.dendrite.connect_timeout_secs = 2;
    format!(
        "# Written by the fault suite (tests/src/fleet/mod.rs).\n{}",
        crate::config_toml(&c)
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use splatfleet_common::config::Config;

    use super::{config_text, ConfigInputs, FleetSettings};

    #[test]
    fn the_fleet_config_loads_with_the_fleet_s_values() {
        let settings = FleetSettings::default();
        let dir = Path::new("/tmp/fleet");
        let inputs = ConfigInputs {
            settings: &settings,
            amqp_url: "amqp://guest:guest@127.0.0.1:5999/%2f".into(),
            pg_port: 5999,
            dir,
            keys_dir: &dir.join("keys"),
            validators_file: &dir.join("validators.toml"),
            generator_url: "http://127.0.0.1:8093".into(),
        };
        let text = config_text(&inputs, &[3, 4]);
        let config = Config::from_toml_with_env(&text, Path::new("fleet.toml"), std::iter::empty())
            .expect("the fleet config loads");
        assert_eq!(
            config.broker.url.expose(),
            "amqp://guest:guest@127.0.0.1:5999/%2f"
        );
        assert_eq!(config.database.port, 5999);
        assert_eq!(config.puller.blacklist_uids, [3, 4]);
        assert_eq!(config.submitter.assumed_cooldown_secs, 5);
        assert_eq!(config.worker.generation_endpoints.len(), settings.workers);
        assert_eq!(config.object_store.root, dir.join("artifacts"));
        assert_eq!(config.dendrite.connect_timeout_secs, 2);
        assert!(text.starts_with("# Written by the fault suite"));
    }
}
