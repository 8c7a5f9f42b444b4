//! Claiming a task's one submission row before anything is sent, and the lease that keeps it:
//! [`claim`] is the one claim statement (a submitter's claim, its take-over of a dead sender's
//! row, and the puller's request of an empty release all go through it); [`claim_first`] is the
//! submitter's normal path folded into one round trip (task lookup, claim, first send's mark)
//! that only ever inserts; [`mark_sending`] counts a send and renews the lease.

use super::{client, prepared, status::SubmissionState, tasks::TaskRow};
use crate::db::{DbError, Pool};

/// The task's submission row as found before sending.
#[derive(Debug, Clone, PartialEq)]
pub enum SubmissionRow {
    /// No row: nobody has claimed the task.
    Unclaimed,
    /// Finished (`completed` or `failed`): never sent again.
    Finished { state: SubmissionState },
    /// The task is being released with an empty submission (the puller requested it; a
    /// submitter's release loop sends it).
    Releasing,
    /// A submitter is sending (or died sending); `lease_left_secs` ≤ 0 once it ran out.
    Sending {
        claimed_by: String,
        lease_left_secs: f64,
    },
}

/// What a claim came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Ours; `tries` sends were recorded before (non-zero: an interrupted send, or for a
    /// release request, the sends of the result it replaces).
    Claimed { tries: u32 },
    /// Someone else has it.
    Taken(SubmissionRow),
}

/// Who claims and what the claim writes on the submission row.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    /// The submitter instance; `None` for the puller's request of an empty release.
    pub claimed_by: Option<&'a str>,
    pub lease_secs: f64,
    /// `Some` for an empty submission, with why.
    pub empty_reason: Option<&'a str>,
    pub worker: Option<&'a str>,
    pub local_score: Option<f32>,
    /// When the worker finished the result (`ResultMsg::finished_at_unix_ms`).
    pub result_finished_unix_ms: Option<i64>,
}

impl<'a> ClaimRequest<'a> {
    /// The puller's request of an empty release of a task the fleet lost.
    pub fn release(reason: &'a str) -> Self {
        Self {
            claimed_by: None,
            lease_secs: 0.0,
            empty_reason: Some(reason),
            worker: None,
            local_score: None,
            result_finished_unix_ms: None,
        }
    }
}

/// What [`claim_first`] came to.
#[derive(Debug, Clone, PartialEq)]
pub enum FirstClaim {
    /// The task had no submission row: it is ours now, marked as sent once (`tries` = 1,
    /// `sent_at` and the lease set, as [`mark_sending`] leaves them).
    Claimed(TaskRow),
    /// The task has a submission row already: read it and [`claim`] it.
    Existing(TaskRow),
    /// No task row (the puller never recorded it): `find_or_adopt_task`.
    UnknownTask,
}

/// The one claim statement. A new row, or an existing one taken over:
/// - by a submitter (`claimed_by` set): a `sending` row of a submitter whose lease ran out (its
///   send was interrupted) or of this same submitter; `tries` is kept;
/// - by the puller's release request (`claimed_by` NULL): a `failed` row, whoever failed it
///   (a result the submitter gave up on or the validator refused, or an empty result whose
///   send failed). Either way the validator never processed it and still holds the task;
///   without the release it would hand the same task back on every pull for good. The row
///   becomes a release request (`release::take_releases` hands it to a submitter) that keeps
///   the failed send's error in `empty_reason`.
///
/// `tries` counts sends: a claim never adds one (the send's mark does, and a release's take).
const CLAIM_SQL: &str = "INSERT INTO submissions (task_id, empty, empty_reason, state, tries,
                                  claimed_by, lease_until, worker, local_score,
                                  result_finished_at)
     VALUES ($1, $2, $3, 'sending', 0, $4::text,
             now() + make_interval(secs => CASE WHEN $4::text IS NULL THEN NULL
                                                ELSE $5::float8 END),
             $6, $7, to_timestamp($8::float8 / 1000))
     ON CONFLICT (task_id) DO UPDATE SET state = 'sending',
         claimed_by = EXCLUDED.claimed_by, lease_until = EXCLUDED.lease_until,
         released_by = NULL,
         empty_reason = CASE WHEN submissions.empty OR NOT EXCLUDED.empty
                             THEN submissions.empty_reason
                             ELSE EXCLUDED.empty_reason || '; our result was not delivered: '
                                  || coalesce(submissions.error, 'no error recorded') END,
         empty = submissions.empty OR EXCLUDED.empty,
         attempt_id = CASE WHEN EXCLUDED.claimed_by IS NULL THEN NULL
                           ELSE submissions.attempt_id END
     WHERE CASE WHEN EXCLUDED.claimed_by IS NULL THEN submissions.state = 'failed'
                ELSE submissions.state = 'sending' AND submissions.claimed_by IS NOT NULL
                     AND (submissions.claimed_by = EXCLUDED.claimed_by
                          OR submissions.lease_until < now()) END
     RETURNING tries";

/// Claims the task's one submission (see [`CLAIM_SQL`] for what may be taken over).
pub async fn claim(
    pool: &Pool,
    task_row: i64,
    request: &ClaimRequest<'_>,
) -> Result<Claim, DbError> {
    let client = client(pool).await?;
    let statement = prepared(&client, CLAIM_SQL).await?;
    let claimed = client
        .query_opt(
            &statement,
            &[
                &task_row,
                &request.empty_reason.is_some(),
                &request.empty_reason,
                &request.claimed_by,
                &request.lease_secs,
                &request.worker,
                &request.local_score,
                &request.result_finished_unix_ms.map(|ms| ms as f64),
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

/// The normal path's one statement before the send: finds the task of `hotkey`/`task_id`
/// and, when nobody has a submission row for it yet, inserts ours already counting the send
/// about to happen. A row that exists is left untouched (`ON CONFLICT DO NOTHING`), so
/// redeliveries, take-overs and the puller's releases go through [`submission_state`] and
/// [`claim`].
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
                &request.result_finished_unix_ms.map(|ms| ms as f64),
            ],
        )
        .await?;
    let Some(row) = row else {
        return Ok(FirstClaim::UnknownTask);
    };
    let task = TaskRow::of(&row);
    Ok(if row.get::<_, bool>(4) {
        FirstClaim::Claimed(task)
    } else {
        FirstClaim::Existing(task)
    })
}

/// The task's submission row, as it stands.
pub async fn submission_state(pool: &Pool, task_row: i64) -> Result<SubmissionRow, DbError> {
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
        None => SubmissionRow::Unclaimed,
        Some(row) => {
            let state = SubmissionState::parse(row.get(0)).unwrap_or(SubmissionState::Failed);
            let claimed_by: Option<String> = row.get(1);
            match (state, claimed_by) {
                (SubmissionState::Sending, None) => SubmissionRow::Releasing,
                (SubmissionState::Sending, Some(claimed_by)) => SubmissionRow::Sending {
                    claimed_by,
                    lease_left_secs: row.get(2),
                },
                (state, _) => SubmissionRow::Finished { state },
            }
        }
    })
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
