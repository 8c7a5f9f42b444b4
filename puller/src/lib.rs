//! The puller: the fleet's scheduler. For now it connects to RabbitMQ and PostgreSQL,
//! declares the topology, serves `/metrics` and waits for shutdown; pulling from
//! validators arrives with the puller issue.

use splatfleet_common::{
    broker::{Broker, BrokerError},
    config::Config,
    db::{self, DbError},
    shutdown::Shutdown,
};

#[derive(Debug, thiserror::Error)]
pub enum PullerError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Runs the puller until shutdown is requested.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), PullerError> {
    let broker = Broker::connect(&config.broker, "splatfleet-puller").await?;
    broker.declare_topology().await?;
    let pool = db::connect(&config.database).await?;
    tracing::info!(prefix = %broker.topology().prefix, "ready");
    shutdown.requested().await;
    pool.close();
    broker.close().await;
    Ok(())
}
