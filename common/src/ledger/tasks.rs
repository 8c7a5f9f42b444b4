//! Task rows: recorded by the puller as `queued` in the transaction that publishes them
//! (unique per validator and task id), a task the puller never recorded adopted by the
//! submitter from its result, and the lost tasks (past deadline and grace, nothing delivered)
//! the puller releases.

use std::sync::LazyLock;

use super::{client, prepared, status::TaskStatus};
use crate::{
    db::{DbError, Pool},
    messages::{ResultMsg, TaskKind, TaskMsg},
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
    /// A new row, status `queued`.
    Inserted { id: i64 },
    /// The validator handed us a task we already have.
    Existing { id: i64, status: TaskStatus },
}

/// What [`record_task`] did.
#[derive(Debug)]
pub enum Recorded<E> {
    /// A new task: published, confirmed and committed together.
    Published { id: i64 },
    /// The validator handed us a task we already have; nothing was published.
    Existing { id: i64, status: TaskStatus },
    /// The publish failed: the row was rolled back, so the task is not ours on record and the
    /// validator, still holding it, hands it out again on the next pull.
    NotPublished(E),
}

/// The task's row, `queued` and published (`$11`: the publish tries), or nothing when the
/// validator's task is already recorded.
const INSERT_TASK_SQL: &str = "INSERT INTO tasks (validator_id, task_id, kind, prompt_sha256,
        prompt, pulled_at, deadline_at, validation_threshold, throttle_period_s, status,
        published_at, publish_attempts)
     VALUES ($1, $2, $3, $4, $5, to_timestamp($6), to_timestamp($7), $8, $9, $10, now(), $11)
     ON CONFLICT (validator_id, task_id) DO NOTHING RETURNING id";

/// Inserts the row (see [`INSERT_TASK_SQL`]) on `client`, or reads the one already there.
async fn insert_on(
    client: &impl deadpool_postgres::GenericClient,
    validator_id: i64,
    msg: &TaskMsg,
    prompt_sha256: &str,
) -> Result<TaskInsert, DbError> {
    let kind = kind_str(msg.kind);
    let threshold = msg.validation_threshold;
    let throttle = i32::try_from(msg.throttle_period_secs).unwrap_or(i32::MAX);
    let pulled = msg.pulled_at_unix_ms as f64 / 1000.0;
    let deadline = msg.deadline_unix_ms as f64 / 1000.0;
    let statement = client.prepare_cached(INSERT_TASK_SQL).await?;
    let inserted = client
        .query_opt(
            &statement,
            &[
                &validator_id,
                &msg.task_id,
                &kind,
                &prompt_sha256,
                &msg.prompt,
                &pulled,
                &deadline,
                &threshold,
                &throttle,
                &TaskStatus::Queued.as_str(),
                &1i32,
            ],
        )
        .await?;
    if let Some(row) = inserted {
        return Ok(TaskInsert::Inserted { id: row.get(0) });
    }
    let statement = client
        .prepare_cached("SELECT id, status FROM tasks WHERE validator_id = $1 AND task_id = $2")
        .await?;
    let row = client
        .query_one(&statement, &[&validator_id, &msg.task_id])
        .await?;
    Ok(TaskInsert::Existing {
        id: row.get(0),
        status: status_of(row.get(1)),
    })
}

/// Records a task as the puller does once the broker confirmed it, without publishing
/// (tests and tools seed tasks with it; unique per validator + task id).
pub async fn insert_task(
    pool: &Pool,
    validator_id: i64,
    msg: &TaskMsg,
    prompt_sha256: &str,
) -> Result<TaskInsert, DbError> {
    insert_on(&client(pool).await?, validator_id, msg, prompt_sha256).await
}

/// Records a pulled task and publishes it in one transaction: the row is inserted, `publish`
/// returns the tries it took once the broker confirmed, and only then does the row commit.
/// One commit per task and no "recorded but not published" state to sweep: a puller that dies
/// in between leaves no row (the validator hands the task out again), and a message whose
/// commit then failed is adopted by the submitter from its result ([`find_or_adopt_task`]).
pub async fn record_task<F, Fut, E>(
    pool: &Pool,
    validator_id: i64,
    msg: &TaskMsg,
    prompt_sha256: &str,
    publish: F,
) -> Result<Recorded<E>, DbError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<u32, E>>,
{
    let mut client = client(pool).await?;
    let tx = client.transaction().await?;
    let id = match insert_on(&tx, validator_id, msg, prompt_sha256).await? {
        TaskInsert::Inserted { id } => id,
        TaskInsert::Existing { id, status } => {
            tx.commit().await?;
            return Ok(Recorded::Existing { id, status });
        }
    };
    match publish().await {
        Ok(tries) => {
            if tries > 1 {
                let statement = tx
                    .prepare_cached("UPDATE tasks SET publish_attempts = $2 WHERE id = $1")
                    .await?;
                let tries = i32::try_from(tries).unwrap_or(i32::MAX);
                tx.execute(&statement, &[&id, &tries]).await?;
            }
            tx.commit().await?;
            Ok(Recorded::Published { id })
        }
        Err(err) => {
            tx.rollback().await?;
            Ok(Recorded::NotPublished(err))
        }
    }
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
    let client = client(pool).await?;
    let statement = prepared(&client, &LOST_TASKS_SQL).await?;
    let rows = client.query(&statement, &[&grace]).await?;
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
