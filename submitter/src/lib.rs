//! The submitter. For now it connects to RabbitMQ and PostgreSQL, applies the schema
//! migrations, declares the topology, serves `/metrics` and waits for shutdown; signing and
//! submitting results arrive with the submitter issue.

use splatfleet_common::{
    broker::{Broker, BrokerError},
    config::Config,
    db::{self, DbError, MigrationError},
    shutdown::Shutdown,
};

#[derive(Debug, thiserror::Error)]
pub enum SubmitterError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Migration(#[from] MigrationError),
}

/// Runs the submitter until shutdown is requested.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), SubmitterError> {
    let broker = Broker::connect(&config.broker, "splatfleet-submitter").await?;
    broker.declare_topology().await?;
    let pool = db::connect(&config.database).await?;
    let report = db::migrate(&pool, db::embedded_migrations()).await?;
    tracing::info!(applied = ?report.applied, already_applied = report.already_applied.len(), "schema up to date");
    tracing::info!(prefix = %broker.topology().prefix, "ready");
    shutdown.requested().await;
    pool.close();
    broker.close().await;
    Ok(())
}
