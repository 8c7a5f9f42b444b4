//! A private RabbitMQ node for tests that restart the broker: its own node name, AMQP and
//! distribution ports, Erlang cookie, data and log directories, all under a temporary
//! directory, so `stop_app` / `start_app` / a full restart touch nobody else's queues (the
//! shared broker on 5672 keeps serving other tests). The node is stopped when dropped.
//!
//! It runs the distribution's `rabbitmq-server` directly (on Debian under
//! `/usr/lib/rabbitmq/bin`, bypassing the wrapper that switches to the `rabbitmq` user) as the
//! current user, with `HOME` pointing at the temporary directory so the node and
//! `rabbitmqctl` share a cookie of their own. `/etc/rabbitmq/rabbitmq-env.conf` and
//! `rabbitmq.conf` are replaced by files of ours, since the system ones pin the node name and
//! port 5672.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use rand::Rng as _;

/// Why the private broker could not be started or driven.
#[derive(Debug, thiserror::Error)]
pub enum PrivateBrokerError {
    #[error("preparing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "running {command}: {source} (is rabbitmq-server installed? ops/dev-up.sh installs it)"
    )]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {output}")]
    Command { command: String, output: String },
    #[error("node {node} did not start within {waited:?}; its log is in {log_dir}")]
    StartTimeout {
        node: String,
        waited: Duration,
        log_dir: PathBuf,
    },
}

/// A RabbitMQ node of our own on loopback.
#[derive(Debug)]
pub struct PrivateBroker {
    dir: PathBuf,
    bin_dir: Option<PathBuf>,
    node: String,
    amqp_port: u16,
    dist_port: u16,
}

/// How long a (re)start may take on a slow, busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);

fn free_port() -> u16 {
    crate::free_addr().port()
}

impl PrivateBroker {
    /// Starts a fresh node with its data under `dir` (created), and waits until it serves.
    pub fn start(dir: &Path) -> Result<Self, PrivateBrokerError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| PrivateBrokerError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let cookie: String = (0..32)
            .map(|_| char::from(b'A' + rand::rng().random_range(0..26u8)))
            .collect();
        let cookie_path = dir.join(".erlang.cookie");
        std::fs::write(&cookie_path, cookie).map_err(io(&cookie_path))?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&cookie_path, std::fs::Permissions::from_mode(0o400))
                .map_err(io(&cookie_path))?;
        }
        let amqp_port = free_port();
        let dist_port = free_port();
        for (name, text) in [
            ("rabbitmq-env.conf", String::new()),
            ("enabled_plugins", "[].\n".to_owned()),
            (
                "rabbitmq.conf",
                format!("listeners.tcp.1 = 127.0.0.1:{amqp_port}\nloopback_users = none\n"),
            ),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(io(&path))?;
        }
        let debian = PathBuf::from("/usr/lib/rabbitmq/bin");
        let bin_dir = std::env::var_os("SPLATFLEET_RABBITMQ_BIN_DIR")
            .map(PathBuf::from)
            .or_else(|| debian.is_dir().then_some(debian));
        let suffix: u32 = rand::rng().random();
        let broker = Self {
            dir: dir.to_owned(),
            bin_dir,
            node: format!("sf-fault-{suffix:08x}@localhost"),
            amqp_port,
            dist_port,
        };
        broker.launch()?;
        Ok(broker)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn amqp_port(&self) -> u16 {
        self.amqp_port
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("log")
    }

    fn tool(&self, name: &str) -> Command {
        let program = match &self.bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        };
        let mut command = Command::new(program);
        command
            .env("HOME", &self.dir)
            .env("RABBITMQ_CONF_ENV_FILE", self.dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq.conf"))
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.log_dir())
            .env("RABBITMQ_PID_FILE", self.dir.join("node.pid"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.dir.join("enabled_plugins"),
            )
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .current_dir(&self.dir);
        command
    }

    fn run(&self, name: &str, args: &[&str]) -> Result<String, PrivateBrokerError> {
        let text = format!("{name} {}", args.join(" "));
        let output =
            self.tool(name)
                .args(args)
                .output()
                .map_err(|source| PrivateBrokerError::Spawn {
                    command: text.clone(),
                    source,
                })?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(PrivateBrokerError::Command {
                command: text,
                output: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
            })
        }
    }

    /// `rabbitmqctl -n <node> args...`.
    pub fn ctl(&self, args: &[&str]) -> Result<String, PrivateBrokerError> {
        let mut all = vec!["-q", "-n", self.node.as_str()];
        all.extend_from_slice(args);
        self.run("rabbitmqctl", &all)
    }

    /// Starts the node (detached) and waits until its application runs.
    fn launch(&self) -> Result<(), PrivateBrokerError> {
        self.run("rabbitmq-server", &["-detached"])?;
        self.await_startup()
    }

    /// Waits until the node's application runs. Right after `-detached` the node may not be
    /// registered with epmd yet, and `await_startup` then fails at once: ask again.
    fn await_startup(&self) -> Result<(), PrivateBrokerError> {
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if self.ctl(&["await_startup", "--timeout", "30"]).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Err(PrivateBrokerError::StartTimeout {
            node: self.node.clone(),
            waited: START_TIMEOUT,
            log_dir: self.log_dir(),
        })
    }

    /// `rabbitmqctl stop_app`: the broker application stops (every connection closes), the
    /// Erlang node stays up.
    pub fn stop_app(&self) -> Result<(), PrivateBrokerError> {
        self.ctl(&["stop_app"]).map(drop)
    }

    /// `rabbitmqctl start_app`, then waits until the application runs.
    pub fn start_app(&self) -> Result<(), PrivateBrokerError> {
        self.ctl(&["start_app"])?;
        self.await_startup()
    }

    /// Starts the node again after [`Self::stop`], on the same data and ports, and waits
    /// until it serves.
    pub fn start_again(&self) -> Result<(), PrivateBrokerError> {
        self.launch()
    }

    /// Stops the whole node and starts it again on the same data and ports.
    pub fn restart_node(&self) -> Result<(), PrivateBrokerError> {
        let _ = self.ctl(&["stop"]);
        self.launch()
    }

    /// Messages (ready + unacknowledged) per queue whose name starts with `prefix`.
    pub fn queue_messages(&self, prefix: &str) -> Result<Vec<(String, u64)>, PrivateBrokerError> {
        let text = self.ctl(&["list_queues", "--no-table-headers", "name", "messages"])?;
        Ok(text
            .lines()
            .filter_map(|line| {
                let mut parts = line.split_whitespace();
                let name = parts.next()?;
                let count = parts.next()?.parse().ok()?;
                name.starts_with(prefix).then(|| (name.to_owned(), count))
            })
            .collect())
    }

    /// Stops the node; kills it by pid if `rabbitmqctl stop` does not.
    pub fn stop(&self) {
        if self.ctl(&["stop"]).is_ok() {
            return;
        }
        if let Ok(text) = std::fs::read_to_string(self.dir.join("node.pid")) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
