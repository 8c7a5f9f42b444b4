//! Closed tasks, announced: the two statements that close a task (finishing its submission,
//! finishing its empty release) notify [`CLOSED_CHANNEL`] in their own transaction, so the
//! notice arrives only if the close committed. The puller listens ([`listen`]) and learns at
//! once which validator it may pull again and until when it cools down, instead of reading
//! Postgres every tick. A notice can be missed (the listening connection drops); the puller's
//! periodic full snapshot covers that, and it reads every tick again while not listening.

use std::time::Duration;

use futures_util::{stream, StreamExt};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::status::Verdict;
use crate::{
    config::DatabaseSettings,
    db::{pg_config, DbError},
};

/// The notification channel.
pub const CLOSED_CHANNEL: &str = "splatfleet_task_closed";

/// SQL calling `pg_notify` with a [`TaskClosed`] payload built from four SQL expressions: the
/// validator's row id, the cooldown (unix seconds as float8, NULL for none), the submission's
/// verdict (text, NULL for none) and the task id. The task id goes last: it is the
/// validator's text and may hold spaces.
pub(crate) fn notify_sql(
    validator_id: &str,
    cooldown_secs: &str,
    verdict: &str,
    task_id: &str,
) -> String {
    format!(
        "pg_notify('{CLOSED_CHANNEL}', concat_ws(' ', ({validator_id})::text,
             coalesce(({cooldown_secs})::float8::text, '-'),
             coalesce(({verdict})::text, '-'), {task_id}))"
    )
}

/// One closed task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskClosed {
    pub validator_id: i64,
    /// Unix seconds, when the close taught us one.
    pub cooldown_until: Option<f64>,
    /// The submission's verdict (`None` for an empty release's).
    pub verdict: Option<Verdict>,
    pub task_id: String,
}

impl TaskClosed {
    /// Reads a payload of [`notify_sql`]; `None` for anything else.
    pub fn parse(payload: &str) -> Option<Self> {
        let mut parts = payload.splitn(4, ' ');
        let validator_id = parts.next()?.parse().ok()?;
        let cooldown_until = match parts.next()? {
            "-" => None,
            secs => Some(secs.parse::<f64>().ok().filter(|s| s.is_finite())?),
        };
        let verdict = match parts.next()? {
            "-" => None,
            text => Some(Verdict::parse(text)?),
        };
        let task_id = parts.next()?.to_owned();
        Some(Self {
            validator_id,
            cooldown_until,
            verdict,
            task_id,
        })
    }
}

/// A listening connection's notices. The channel closes when the connection ends.
#[derive(Debug)]
pub struct ClosedListener {
    notices: mpsc::UnboundedReceiver<TaskClosed>,
    /// Dropping the client closes the connection: held for as long as we listen.
    _client: tokio_postgres::Client,
}

impl ClosedListener {
    /// Every notice that has arrived, without waiting; `None` once the connection has ended
    /// (the notices before the end are returned first).
    pub fn drain(&mut self) -> Option<Vec<TaskClosed>> {
        let mut out = Vec::new();
        loop {
            match self.notices.try_recv() {
                Ok(notice) => out.push(notice),
                Err(mpsc::error::TryRecvError::Empty) => return Some(out),
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return (!out.is_empty()).then_some(out);
                }
            }
        }
    }
}

/// Opens a connection of its own (not the pool's: it stays open to receive) and listens.
pub async fn listen(settings: &DatabaseSettings) -> Result<ClosedListener, DbError> {
    let config = pg_config(settings);
    let timeout = Duration::from_millis(settings.create_timeout_ms);
    let (client, mut connection) = tokio::time::timeout(timeout, config.connect(NoTls))
        .await
        .map_err(|_| DbError::Unreachable {
            target: crate::db::describe(settings),
            message: "timed out opening the listening connection".into(),
        })??;
    let (tx, notices) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) if n.channel() == CLOSED_CHANNEL => {
                    match TaskClosed::parse(n.payload()) {
                        Some(notice) => {
                            if tx.send(notice).is_err() {
                                break;
                            }
                        }
                        None => {
                            tracing::warn!(payload = n.payload(), "unreadable task-closed notice")
                        }
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(%err, "the task-closed listening connection ended");
                    break;
                }
            }
        }
        // Dropping `tx` tells the listener's owner that it is deaf now.
    });
    client
        .batch_execute(&format!("LISTEN {CLOSED_CHANNEL}"))
        .await?;
    Ok(ClosedListener {
        notices,
        _client: client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_back_and_others_are_refused() {
        assert_eq!(
            TaskClosed::parse("17 1900000000.5 penalised task with spaces"),
            Some(TaskClosed {
                validator_id: 17,
                cooldown_until: Some(1_900_000_000.5),
                verdict: Some(Verdict::Penalised),
                task_id: "task with spaces".into(),
            })
        );
        assert_eq!(
            TaskClosed::parse("3 - - t-1"),
            Some(TaskClosed {
                validator_id: 3,
                cooldown_until: None,
                verdict: None,
                task_id: "t-1".into(),
            })
        );
        for bad in [
            "",
            "x - - t",
            "3 NaN - t",
            "3 - -",
            "3 abc - t",
            "3 - great t",
        ] {
            assert_eq!(TaskClosed::parse(bad), None, "{bad:?}");
        }
    }
}
