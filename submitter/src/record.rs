//! Everything the submitter reads from and writes to Postgres, keeping the puller's contract
//! (puller/src/record.rs): the task's one `submissions` row is claimed with
//! `INSERT ... ON CONFLICT (task_id) DO NOTHING` (or taken over once a dead sender's lease ran
//! out) before anything is sent; each send bumps `tries` and renews the lease; and one
//! transaction records the task's terminal status, every attempt of the `ResultMsg`, the
//! submission with its feedback, `submissions.cooldown_until` and
//! `validator_state.cooldown_until`.
//!
//! Round trips: the normal path (a result for a task the puller recorded, no submission row
//! yet) is one statement before the send ([`claim_first`]: task lookup, claim and the first
//! send's mark) and one after it ([`finish`]); every statement is prepared once per pooled
//! connection. Anything else (an unknown task, a row already there) goes the step-by-step
//! way: [`find_or_adopt_task`], [`submission_state`], [`claim`], [`mark_sending`].
//!
//! A `'sending'` row whose `claimed_by` is NULL is the puller's (an empty release of a lost
//! task): the submitter leaves it alone.

use std::sync::LazyLock;

use splatfleet_common::{
    db::{DbError, Pool},
    messages::{ResultMsg, ResultOutcome, TaskKind},
    protocol::sn17::Feedback,
};

/// The validation threshold assumed for a task the puller never recorded (v45's default).
const ASSUMED_VALIDATION_THRESHOLD: f32 = 0.6;

/// The task row a result answers.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub id: i64,
    pub status: String,
    pub pulled_at_secs: f64,
    pub deadline_secs: f64,
}

/// The task's submission row as found before sending.
#[derive(Debug, Clone, PartialEq)]
pub enum SubmissionState {
    /// No row: nobody has claimed the task.
    Unclaimed,
    /// Finished (`completed` or `failed`): never sent again.
    Finished { state: String },
    /// The puller is releasing the task with an empty submission.
    PullerReleasing,
    /// A submitter is sending (or died sending); `lease_left_secs` ≤ 0 once it ran out.
    Sending {
        claimed_by: String,
        lease_left_secs: f64,
    },
}

/// What a claim came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Ours; `tries` sends were recorded before (non-zero: an interrupted send).
    Claimed { tries: u32 },
    /// Someone else has it.
    Taken(SubmissionState),
}

async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, DbError> {
    Ok(pool.get().await?)
}

/// `sql` prepared once per pooled connection: a statement prepared on the fly costs a round
/// trip of its own before it runs.
async fn prepared(
    client: &deadpool_postgres::Object,
    sql: &str,
) -> Result<tokio_postgres::Statement, DbError> {
    Ok(client.prepare_cached(sql).await?)
}

fn kind_str(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Text => "text",
        TaskKind::Image => "image",
    }
}

/// The task row for `msg`; a task the puller never recorded is recorded now ("adopted"), so
/// the result is still submitted and everything about it kept.
pub async fn find_or_adopt_task(pool: &Pool, msg: &ResultMsg) -> Result<TaskRow, DbError> {
    let mut client = client(pool).await?;
    let select = "SELECT t.id, t.status, extract(epoch FROM t.pulled_at)::float8,
                         extract(epoch FROM t.deadline_at)::float8
                  FROM tasks t JOIN validators v ON v.id = t.validator_id
                  WHERE v.hotkey = $1 AND t.task_id = $2";
    let row_of = |r: &tokio_postgres::Row| TaskRow {
        id: r.get(0),
        status: r.get(1),
        pulled_at_secs: r.get(2),
        deadline_secs: r.get(3),
    };
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
    let prompt_sha256 = splatfleet_common::artifacts::sha256_hex(msg.prompt.as_bytes());
    tx.execute(
        "INSERT INTO tasks (validator_id, task_id, kind, prompt_sha256, prompt, pulled_at,
                            deadline_at, validation_threshold, throttle_period_s, status,
                            status_reason)
         SELECT id, $2, $3, $4, $5, to_timestamp($6), to_timestamp($7), $8, 0, 'generated',
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
        ],
    )
    .await?;
    let row = tx
        .query_one(select, &[&msg.validator.hotkey, &msg.task_id])
        .await?;
    tx.commit().await?;
    Ok(row_of(&row))
}

/// The task's submission row, as it stands.
pub async fn submission_state(pool: &Pool, task_row: i64) -> Result<SubmissionState, DbError> {
    let client = client(pool).await?;
    let statement = prepared(
        &client,
        "SELECT state, claimed_by,
                coalesce(extract(epoch FROM lease_until - now()), 0)::float8
         FROM submissions WHERE task_id = $1",
    )
    .await?;
    let row = client.query_opt(&statement, &[&task_row]).await?;
    Ok(match row {
        None => SubmissionState::Unclaimed,
        Some(row) => {
            let state: String = row.get(0);
            let claimed_by: Option<String> = row.get(1);
            match (state.as_str(), claimed_by) {
                ("sending", None) => SubmissionState::PullerReleasing,
                ("sending", Some(claimed_by)) => SubmissionState::Sending {
                    claimed_by,
                    lease_left_secs: row.get(2),
                },
                _ => SubmissionState::Finished { state },
            }
        }
    })
}

/// What the claim writes on the submission row.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    pub claimed_by: &'a str,
    pub lease_secs: f64,
    pub empty_reason: Option<&'a str>,
    pub worker: &'a str,
    pub local_score: Option<f32>,
    /// When the worker finished the result (`ResultMsg::finished_at_unix_ms`).
    pub result_finished_unix_ms: i64,
}

/// What [`claim_first`] came to.
#[derive(Debug, Clone, PartialEq)]
pub enum FirstClaim {
    /// The task had no submission row: it is ours now, marked as sent once (`tries` = 1,
    /// `sent_at` and the lease set, as [`mark_sending`] leaves them).
    Claimed(TaskRow),
    /// The task has a submission row already: read it and claim the step-by-step way.
    Existing(TaskRow),
    /// No task row (the puller never recorded it): [`find_or_adopt_task`].
    UnknownTask,
}

/// The normal path's one statement before the send: finds the task of `hotkey`/`task_id`
/// and, when nobody has a submission row for it yet, inserts ours already counting the send
/// about to happen. A row that exists is left untouched (`ON CONFLICT DO NOTHING`), so
/// redeliveries, take-overs and the puller's releases go through [`submission_state`] and
/// [`claim`] as before.
pub async fn claim_first(
    pool: &Pool,
    hotkey: &str,
    task_id: &str,
    request: &ClaimRequest<'_>,
) -> Result<FirstClaim, DbError> {
    let client = client(pool).await?;
    let statement = prepared(
        &client,
        "WITH task AS (
             SELECT t.id, t.status, extract(epoch FROM t.pulled_at)::float8 AS pulled,
                    extract(epoch FROM t.deadline_at)::float8 AS deadline
             FROM tasks t JOIN validators v ON v.id = t.validator_id
             WHERE v.hotkey = $1::text AND t.task_id = $2::text
         ), claimed AS (
             INSERT INTO submissions (task_id, empty, empty_reason, state, tries, claimed_by,
                                      lease_until, sent_at, worker, local_score,
                                      result_finished_at)
             SELECT task.id, $3::boolean, $4::text, 'sending', 1, $5::text,
                    now() + make_interval(secs => $6::float8), now(), $7::text, $8::real,
                    to_timestamp($9::float8 / 1000)
             FROM task
             ON CONFLICT (task_id) DO NOTHING
             RETURNING task_id
         )
         SELECT task.id, task.status, task.pulled, task.deadline, claimed.task_id IS NOT NULL
         FROM task LEFT JOIN claimed ON claimed.task_id = task.id",
    )
    .await?;
    let row = client
        .query_opt(
            &statement,
            &[
                &hotkey,
                &task_id,
                &request.empty_reason.is_some(),
                &request.empty_reason,
                &request.claimed_by,
                &request.lease_secs,
                &request.worker,
                &request.local_score,
                &(request.result_finished_unix_ms as f64),
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(FirstClaim::UnknownTask);
    };
    let task = TaskRow {
        id: row.get(0),
        status: row.get(1),
        pulled_at_secs: row.get(2),
        deadline_secs: row.get(3),
    };
    Ok(if row.get::<_, bool>(4) {
        FirstClaim::Claimed(task)
    } else {
        FirstClaim::Existing(task)
    })
}

/// Claims the task's one submission: a new row, or a `sending` row of a submitter whose
/// lease ran out (its send was interrupted) or of this same submitter.
pub async fn claim(
    pool: &Pool,
    task_row: i64,
    request: &ClaimRequest<'_>,
) -> Result<Claim, DbError> {
    let empty = request.empty_reason.is_some();
    let client = client(pool).await?;
    let statement = prepared(
        &client,
        "INSERT INTO submissions (task_id, empty, empty_reason, state, tries, claimed_by,
                                  lease_until, worker, local_score, result_finished_at)
         VALUES ($1, $2, $3, 'sending', 0, $4, now() + make_interval(secs => $5), $6, $7,
                 to_timestamp($8::float8 / 1000))
         ON CONFLICT (task_id) DO UPDATE SET claimed_by = EXCLUDED.claimed_by,
             lease_until = EXCLUDED.lease_until
         WHERE submissions.state = 'sending' AND submissions.claimed_by IS NOT NULL
           AND (submissions.claimed_by = EXCLUDED.claimed_by
                OR submissions.lease_until < now())
         RETURNING tries",
    )
    .await?;
    let claimed = client
        .query_opt(
            &statement,
            &[
                &task_row,
                &empty,
                &request.empty_reason,
                &request.claimed_by,
                &request.lease_secs,
                &request.worker,
                &request.local_score,
                &(request.result_finished_unix_ms as f64),
            ],
        )
        .await?;
    drop(client);
    match claimed {
        Some(row) => Ok(Claim::Claimed {
            tries: u32::try_from(row.get::<_, i16>(0)).unwrap_or(0),
        }),
        None => Ok(Claim::Taken(submission_state(pool, task_row).await?)),
    }
}

/// Records one more send on our claimed row and renews the lease; `None` when the row is no
/// longer ours.
pub async fn mark_sending(
    pool: &Pool,
    task_row: i64,
    claimed_by: &str,
    lease_secs: f64,
) -> Result<Option<u32>, DbError> {
    let client = client(pool).await?;
    let statement = prepared(
        &client,
        "UPDATE submissions SET tries = least(tries + 1, 32767), sent_at = now(),
             lease_until = now() + make_interval(secs => $3)
         WHERE task_id = $1 AND claimed_by = $2 AND state = 'sending'
         RETURNING tries",
    )
    .await?;
    let row = client
        .query_opt(&statement, &[&task_row, &claimed_by, &lease_secs])
        .await?;
    Ok(row.map(|r| u32::try_from(r.get::<_, i16>(0)).unwrap_or(0)))
}

/// Lets the lease run out now (the role is stopping mid-way): the redelivered result is
/// taken over at once.
pub async fn release_lease(pool: &Pool, task_row: i64, claimed_by: &str) -> Result<(), DbError> {
    client(pool)
        .await?
        .execute(
            "UPDATE submissions SET lease_until = now()
             WHERE task_id = $1 AND claimed_by = $2 AND state = 'sending'",
            &[&task_row, &claimed_by],
        )
        .await?;
    Ok(())
}

/// How the submission ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// The validator answered.
    Answered {
        feedback: Option<Feedback>,
        /// Unix seconds; 0 when the answer carried none.
        cooldown_until: i64,
        latency_ms: u32,
    },
    /// A permanent refusal (401, 403, other 4xx, unusable answer).
    Refused {
        status: Option<u16>,
        error: String,
        latency_ms: u32,
    },
    /// Transient failures until the try limit or the deadline.
    GaveUp { status: Option<u16>, error: String },
}

fn gpu_of(worker: &str) -> Option<i16> {
    worker
        .rsplit('/')
        .next()
        .and_then(|last| last.strip_prefix("gpu"))
        .and_then(|n| n.parse().ok())
}

fn json_of<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_else(|_| serde_json::json!({}))
}

/// A result's attempts as one array per column, so one statement inserts them all.
struct AttemptColumns {
    worker: String,
    gpu: Option<i16>,
    attempt_no: Vec<i16>,
    params: Vec<serde_json::Value>,
    started: Vec<f64>,
    finished: Vec<f64>,
    stage_ms: Vec<serde_json::Value>,
    gaussians: Vec<Option<i32>>,
    local_score: Vec<Option<f32>>,
    gate_passed: Vec<Option<bool>>,
    gate_metrics: Vec<serde_json::Value>,
    ply_key: Vec<Option<String>>,
    ply_sha256: Vec<Option<String>>,
    ply_bytes: Vec<Option<i64>>,
    spz_key: Vec<Option<String>>,
    spz_sha256: Vec<Option<String>>,
    spz_bytes: Vec<Option<i64>>,
    preview_key: Vec<Option<String>>,
    error: Vec<Option<String>>,
    /// The chosen attempt's `attempt_no` for a ready result.
    chosen_no: Option<i16>,
}

/// How many parameters [`AttemptColumns::params`] gives.
const ATTEMPT_PARAMS: usize = 19;

impl AttemptColumns {
    fn of(msg: &ResultMsg) -> Self {
        let chosen = match &msg.outcome {
            ResultOutcome::Ready {
                chosen_attempt,
                spz,
                preview,
                ..
            } => Some((usize::from(*chosen_attempt), spz.as_ref(), preview.as_ref())),
            ResultOutcome::Empty { .. } => None,
        };
        let n = msg.attempts.len();
        let mut columns = Self {
            worker: msg.worker.clone(),
            gpu: gpu_of(&msg.worker),
            attempt_no: Vec::with_capacity(n),
            params: Vec::with_capacity(n),
            started: Vec::with_capacity(n),
            finished: Vec::with_capacity(n),
            stage_ms: Vec::with_capacity(n),
            gaussians: Vec::with_capacity(n),
            local_score: Vec::with_capacity(n),
            gate_passed: Vec::with_capacity(n),
            gate_metrics: Vec::with_capacity(n),
            ply_key: Vec::with_capacity(n),
            ply_sha256: Vec::with_capacity(n),
            ply_bytes: Vec::with_capacity(n),
            spz_key: Vec::with_capacity(n),
            spz_sha256: Vec::with_capacity(n),
            spz_bytes: Vec::with_capacity(n),
            preview_key: Vec::with_capacity(n),
            error: Vec::with_capacity(n),
            chosen_no: chosen.map(|(index, _, _)| attempt_no_of(index)),
        };
        let bytes = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for (index, attempt) in msg.attempts.iter().enumerate() {
            let started = attempt.started_at_unix_ms as f64 / 1000.0;
            let took_ms: u64 = attempt.stage_ms.values().map(|&ms| u64::from(ms)).sum();
            let (spz, preview) = match chosen {
                Some((chosen_index, spz, preview)) if chosen_index == index => (spz, preview),
                _ => (None, None),
            };
            let ply = attempt.ply.as_ref();
            columns.attempt_no.push(attempt_no_of(index));
            columns.params.push(json_of(&attempt.params));
            columns.started.push(started);
            columns.finished.push(started + took_ms as f64 / 1000.0);
            columns.stage_ms.push(json_of(&attempt.stage_ms));
            columns.gaussians.push(
                attempt
                    .gaussian_count
                    .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            );
            columns
                .local_score
                .push(attempt.local_score.filter(|s| s.is_finite()));
            columns.gate_passed.push(attempt.gate_passed);
            columns.gate_metrics.push(json_of(&attempt.gate_metrics));
            columns.ply_key.push(ply.map(|a| a.key.clone()));
            columns
                .ply_sha256
                .push(ply.map(|a| a.sha256.to_ascii_lowercase()));
            columns.ply_bytes.push(ply.map(|a| bytes(a.bytes)));
            columns.spz_key.push(spz.map(|a| a.key.clone()));
            columns
                .spz_sha256
                .push(spz.map(|a| a.sha256.to_ascii_lowercase()));
            columns.spz_bytes.push(spz.map(|a| bytes(a.bytes)));
            columns.preview_key.push(preview.map(|a| a.key.clone()));
            columns.error.push(attempt.error.clone());
        }
        columns
    }

    /// The parameters of [`insert_attempts_sql`], in its order.
    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); ATTEMPT_PARAMS] {
        [
            &self.worker,
            &self.gpu,
            &self.attempt_no,
            &self.params,
            &self.started,
            &self.finished,
            &self.stage_ms,
            &self.gaussians,
            &self.local_score,
            &self.gate_passed,
            &self.gate_metrics,
            &self.ply_key,
            &self.ply_sha256,
            &self.ply_bytes,
            &self.spz_key,
            &self.spz_sha256,
            &self.spz_bytes,
            &self.preview_key,
            &self.error,
        ]
    }
}

fn attempt_no_of(index: usize) -> i16 {
    i16::try_from(index + 1).unwrap_or(i16::MAX)
}

/// Inserts every attempt of a result in one statement (idempotent: a redelivery writes
/// nothing twice), for the task row `task` (an SQL expression over `from`), taking the
/// [`AttemptColumns::params`] as `$first` onwards; returns the new rows' `id, attempt_no`.
fn insert_attempts_sql(task: &str, from: &str, first: usize) -> String {
    let p = |i: usize| format!("${}", first + i);
    format!(
        "INSERT INTO attempts (task_id, attempt_no, worker, gpu, params, started_at,
                               finished_at, stage_ms, gaussian_count, local_score, gate_passed,
                               gate_metrics, ply_key, ply_sha256, ply_bytes, spz_key,
                               spz_sha256, spz_bytes, preview_key, error, gate_mode,
                               predicted_score, predicted_iqa, predicted_alignment,
                               predicted_ssim, predicted_lpips, alignment_assumed)
         SELECT {task}, a.attempt_no, {worker}::text, {gpu}::smallint, a.params,
                to_timestamp(a.started), to_timestamp(a.finished), a.stage_ms, a.gaussians,
                a.local_score, a.gate_passed, a.gate_metrics, a.ply_key, a.ply_sha256,
                a.ply_bytes, a.spz_key, a.spz_sha256, a.spz_bytes, a.preview_key, a.error,
                {gate_mode}, {predicted}
         FROM {from}unnest({}::smallint[], {}::jsonb[], {}::float8[], {}::float8[],
                     {}::jsonb[], {}::integer[], {}::real[], {}::boolean[], {}::jsonb[],
                     {}::text[], {}::text[], {}::bigint[], {}::text[], {}::text[],
                     {}::bigint[], {}::text[], {}::text[])
              AS a(attempt_no, params, started, finished, stage_ms, gaussians, local_score,
                   gate_passed, gate_metrics, ply_key, ply_sha256, ply_bytes, spz_key,
                   spz_sha256, spz_bytes, preview_key, error)
         ORDER BY a.attempt_no
         ON CONFLICT (task_id, attempt_no) DO NOTHING
         RETURNING id, attempt_no",
        p(2),
        p(3),
        p(4),
        p(5),
        p(6),
        p(7),
        p(8),
        p(9),
        p(10),
        p(11),
        p(12),
        p(13),
        p(14),
        p(15),
        p(16),
        p(17),
        p(18),
        worker = p(0),
        gpu = p(1),
        gate_mode = GATE_MODE_SQL,
        predicted = predicted_sql(),
    )
}

/// The gate mode an attempt's metrics name (`<mode key> = 1`, `worker::gate::gate_mode_metric`);
/// NULL when it never reached the gate.
const GATE_MODE_SQL: &str = "CASE WHEN a.gate_metrics ? 'gate_mode_validator' THEN 'validator'
                     WHEN a.gate_metrics ? 'gate_mode_geometry' THEN 'geometry'
                     WHEN a.gate_metrics ? 'validity_only' THEN 'validity_only'
                END";

/// The predicted score and its parts from the attempt's metrics, in the columns' order (a
/// number, or NULL: a NaN travels as JSON null), and whether alignment was assumed.
fn predicted_sql() -> String {
    let number = |key: &str| {
        format!(
            "CASE WHEN jsonb_typeof(a.gate_metrics -> '{key}') = 'number'
                     THEN (a.gate_metrics ->> '{key}')::float8 END"
        )
    };
    let mut columns: Vec<String> = [
        "predicted_score",
        "predicted_iqa",
        "predicted_alignment",
        "predicted_ssim",
        "predicted_lpips",
    ]
    .iter()
    .map(|key| number(key))
    .collect();
    columns.push(format!("({}) <> 0", number("alignment_assumed")));
    columns.join(",\n                ")
}

/// [`record_attempts`]' statement: the task row is `$1`.
static RECORD_ATTEMPTS_SQL: LazyLock<String> =
    LazyLock::new(|| insert_attempts_sql("$1::bigint", "", 2));

/// Inserts the result's attempts (idempotent: a redelivery writes nothing twice).
async fn record_attempts(
    client: &impl deadpool_postgres::GenericClient,
    task_row: i64,
    msg: &ResultMsg,
) -> Result<(), DbError> {
    let columns = AttemptColumns::of(msg);
    let statement = client.prepare_cached(&RECORD_ATTEMPTS_SQL).await?;
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&task_row];
    params.extend(columns.params());
    client.execute(&statement, &params).await?;
    Ok(())
}

/// [`finish`]'s one statement. Parameters: `$1` task row, `$2` our instance, the
/// [`AttemptColumns::params`] from `$3`, then the chosen attempt's number and the outcome
/// (see [`finish`]). The submission row is locked first (`mine`): when it is no longer ours
/// nothing at all is written, attempts included, as a rolled-back transaction would leave it.
static FINISH_SQL: LazyLock<String> = LazyLock::new(|| {
    let chosen = 3 + ATTEMPT_PARAMS;
    let p = |i: usize| format!("${}", chosen + i);
    format!(
        "WITH mine AS (
             SELECT task_id FROM submissions
             WHERE task_id = $1::bigint AND claimed_by = $2::text AND state = 'sending'
             FOR UPDATE
         ), inserted AS (
             {insert}
         ), done AS (
             UPDATE submissions SET state = {state}::text,
                 attempt_id = coalesce(
                     (SELECT id FROM inserted WHERE attempt_no = {chosen}::smallint),
                     (SELECT id FROM attempts
                      WHERE task_id = $1::bigint AND attempt_no = {chosen}::smallint)),
                 http_status = {http}::smallint, error = {error}::text,
                 latency_ms = {latency}::integer, completed_at = now(), lease_until = NULL,
                 validation_failed = {failed}::boolean, task_fidelity_score = {fidelity}::real,
                 average_fidelity_score = {average}::real,
                 generations_within_the_window = {generations}::integer,
                 current_duel_rating = {rating}::real, current_miner_reward = {reward}::real,
                 cooldown_until = to_timestamp({cooldown}::float8)
             FROM mine WHERE submissions.task_id = mine.task_id
             RETURNING submissions.task_id
         ), task AS (
             UPDATE tasks SET status = {task_status}::text, status_reason = {reason}::text,
                 updated_at = now()
             FROM done WHERE tasks.id = done.task_id
             RETURNING tasks.validator_id
         ), cooled AS (
             UPDATE validator_state SET cooldown_until =
                 greatest(validator_state.cooldown_until, to_timestamp({cooldown}::float8)),
                 updated_at = now()
             FROM task
             WHERE {cooldown}::float8 IS NOT NULL
               AND validator_state.validator_id = task.validator_id
         )
         SELECT count(*) FROM done",
        insert = insert_attempts_sql("mine.task_id", "mine, ", 3),
        chosen = p(0),
        state = p(1),
        http = p(2),
        error = p(3),
        latency = p(4),
        failed = p(5),
        fidelity = p(6),
        average = p(7),
        generations = p(8),
        rating = p(9),
        reward = p(10),
        cooldown = p(11),
        task_status = p(12),
        reason = p(13),
    )
});

/// One statement (atomic on its own): the attempts, the submission with its feedback, the
/// task's terminal status and the validator's cooldown. `false` when the row was no longer
/// ours (nothing is written then).
pub async fn finish(
    pool: &Pool,
    task_row: i64,
    claimed_by: &str,
    msg: &ResultMsg,
    outcome: &Finish,
) -> Result<bool, DbError> {
    let client = client(pool).await?;
    let columns = AttemptColumns::of(msg);
    let empty = matches!(msg.outcome, ResultOutcome::Empty { .. });
    let (state, http, error, latency_ms, task_status, reason): (
        &str,
        Option<i16>,
        Option<&str>,
        Option<i32>,
        &str,
        String,
    ) = match outcome {
        Finish::Answered { latency_ms, .. } => (
            "completed",
            Some(200),
            None,
            Some(i32::try_from(*latency_ms).unwrap_or(i32::MAX)),
            if empty {
                "submitted_empty"
            } else {
                "submitted"
            },
            if empty {
                "submitted empty: the worker had nothing worth submitting".into()
            } else {
                "submitted".into()
            },
        ),
        Finish::Refused {
            status,
            error,
            latency_ms,
        } => (
            "failed",
            status.and_then(|s| i16::try_from(s).ok()),
            Some(error.as_str()),
            Some(i32::try_from(*latency_ms).unwrap_or(i32::MAX)),
            "failed",
            format!("submission refused: {error}"),
        ),
        Finish::GaveUp { status, error } => (
            "failed",
            status.and_then(|s| i16::try_from(s).ok()),
            Some(error.as_str()),
            None,
            "failed",
            format!("submission not delivered: {error}"),
        ),
    };
    let (feedback, cooldown) = match outcome {
        Finish::Answered {
            feedback,
            cooldown_until,
            ..
        } => (
            feedback.clone(),
            (*cooldown_until > 0).then_some(*cooldown_until as f64),
        ),
        _ => (None, None),
    };
    let f = feedback.as_ref();
    let generations = f.map(|f| i32::try_from(f.generations_within_the_window).unwrap_or(i32::MAX));
    let statement = prepared(&client, &FINISH_SQL).await?;
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&task_row, &claimed_by];
    params.extend(columns.params());
    let validation_failed = f.map(|f| f.validation_failed);
    let fidelity = f.map(|f| f.task_fidelity_score as f32);
    let average = f.map(|f| f.average_fidelity_score as f32);
    let rating = f.map(|f| f.current_duel_rating as f32);
    let reward = f.map(|f| f.current_miner_reward as f32);
    params.extend([
        &columns.chosen_no as &(dyn tokio_postgres::types::ToSql + Sync),
        &state,
        &http,
        &error,
        &latency_ms,
        &validation_failed,
        &fidelity,
        &average,
        &generations,
        &rating,
        &reward,
        &cooldown,
        &task_status,
        &reason,
    ]);
    let done: i64 = client.query_one(&statement, &params).await?.get(0);
    Ok(done > 0)
}

/// Records the attempts of a result that arrived after its task was already answered or
/// released, without touching the submission.
pub async fn record_late(pool: &Pool, task_row: i64, msg: &ResultMsg) -> Result<(), DbError> {
    let client = client(pool).await?;
    record_attempts(&client, task_row, msg).await
}

/// Records a result whose model could not be loaded: its attempts and the reason on the task,
/// which stays open without a submission, so the puller releases it once it is lost.
pub async fn record_unloadable(
    pool: &Pool,
    task_row: i64,
    msg: &ResultMsg,
    reason: &str,
) -> Result<(), DbError> {
    let mut client = client(pool).await?;
    let tx = client.transaction().await?;
    record_attempts(&tx, task_row, msg).await?;
    tx.execute(
        "UPDATE tasks SET status = 'generated', status_reason = $2, updated_at = now()
         WHERE id = $1 AND status NOT IN ('submitted', 'submitted_empty', 'expired', 'failed')",
        &[
            &task_row,
            &format!("submitter could not load the result: {reason}"),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
