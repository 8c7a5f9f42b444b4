//! The worker, one process per GPU. For now it connects to RabbitMQ, declares the topology,
//! serves `/metrics` and waits for shutdown; generating, rendering and gating arrive with
//! the worker issue. A worker needs no PostgreSQL.

use splatfleet_common::{
    broker::{Broker, BrokerError},
    config::Config,
    shutdown::Shutdown,
};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Runs the worker until shutdown is requested.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), WorkerError> {
    let broker = Broker::connect(&config.broker, "splatfleet-worker").await?;
    broker.declare_topology().await?;
    tracing::info!(prefix = %broker.topology().prefix, "ready");
    shutdown.requested().await;
    broker.close().await;
    Ok(())
}
