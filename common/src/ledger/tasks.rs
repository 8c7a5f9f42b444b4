//! Task rows: recorded by the puller as `queued` before publishing (unique per validator and
//! task id), the publish bookkeeping and the sweep of unconfirmed ones, a task the puller never
//! recorded adopted by the submitter from its result, and the lost tasks (past deadline and
//! grace, nothing delivered) the puller releases.

use std::sync::LazyLock;

use super::{client, prepared, status::TaskStatus};
use crate::{
    db::{DbError, Pool},
    messages::{ResultMsg, TaskKind, TaskMsg, ValidatorRef},
};

/// The validation threshold assumed for a task the puller never recorded (v45's default).
const ASSUMED_VALIDATION_THRESHOLD: f32 = 0.6;

pub(crate) fn kind_str(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Text => "text",
        TaskKind::Image => "image",
    }
}

/// A status read back from Postgres; the CHECK constraint admits only known ones, so an
/// unknown one (a newer schema) reads as the column default.
pub(crate) fn status_of(text: String) -> TaskStatus {
    TaskStatus::parse(&text).unwrap_or(TaskStatus::Pulled)
}

/// The task row a result answers.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub id: i64,
    pub status: TaskStatus,
    pub pulled_at_secs: f64,
    pub deadline_secs: f64,
}

impl TaskRow {
    /// From `id, status, pulled_at (epoch), deadline_at (epoch)`.
    pub(crate) fn of(row: &tokio_postgres::Row) -> Self {
        Self {
            id: row.get(0),
            status: status_of(row.get(1)),
            pulled_at_secs: row.get(2),
            deadline_secs: row.get(3),
        }
    }
}

/// What inserting a pulled task found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskInsert {
    /// A new row, status `queued`, not yet published.
    Inserted { id: i64 },
    /// The validator handed us a task we already have.
    Existing { id: i64, status: TaskStatus },
}

/// Records a pulled task as `queued` before it is published (unique per validator + task id).
pub async fn insert_task(
    pool: &Pool,
    validator_id: i64,
    msg: &TaskMsg,
    prompt_sha256: &str,
) -> Result<TaskInsert, DbError> {
    let client = client(pool).await?;
    let kind = kind_str(msg.kind);
    let threshold = msg.validation_threshold;
    let throttle = i32::try_from(msg.throttle_period_secs).unwrap_or(i32::MAX);
    let pulled_ms = msg.pulled_at_unix_ms as f64 / 1000.0;
    let deadline_ms = msg.deadline_unix_ms as f64 / 1000.0;
    let inserted = client
        .query_opt(
            "INSERT INTO tasks (validator_id, task_id, kind, prompt_sha256, prompt, pulled_at,
                                deadline_at, validation_threshold, throttle_period_s, status)
             VALUES ($1, $2, $3, $4, $5, to_timestamp($6), to_timestamp($7), $8, $9, $10)
             ON CONFLICT (validator_id, task_id) DO NOTHING RETURNING id",
            &[
                &validator_id,
                &msg.task_id,
                &kind,
                &prompt_sha256,
                &msg.prompt,
                &pulled_ms,
                &deadline_ms,
                &threshold,
                &throttle,
                &TaskStatus::Queued.as_str(),
            ],
        )
        .await?;
    if let Some(row) = inserted {
        return Ok(TaskInsert::Inserted { id: row.get(0) });
    }
    let row = client
        .query_one(
            "SELECT id, status FROM tasks WHERE validator_id = $1 AND task_id = $2",
            &[&validator_id, &msg.task_id],
        )
        .await?;
    Ok(TaskInsert::Existing {
        id: row.get(0),
        status: status_of(row.get(1)),
    })
}

/// The broker confirmed the task's message.
pub async fn mark_published(pool: &Pool, id: i64) -> Result<(), DbError> {
    client(pool)
        .await?
        .execute(
            "UPDATE tasks SET published_at = now(), publish_attempts = publish_attempts + 1,
                 updated_at = now() WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(())
}

/// A publish try failed; the row says so and the sweep tries again.
pub async fn mark_publish_failed(pool: &Pool, id: i64, error: &str) -> Result<(), DbError> {
    client(pool)
        .await?
        .execute(
            "UPDATE tasks SET publish_attempts = publish_attempts + 1,
                 status_reason = 'publish failed: ' || $2, updated_at = now() WHERE id = $1",
            &[&id, &error],
        )
        .await?;
    Ok(())
}

/// Queued tasks the broker never confirmed (a failed publish, or a puller that died between
/// recording and publishing), rebuilt as messages, oldest first.
pub async fn unpublished(
    pool: &Pool,
    older_than_secs: f64,
) -> Result<Vec<(i64, TaskMsg)>, DbError> {
    let rows = client(pool)
        .await?
        .query(
            "SELECT t.id, t.task_id, t.kind, t.prompt, t.validation_threshold,
                    t.throttle_period_s,
                    (extract(epoch FROM t.pulled_at) * 1000)::int8,
                    (extract(epoch FROM t.deadline_at) * 1000)::int8,
                    v.uid, v.hotkey, host(v.ip), v.port
             FROM tasks t JOIN validators v ON v.id = t.validator_id
             WHERE t.status = $2 AND t.published_at IS NULL AND t.prompt IS NOT NULL
               AND t.pulled_at < now() - make_interval(secs => $1) AND t.deadline_at > now()
             ORDER BY t.pulled_at LIMIT 100",
            &[&older_than_secs, &TaskStatus::Queued.as_str()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let kind: String = r.get(2);
            let uid: Option<i32> = r.get(8);
            let port: Option<i32> = r.get(11);
            let msg = TaskMsg {
                task_id: r.get(1),
                validator: ValidatorRef {
                    uid: uid.and_then(|u| u16::try_from(u).ok()).unwrap_or_default(),
                    hotkey: r.get(9),
                    ip: r.get::<_, Option<String>>(10).unwrap_or_default(),
                    port: port.and_then(|p| u16::try_from(p).ok()).unwrap_or_default(),
                },
                kind: if kind == "image" {
                    TaskKind::Image
                } else {
                    TaskKind::Text
                },
                prompt: r.get::<_, Option<String>>(3).unwrap_or_default(),
                validation_threshold: r.get(4),
                throttle_period_secs: u32::try_from(r.get::<_, i32>(5)).unwrap_or_default(),
                pulled_at_unix_ms: r.get(6),
                deadline_unix_ms: r.get(7),
            };
            (r.get(0), msg)
        })
        .collect())
}

/// An open task past its deadline and grace with no submission: the fleet lost it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostTask {
    pub id: i64,
    pub hotkey: String,
    pub task_id: String,
    pub prompt: String,
}

/// [`lost_tasks`]' statement: the terminal list is written out so the open-tasks index
/// (`tasks_open_idx`, same list) serves it.
static LOST_TASKS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT t.id, v.hotkey, t.task_id, t.prompt FROM tasks t
         JOIN validators v ON v.id = t.validator_id
         LEFT JOIN submissions s ON s.task_id = t.id
         WHERE t.status NOT IN ({terminal})
           AND t.deadline_at + make_interval(secs => $1) < now()
           AND t.prompt IS NOT NULL
           AND (s.id IS NULL OR (s.empty AND s.state = 'failed'))",
        terminal = TaskStatus::terminal_sql_list()
    )
});

/// Open tasks whose deadline passed more than `grace_secs` ago and that have no submission
/// (or only a failed release of ours).
pub async fn lost_tasks(pool: &Pool, grace_secs: u64) -> Result<Vec<LostTask>, DbError> {
    let grace = grace_secs as f64;
    let rows = client(pool)
        .await?
        .query(&*LOST_TASKS_SQL, &[&grace])
        .await?;
    Ok(rows
        .iter()
        .map(|r| LostTask {
            id: r.get(0),
            hotkey: r.get(1),
            task_id: r.get(2),
            prompt: r.get(3),
        })
        .collect())
}

/// The task row for `msg`; a task the puller never recorded is recorded now ("adopted"), so
/// the result is still submitted and everything about it kept.
pub async fn find_or_adopt_task(pool: &Pool, msg: &ResultMsg) -> Result<TaskRow, DbError> {
    let mut client = client(pool).await?;
    let select = "SELECT t.id, t.status, extract(epoch FROM t.pulled_at)::float8,
                         extract(epoch FROM t.deadline_at)::float8
                  FROM tasks t JOIN validators v ON v.id = t.validator_id
                  WHERE v.hotkey = $1 AND t.task_id = $2";
    let row_of = |r: &tokio_postgres::Row| TaskRow::of(r);
    let statement = prepared(&client, select).await?;
    if let Some(row) = client
        .query_opt(&statement, &[&msg.validator.hotkey, &msg.task_id])
        .await?
    {
        return Ok(row_of(&row));
    }
    tracing::warn!(task_id = %msg.task_id, validator = %msg.validator.hotkey, "no task row for this result; recording the task from the result");
    let tx = client.transaction().await?;
    let uid = i32::from(msg.validator.uid);
    let port = i32::from(msg.validator.port).max(1);
    let ip = msg
        .validator
        .ip
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string());
    tx.execute(
        "INSERT INTO validators (hotkey, uid, ip, port, source)
         VALUES ($1, $2, $3::text::inet, $4, 'static') ON CONFLICT (hotkey) DO NOTHING",
        &[&msg.validator.hotkey, &uid, &ip, &port],
    )
    .await?;
    tx.execute(
        "INSERT INTO validator_state (validator_id)
         SELECT id FROM validators WHERE hotkey = $1 ON CONFLICT DO NOTHING",
        &[&msg.validator.hotkey],
    )
    .await?;
    let pulled_ms = msg
        .attempts
        .iter()
        .map(|a| a.started_at_unix_ms)
        .min()
        .unwrap_or(msg.finished_at_unix_ms)
        .min(msg.finished_at_unix_ms);
    let pulled = pulled_ms as f64 / 1000.0;
    let deadline = msg.finished_at_unix_ms as f64 / 1000.0;
    let prompt_sha256 = crate::artifacts::sha256_hex(msg.prompt.as_bytes());
    tx.execute(
        "INSERT INTO tasks (validator_id, task_id, kind, prompt_sha256, prompt, pulled_at,
                            deadline_at, validation_threshold, throttle_period_s, status,
                            status_reason)
         SELECT id, $2, $3, $4, $5, to_timestamp($6), to_timestamp($7), $8, 0, $9,
                'recorded by the submitter: the puller had no row for it'
         FROM validators WHERE hotkey = $1
         ON CONFLICT (validator_id, task_id) DO NOTHING",
        &[
            &msg.validator.hotkey,
            &msg.task_id,
            &kind_str(msg.kind),
            &prompt_sha256,
            &msg.prompt,
            &pulled,
            &deadline,
            &ASSUMED_VALIDATION_THRESHOLD,
            &TaskStatus::Generated.as_str(),
        ],
    )
    .await?;
    let row = tx
        .query_one(select, &[&msg.validator.hotkey, &msg.task_id])
        .await?;
    tx.commit().await?;
    Ok(row_of(&row))
}
