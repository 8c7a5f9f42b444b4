//! How a role binary starts and stops: command-line arguments, config, telemetry, the
//! runtime, `/metrics`, signal handling, and the drain with its deadline. Each binary's
//! `main` hands its role function to [`run`].

use std::{
    future::Future,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
};

use crate::{config::Config, shutdown::Shutdown, telemetry};

/// Default config path when neither `--config` nor `SPLATFLEET_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/splatfleet/splatfleet.toml";

/// Arguments every role takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// The fleet's TOML config (see ops/splatfleet.example.toml).
    #[arg(long, env = "SPLATFLEET_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
}

/// The fleet's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Puller,
    Worker,
    Submitter,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Puller => "puller",
            Role::Worker => "worker",
            Role::Submitter => "submitter",
        }
    }

    /// Where `/metrics` is served unless the config says otherwise.
    pub fn default_metrics_port(self) -> u16 {
        match self {
            Role::Puller => 9471,
            Role::Worker => 9472,
            Role::Submitter => 9473,
        }
    }

    pub fn metrics_addr(self, config: &Config) -> SocketAddr {
        let configured = match self {
            Role::Puller => config.puller.metrics_addr,
            Role::Worker => config.worker.metrics_addr,
            Role::Submitter => config.submitter.metrics_addr,
        };
        configured
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, self.default_metrics_port())))
    }
}

/// Exit status for a config error (as sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

/// Runs `body` as the process's role and returns its exit status: 0 after a clean drain,
/// 78 for a bad config, 1 for any other failure.
pub fn run<F, Fut, E>(role: Role, args: &CommonArgs, body: F) -> ExitCode
where
    F: FnOnce(Config, Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    run_prepared(
        role,
        args,
        |_| Ok::<(), std::convert::Infallible>(()),
        |config, (), shutdown| body(config, shutdown),
    )
}

/// As [`run`], with `prepare` reading what the config points at before the role starts
/// (the worker's model files): its error is the operator's to fix like a bad config's, so it
/// is printed to stderr and the process exits 78 too. What it gives is handed to `body`.
pub fn run_prepared<P, S, PE, F, Fut, E>(
    role: Role,
    args: &CommonArgs,
    prepare: P,
    body: F,
) -> ExitCode
where
    P: FnOnce(&Config) -> Result<S, PE>,
    PE: std::fmt::Display,
    F: FnOnce(Config, S, Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let program = format!("splatfleet-{}", role.name());
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{program}: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    telemetry::init_tracing(&config.log);
    let prepared = match prepare(&config) {
        Ok(prepared) => prepared,
        Err(err) => {
            tracing::error!(role = role.name(), %err, "cannot start");
            eprintln!("{program}: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(%err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let drain_timeout = config.shutdown.drain_timeout();
        let shutdown = Shutdown::new();
        shutdown.listen_for_signals();
        if let Err(err) = telemetry::serve_metrics(role.metrics_addr(&config), role.name()) {
            tracing::error!(%err, "cannot start");
            return ExitCode::FAILURE;
        }
        let outcome = body(config, prepared, shutdown.clone()).await;
        let drained = shutdown.drain(drain_timeout).await;
        match (outcome, drained) {
            (Ok(()), Ok(())) => {
                tracing::info!(role = role.name(), "stopped cleanly");
                ExitCode::SUCCESS
            }
            (Err(err), _) => {
                tracing::error!(role = role.name(), %err, "stopped with an error");
                ExitCode::FAILURE
            }
            (Ok(()), Err(err)) => {
                tracing::error!(role = role.name(), %err, "drain did not finish");
                ExitCode::FAILURE
            }
        }
    })
}
