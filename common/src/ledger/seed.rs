//! **For tests and tools only** (behind the `test-support` feature; no role enables it):
//! states the roles never write in that shape but tests need, each set up by one statement
//! here so that no INSERT, UPDATE or DELETE on `tasks`, `submissions` or `attempts` lives
//! outside the ledger, tests included. Everything the normal API can produce goes through
//! it instead ([`super::insert_task`], [`super::claim()`], [`super::finish()`], …): a
//! lease held by another submitter is a [`super::claim()`] with its `claimed_by` and lease, a
//! finished submission a [`super::finish()`].

use super::{client, status::TaskStatus};
use crate::db::{DbError, Pool};

/// Moves the task's submission back in time by `secs`: its `created_at`, `sent_at` and
/// `completed_at` (whichever are set), as if it had been sent and answered that long ago
/// (the reports' `--since` windows, a validator's penalty history).
pub async fn backdate_submission(pool: &Pool, task_row: i64, secs: f64) -> Result<(), DbError> {
    client(pool)
        .await?
        .execute(
            "UPDATE submissions SET created_at = created_at - make_interval(secs => $2),
                 sent_at = sent_at - make_interval(secs => $2),
                 completed_at = completed_at - make_interval(secs => $2)
             WHERE task_id = $1",
            &[&task_row, &secs],
        )
        .await?;
    Ok(())
}

/// Records `per_validator` tasks for every validator in one statement, all with `status`,
/// the `n`-th (from 1) pulled `n` seconds ago with its deadline now and task id
/// `bulk-<validator row>-<n>`: a table the size of weeks of pulls, for query-plan tests.
/// Returns the number of rows inserted.
pub async fn insert_tasks_bulk(
    pool: &Pool,
    per_validator: u32,
    status: TaskStatus,
) -> Result<u64, DbError> {
    let per_validator = i32::try_from(per_validator).unwrap_or(i32::MAX);
    Ok(client(pool)
        .await?
        .execute(
            "INSERT INTO tasks (validator_id, task_id, kind, prompt_sha256, prompt, pulled_at,
                                deadline_at, validation_threshold, throttle_period_s, status)
             SELECT v.id, 'bulk-' || v.id || '-' || g, 'text', repeat('a', 64), 'a teapot',
                    now() - make_interval(secs => g), now(), 0.6, 30, $2
             FROM validators v, generate_series(1, $1) g",
            &[&per_validator, &status.as_str()],
        )
        .await?)
}
