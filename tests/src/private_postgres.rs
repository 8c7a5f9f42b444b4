//! A private PostgreSQL cluster for tests that restart the database: `initdb` into a
//! temporary directory, served on a port of its own (loopback and a socket in that
//! directory), trust auth for `postgres`, started and stopped with `pg_ctl`, so a restart
//! never touches the shared server on 5432. The cluster is stopped when dropped.
//!
//! PostgreSQL refuses to run as root: as root the tools run as the `postgres` user (through
//! `runuser`), which then owns the directory.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use splatfleet_common::config::DatabaseSettings;

/// Why the private cluster could not be created or driven.
#[derive(Debug, thiserror::Error)]
pub enum PrivatePostgresError {
    #[error("no PostgreSQL server binaries found (looked in SPLATFLEET_PG_BIN_DIR and /usr/lib/postgresql/*/bin; ops/dev-up.sh installs them)")]
    NoBinaries,
    #[error("preparing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("running {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {output}")]
    Command { command: String, output: String },
    #[error("creating database {name}: {source}")]
    CreateDatabase {
        name: String,
        source: tokio_postgres::Error,
    },
}

/// How `pg_ctl stop` shuts the server down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// `-m fast`: roll back open transactions, close connections, checkpoint.
    Fast,
    /// `-m immediate`: like a crash; recovery runs at the next start.
    Immediate,
}

impl StopMode {
    fn flag(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Immediate => "immediate",
        }
    }
}

/// A PostgreSQL cluster of our own on loopback.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    /// `Some("postgres")` when we are root and must run the tools as that user.
    run_as: Option<&'static str>,
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
fn find_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SPLATFLEET_PG_BIN_DIR") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

impl PrivatePostgres {
    /// Creates a cluster under `dir` (created) and starts it.
    pub fn start(dir: &Path) -> Result<Self, PrivatePostgresError> {
        let bin_dir = find_bin_dir().ok_or(PrivatePostgresError::NoBinaries)?;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| PrivatePostgresError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        // The directory we just created is owned by our effective user: root or not.
        let owner = {
            use std::os::unix::fs::MetadataExt as _;
            std::fs::metadata(dir).map_err(io(dir))?.uid()
        };
        let run_as = (owner == 0).then_some("postgres");
        if run_as.is_some() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()
                .map_err(|source| PrivatePostgresError::Spawn {
                    command: "chown".into(),
                    source,
                })?;
            if !status.success() {
                return Err(PrivatePostgresError::Command {
                    command: format!("chown -R postgres {}", dir.display()),
                    output: status.to_string(),
                });
            }
        }
        let cluster = Self {
            dir: dir.to_owned(),
            bin_dir,
            port: crate::free_addr().port(),
            run_as,
        };
        let data = cluster.data_dir();
        let data_arg = data.display().to_string();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data_arg,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        cluster.start_server()?;
        Ok(cluster)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Settings that reach this cluster as `postgres`, naming `dbname`.
    pub fn settings(&self, dbname: &str) -> DatabaseSettings {
        DatabaseSettings {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "postgres".into(),
            password: None,
            dbname: dbname.into(),
            ..DatabaseSettings::default()
        }
    }

    /// A client of `dbname` on this cluster.
    pub async fn client(
        &self,
        dbname: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname(dbname)
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(connection);
        Ok(client)
    }

    pub async fn create_database(&self, name: &str) -> Result<(), PrivatePostgresError> {
        let error = |source| PrivatePostgresError::CreateDatabase {
            name: name.into(),
            source,
        };
        self.client("postgres")
            .await
            .map_err(error)?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(error)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<String, PrivatePostgresError> {
        let program = self.bin_dir.join(tool);
        let mut command = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let text = format!("{tool} {}", args.join(" "));
        let output = command
            .args(args)
            .current_dir(&self.dir)
            .output()
            .map_err(|source| PrivatePostgresError::Spawn {
                command: text.clone(),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(PrivatePostgresError::Command {
                command: text,
                output: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
            })
        }
    }

    /// `pg_ctl start -w`: returns once the server accepts connections.
    pub fn start_server(&self) -> Result<(), PrivatePostgresError> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            self.port,
            self.dir.display()
        );
        let data = self.data_dir().display().to_string();
        let log = self.dir.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-o", &options, "-l", &log, "-w", "-t", "60", "start",
            ],
        )
        .map(drop)
    }

    /// `pg_ctl stop -m fast|immediate -w`.
    pub fn stop_server(&self, mode: StopMode) -> Result<(), PrivatePostgresError> {
        let data = self.data_dir().display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &data, "-m", mode.flag(), "-w", "-t", "60", "stop"],
        )
        .map(drop)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.stop_server(StopMode::Immediate);
    }
}
