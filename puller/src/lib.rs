//! The puller: the fleet's scheduler. It discovers validators, decides whom to pull from and
//! when (cooldowns, blacklists, backoff, expected value, fleet capacity), pulls, records each
//! task in Postgres as `queued` in the transaction that publishes it with confirms (through the
//! ledger, `splatfleet_common::ledger`), listens for the tasks the submitter closes, and gives
//! back tasks the fleet lost with an empty submission.

pub mod backoff;
pub mod capacity;
mod control_loop;
pub mod cooldown_book;
mod jobs;
pub mod metrics;
pub mod policy;
pub mod pull;
pub mod scheduler;
pub mod validator_set;
pub mod verdict_windows;

use std::sync::Arc;

use splatfleet_common::{
    bittensor::WalletError,
    broker::{Broker, BrokerError},
    config::Config,
    db::{self, DbError, MigrationError},
    shutdown::Shutdown,
};

#[derive(Debug, thiserror::Error)]
pub enum PullerError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Migration(#[from] MigrationError),
    #[error("the miner hotkey is needed to pull from validators: {0}")]
    Wallet(#[from] WalletError),
}

/// Runs the puller until shutdown is requested.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), PullerError> {
    metrics::describe();
    let broker = Arc::new(Broker::connect(&config.broker, "splatfleet-puller").await?);
    broker.declare_topology().await?;
    let pool = db::connect(&config.database).await?;
    db::migrate(&pool, db::embedded_migrations()).await?;
    let control = control_loop::ControlLoop::new(config, pool.clone(), broker.clone()).await?;
    tracing::info!(prefix = %broker.topology().prefix, "ready");
    let outcome = control.run(shutdown).await;
    pool.close();
    broker.close().await;
    outcome
}
