//! The submitter: consumes `ResultMsg`s, submits each task's result to its validator exactly
//! once (`SubmitResults::signed`: SPZ as base64, or empty to release the task without
//! penalty), and records attempts, submission, feedback and cooldowns in PostgreSQL through
//! the ledger (`splatfleet_common::ledger`); plus the operators' SQL reports and the
//! training-data export.
//!
//! One job per module: [`consume`] (one delivery, start to ack), [`load_artifact`],
//! [`submit`], [`retry`], [`metrics`], [`reports`], [`export`], [`cli`].

pub mod cli;
pub mod consume;
pub mod export;
pub mod load_artifact;
pub mod metrics;
pub mod reports;
pub mod retry;
pub mod submit;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use splatfleet_common::{
    artifacts::{ArtifactError, ArtifactStore},
    bittensor::{load_hotkey, Dendrite, WalletError},
    broker::{Broker, BrokerError, ConsumeError, Disposition},
    config::Config,
    db::{self, DbError, MigrationError, Pool},
    messages::ResultMsg,
    shutdown::Shutdown,
};
use tokio::sync::OnceCell;

use crate::{
    consume::Handler,
    retry::{Backoff, SendPolicy},
};

#[derive(Debug, thiserror::Error)]
pub enum SubmitterError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Migration(#[from] MigrationError),
    #[error(transparent)]
    Consume(#[from] ConsumeError),
    #[error("cannot submit: {0}")]
    Setup(String),
}

/// Why the submitting half could not be set up (at the first result).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the miner hotkey is needed to sign submissions: {0}")]
    Wallet(#[from] WalletError),
    #[error(transparent)]
    Artifacts(#[from] ArtifactError),
}

/// The wallet and the artifact store are opened at the first result, so a submitter with
/// nothing to do starts without them; a failure there stops the role.
#[derive(Debug)]
struct LazyHandler {
    config: Config,
    pool: Pool,
    shutdown: Shutdown,
    handler: OnceCell<Arc<Handler>>,
    fatal: Mutex<Option<String>>,
}

impl LazyHandler {
    async fn get(&self) -> Result<Arc<Handler>, SetupError> {
        self.handler
            .get_or_try_init(|| async { self.build().map(Arc::new) })
            .await
            .cloned()
    }

    fn build(&self) -> Result<Handler, SetupError> {
        let settings = &self.config.submitter;
        let hotkey = load_hotkey(&self.config.wallet)?;
        tracing::info!(miner = hotkey.ss58(), "miner hotkey loaded");
        let store = ArtifactStore::open(&self.config.object_store)?;
        tracing::info!(store = store.location(), "artifact store opened");
        let dendrite = Dendrite::new(Arc::new(hotkey), self.config.dendrite.settings());
        Ok(Handler::new(
            self.pool.clone(),
            store,
            dendrite,
            settings.submit_timeout(),
            SendPolicy {
                max_tries: settings.max_send_tries,
                backoff: Backoff {
                    initial: Duration::from_millis(settings.retry_initial_ms),
                    max: Duration::from_millis(settings.retry_max_ms),
                },
                past_deadline_secs: settings.retry_past_deadline_secs as f64,
            },
            Backoff {
                initial: Duration::from_millis(settings.db_retry_initial_ms),
                max: Duration::from_millis(settings.db_retry_max_ms),
            },
            settings.max_artifact_bytes,
            instance_name(),
            self.shutdown.token().clone(),
        ))
    }
}

/// `host:pid:random`, written on the submission rows this process claims.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &random[..8])
}

/// Runs the submitter until shutdown is requested.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), SubmitterError> {
    let broker = Broker::connect(&config.broker, "splatfleet-submitter").await?;
    broker.declare_topology().await?;
    let pool = db::connect(&config.database).await?;
    let report = db::migrate(&pool, db::embedded_migrations()).await?;
    tracing::info!(applied = ?report.applied, already_applied = report.already_applied.len(), "schema up to date");
    metrics::describe();
    let consumer = broker
        .consumer::<ResultMsg>(config.submitter.concurrency, "splatfleet-submitter")
        .await?;
    let lazy = Arc::new(LazyHandler {
        config,
        pool: pool.clone(),
        shutdown: shutdown.clone(),
        handler: OnceCell::new(),
        fatal: Mutex::new(None),
    });
    tracing::info!(prefix = %broker.topology().prefix, queue = consumer.queue(), "ready");
    let handlers = Arc::clone(&lazy);
    let consumed = consumer
        .run(shutdown.token().clone(), move |incoming| {
            let lazy = Arc::clone(&handlers);
            async move {
                match lazy.get().await {
                    Ok(handler) => handler.handle(incoming).await,
                    Err(err) => {
                        tracing::error!(%err, "cannot submit; stopping");
                        if let Ok(mut fatal) = lazy.fatal.lock() {
                            fatal.get_or_insert_with(|| err.to_string());
                        }
                        lazy.shutdown.trigger();
                        Disposition::Requeue
                    }
                }
            }
        })
        .await;
    pool.close();
    broker.close().await;
    let fatal = lazy.fatal.lock().ok().and_then(|mut f| f.take());
    if let Some(fatal) = fatal {
        return Err(SubmitterError::Setup(fatal));
    }
    consumed?;
    Ok(())
}
