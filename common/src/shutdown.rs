//! Orderly shutdown: SIGTERM and Ctrl-C cancel one token; every task a role spawns is tracked
//! so the role can wait, up to a deadline, for all of them to finish before it exits.

use std::{future::Future, time::Duration};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// The shutdown token and the tracker of every task that must finish before exit.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

/// The drain deadline passed with tasks still running.
#[derive(Debug, thiserror::Error)]
#[error("{still_running} task(s) still running after the {timeout:?} drain timeout")]
pub struct DrainTimeout {
    pub still_running: usize,
    pub timeout: Duration,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the token on the first SIGTERM or Ctrl-C. Call from inside the runtime.
    pub fn listen_for_signals(&self) {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                signal = wait_for_signal() => {
                    tracing::info!(signal, "shutdown requested; draining");
                    token.cancel();
                }
                () = token.cancelled() => {}
            }
        });
    }

    /// Asks every task to stop.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once shutdown has been asked for.
    pub async fn requested(&self) {
        self.token.cancelled().await;
    }

    /// The token itself, for code that selects on it or hands out child tokens.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Spawns a task that shutdown waits for.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Stops accepting tasks and waits for the running ones, at most `timeout`.
    pub async fn drain(&self, timeout: Duration) -> Result<(), DrainTimeout> {
        self.token.cancel();
        self.tracker.close();
        match tokio::time::timeout(timeout, self.tracker.wait()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(DrainTimeout {
                still_running: self.tracker.len(),
                timeout,
            }),
        }
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        },
        Err(err) => {
            tracing::warn!(%err, "cannot listen for SIGTERM; only Ctrl-C will stop this process");
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_tracked_tasks_that_watch_the_token() {
        let shutdown = Shutdown::new();
        let watcher = shutdown.clone();
        let done = shutdown.spawn(async move {
            watcher.requested().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            "finished"
        });
        shutdown
            .drain(Duration::from_secs(5))
            .await
            .expect("drains in time");
        assert_eq!(done.await.expect("task joined"), "finished");
    }

    #[tokio::test]
    async fn drain_reports_tasks_that_ignore_the_deadline() {
        let shutdown = Shutdown::new();
        shutdown.spawn(tokio::time::sleep(Duration::from_secs(60)));
        let err = shutdown
            .drain(Duration::from_millis(50))
            .await
            .expect_err("must time out");
        assert_eq!(err.still_running, 1);
    }
}
