//! Finishing a submission: one statement records the result's attempts, the submission with
//! the validator's feedback, the task's terminal status and the validator's cooldown, tells
//! the puller (`closed`), and returns the submission's verdict. Also a result that arrived
//! after its task was answered (attempts only) and one whose model could not be loaded (the
//! task stays open).

use std::sync::LazyLock;

use super::{
    attempts::{insert_attempts_sql, record_attempts, AttemptColumns, ATTEMPT_PARAMS},
    client, closed, cooldown, prepared,
    status::{SubmissionState, TaskStatus, Verdict},
};
use crate::{
    db::{DbError, Pool},
    messages::{ResultMsg, ResultOutcome},
    protocol::sn17::Feedback,
};

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
             RETURNING submissions.task_id,
                 submission_verdict(submissions.state, submissions.empty,
                                    submissions.task_fidelity_score,
                                    submissions.validation_failed) AS verdict
         ), task AS (
             UPDATE tasks SET status = {task_status}::text, status_reason = {reason}::text,
                 updated_at = now()
             FROM done WHERE tasks.id = done.task_id
             RETURNING tasks.validator_id, tasks.task_id
         ), cooled AS (
             UPDATE validator_state SET {raise}
             FROM task
             WHERE {cooldown}::float8 IS NOT NULL
               AND validator_state.validator_id = task.validator_id
         )
         SELECT (SELECT verdict FROM done), (SELECT {notify} FROM task)",
        notify = closed::notify_sql(
            "task.validator_id",
            &format!("{}::float8", p(11)),
            "(SELECT verdict FROM done)",
            "task.task_id"
        ),
        insert = insert_attempts_sql("mine.task_id", "mine, ", 3),
        raise = cooldown::raise_sql(&format!("{}::float8", p(11))),
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
/// task's terminal status and the validator's cooldown. Returns the submission's verdict, or
/// `None` when the row was no longer ours (nothing is written then).
pub async fn finish(
    pool: &Pool,
    task_row: i64,
    claimed_by: &str,
    msg: &ResultMsg,
    outcome: &Finish,
) -> Result<Option<Verdict>, DbError> {
    let client = client(pool).await?;
    let columns = AttemptColumns::of(msg);
    let empty = matches!(msg.outcome, ResultOutcome::Empty { .. });
    let (state, http, error, latency_ms, task_status, reason): (
        SubmissionState,
        Option<i16>,
        Option<&str>,
        Option<i32>,
        TaskStatus,
        String,
    ) = match outcome {
        Finish::Answered { latency_ms, .. } => (
            SubmissionState::Completed,
            Some(200),
            None,
            Some(i32::try_from(*latency_ms).unwrap_or(i32::MAX)),
            if empty {
                TaskStatus::SubmittedEmpty
            } else {
                TaskStatus::Submitted
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
            SubmissionState::Failed,
            status.and_then(|s| i16::try_from(s).ok()),
            Some(error.as_str()),
            Some(i32::try_from(*latency_ms).unwrap_or(i32::MAX)),
            TaskStatus::Failed,
            format!("submission refused: {error}"),
        ),
        Finish::GaveUp { status, error } => (
            SubmissionState::Failed,
            status.and_then(|s| i16::try_from(s).ok()),
            Some(error.as_str()),
            None,
            TaskStatus::Failed,
            format!("submission not delivered: {error}"),
        ),
    };
    let (feedback, cooldown) = match outcome {
        Finish::Answered {
            feedback,
            cooldown_until,
            ..
        } => (feedback.clone(), cooldown::answered_until(*cooldown_until)),
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
    let (state, task_status) = (state.as_str(), task_status.as_str());
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
    let verdict: Option<String> = client.query_one(&statement, &params).await?.get(0);
    Ok(verdict.as_deref().and_then(Verdict::parse))
}

/// Records the attempts of a result that arrived after its task was already answered or
/// released, without touching the submission.
pub async fn record_late(pool: &Pool, task_row: i64, msg: &ResultMsg) -> Result<(), DbError> {
    let client = client(pool).await?;
    record_attempts(&client, task_row, msg).await
}

/// [`record_unloadable`]'s task update.
static UNLOADABLE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE tasks SET status = '{generated}', status_reason = $2, updated_at = now()
         WHERE id = $1 AND status NOT IN ({terminal})",
        generated = TaskStatus::Generated,
        terminal = TaskStatus::terminal_sql_list()
    )
});

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
        &*UNLOADABLE_SQL,
        &[
            &task_row,
            &format!("submitter could not load the result: {reason}"),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
