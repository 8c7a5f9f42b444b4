//! The submitter: consumes `ResultMsg`s, submits each task's result to its validator exactly
//! once (`SubmitResults::signed`: SPZ as base64, or empty to release the task without
//! penalty), and records attempts, submission, feedback and cooldowns in PostgreSQL through
//! the ledger (`splatfleet_common::ledger`); plus the operators' SQL reports and the
//! training-data export.
//!
//! The submitter is the fleet's one signer: it also sends the empty releases the puller
//! requests for tasks the fleet lost ([`release`]).
//!
//! One job per module: [`consume`] (one delivery, start to ack), [`release`] (the release
//! loop's sends), [`load_artifact`], [`submit`], [`retry`], [`metrics`], [`reports`],
//! [`export`], [`cli`].

pub mod cli;
pub mod consume;
pub mod export;
pub mod load_artifact;
pub mod metrics;
pub mod release;
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
    ledger::{self, ReleaseRecord},
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
    /// This process's name on the rows it claims.
    instance: String,
    handler: OnceCell<Arc<Handler>>,
    fatal: Mutex<Option<String>>,
}

impl LazyHandler {
    /// Stops the role because submitting cannot be set up.
    fn fail(&self, err: &SetupError) {
        tracing::error!(%err, "cannot submit; stopping");
        if let Ok(mut fatal) = self.fatal.lock() {
            fatal.get_or_insert_with(|| err.to_string());
        }
        self.shutdown.trigger();
    }

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
            self.instance.clone(),
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
        instance: instance_name(),
        handler: OnceCell::new(),
        fatal: Mutex::new(None),
    });
    let releases = tokio::spawn(release_loop(Arc::clone(&lazy)));
    tracing::info!(prefix = %broker.topology().prefix, queue = consumer.queue(), "ready");
    let handlers = Arc::clone(&lazy);
    let consumed = consumer
        .run(shutdown.token().clone(), move |incoming| {
            let lazy = Arc::clone(&handlers);
            async move {
                match lazy.get().await {
                    Ok(handler) => handler.handle(incoming).await,
                    Err(err) => {
                        lazy.fail(&err);
                        Disposition::Requeue
                    }
                }
            }
        })
        .await;
    lazy.shutdown.trigger();
    if let Err(err) = releases.await {
        tracing::error!(%err, "the release loop failed");
    }
    pool.close();
    broker.close().await;
    let fatal = lazy.fatal.lock().ok().and_then(|mut f| f.take());
    if let Some(fatal) = fatal {
        return Err(SubmitterError::Setup(fatal));
    }
    consumed?;
    Ok(())
}

/// Every `release_poll_ms`, takes the due release requests (up to `concurrency` at a time)
/// and sends them; runs until shutdown, its sends finished or interrupted.
async fn release_loop(lazy: Arc<LazyHandler>) {
    let settings = &lazy.config.submitter;
    let (poll, limit) = (settings.release_poll(), i64::from(settings.concurrency));
    let lease = consume::lease_secs(settings.submit_timeout());
    let assumed_cooldown_secs = settings.assumed_cooldown_secs as f64;
    let stop = lazy.shutdown.token().clone();
    let mut ticks = tokio::time::interval(poll);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let jobs = match ledger::take_releases(&lazy.pool, &lazy.instance, lease, limit).await {
            Ok(jobs) => jobs,
            Err(err) => {
                tracing::warn!(%err, "looking for releases to send failed; trying again");
                continue;
            }
        };
        if jobs.is_empty() {
            continue;
        }
        let handler = match lazy.get().await {
            Ok(handler) => handler,
            Err(err) => {
                for job in &jobs {
                    let _ = ledger::finish_release(
                        &lazy.pool,
                        job.task_row,
                        &lazy.instance,
                        &ReleaseRecord::Interrupted,
                    )
                    .await;
                }
                lazy.fail(&err);
                return;
            }
        };
        let mut sends = tokio::task::JoinSet::new();
        for job in jobs {
            sends.spawn(release::send_release(
                Arc::clone(&handler),
                job,
                assumed_cooldown_secs,
            ));
        }
        while sends.join_next().await.is_some() {}
    }
}
