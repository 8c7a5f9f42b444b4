//! The empty release of a task the fleet lost (no result by the deadline, or a send that
//! failed for good while the validator still holds the task). The puller only records the
//! request ([`request_release`]: the one claim statement with no `claimed_by`); a submitter's
//! release loop takes due requests ([`take_releases`]), signs and sends them, and records how
//! each ended ([`finish_release`]): `submitted_empty` (the validator took it), `expired` (it no
//! longer held the task: an assumed cooldown), or, when it did not answer, the request waits
//! for its next try (`lease_until`) with the error kept. So the submitter is the one role that
//! signs; migration 0008 says what the columns mean.

use tokio_postgres::Row;

use super::{
    claim::{claim, Claim, ClaimRequest},
    client, closed, cooldown, prepared,
    status::TaskStatus,
};
use crate::{
    db::{DbError, Pool},
    protocol::sn17::Feedback,
};

/// Records that the task's one submission is to be an empty release (see
/// `claim::CLAIM_SQL` for which rows may be taken over). `false`: a submitter (or an earlier
/// request) already owns it.
pub async fn request_release(pool: &Pool, task_row: i64, reason: &str) -> Result<bool, DbError> {
    Ok(matches!(
        claim(pool, task_row, &ClaimRequest::release(reason)).await?,
        Claim::Claimed { .. }
    ))
}

/// A release request taken by one submitter, with what it needs to sign and send it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseJob {
    /// `tasks.id`.
    pub task_row: i64,
    pub hotkey: String,
    /// The validator's uid, where discovery recorded one (for the metrics' `uid` label).
    pub uid: Option<u16>,
    pub ip: String,
    pub port: u16,
    /// The validator's task id.
    pub task_id: String,
    /// Exactly as the validator sent it: the license signature covers it.
    pub prompt: String,
    /// Sends of this release so far, this one included.
    pub tries: u32,
}

impl ReleaseJob {
    fn of(row: &Row) -> Option<Self> {
        Some(Self {
            task_row: row.get(0),
            hotkey: row.get(1),
            uid: row
                .get::<_, Option<i32>>(7)
                .and_then(|uid| u16::try_from(uid).ok()),
            ip: row.get(2),
            port: u16::try_from(row.get::<_, i32>(3)).ok()?,
            task_id: row.get(4),
            prompt: row.get(5),
            tries: u32::try_from(row.get::<_, i16>(6)).unwrap_or(0),
        })
    }
}

/// Takes up to `limit` due release requests for `instance`, each held for `lease_secs` and
/// counted as one more send: requests nobody holds whose next try is due, and requests whose
/// sender's hold ran out (it died mid-send). Requests of validators without a known address
/// wait until discovery records one.
pub async fn take_releases(
    pool: &Pool,
    instance: &str,
    lease_secs: f64,
    limit: i64,
) -> Result<Vec<ReleaseJob>, DbError> {
    let client = client(pool).await?;
    let statement = prepared(
        &client,
        "WITH due AS (
             SELECT s.task_id FROM submissions s
             WHERE s.state = 'sending' AND s.claimed_by IS NULL
               AND (s.lease_until IS NULL OR s.lease_until <= now())
             ORDER BY s.lease_until NULLS FIRST
             LIMIT $3
             FOR UPDATE SKIP LOCKED
         )
         UPDATE submissions s SET released_by = $1::text, sent_at = now(),
             lease_until = now() + make_interval(secs => $2::float8),
             tries = least(s.tries + 1, 32767)
         FROM due, tasks t JOIN validators v ON v.id = t.validator_id
         WHERE s.task_id = due.task_id AND t.id = s.task_id
           AND v.ip IS NOT NULL AND v.port IS NOT NULL AND t.prompt IS NOT NULL
         RETURNING s.task_id, v.hotkey, host(v.ip), v.port, t.task_id, t.prompt, s.tries, v.uid",
    )
    .await?;
    let rows = client
        .query(&statement, &[&instance, &lease_secs, &limit])
        .await?;
    Ok(rows.iter().filter_map(ReleaseJob::of).collect())
}

/// How an empty release ended, for the records.
#[derive(Debug, Clone, PartialEq)]
pub enum ReleaseRecord {
    /// The validator took it; cooldown until then (unix seconds).
    Released {
        cooldown_until: f64,
        feedback: Option<Feedback>,
    },
    /// The validator no longer held it; we assume a cooldown until then.
    NotHeld {
        error: String,
        assumed_cooldown_until: f64,
    },
    /// It did not answer usefully: the request waits and is tried again at `retry_at`
    /// (unix seconds).
    Failed {
        status: Option<u16>,
        error: String,
        retry_at: f64,
    },
    /// The sender stopped before it knew: the request is due again at once.
    Interrupted,
}

/// Records the end of `instance`'s release of `task_row`: the submission, the task's status
/// and the cooldown in one transaction. `false`: the request was no longer this sender's
/// (its hold ran out and another submitter took it over), so nothing was written.
pub async fn finish_release(
    pool: &Pool,
    task_row: i64,
    instance: &str,
    outcome: &ReleaseRecord,
) -> Result<bool, DbError> {
    let mut client = client(pool).await?;
    let tx = client.transaction().await?;
    const OURS: &str = "task_id = $1 AND released_by = $2 AND state = 'sending'
                        AND claimed_by IS NULL";
    let (status, error, http, cooldown_until, feedback) = match outcome {
        ReleaseRecord::Released {
            cooldown_until,
            feedback,
        } => (
            TaskStatus::SubmittedEmpty,
            None,
            200i16,
            cooldown_until,
            feedback.as_ref(),
        ),
        ReleaseRecord::NotHeld {
            error,
            assumed_cooldown_until,
        } => (
            TaskStatus::Expired,
            Some(error.as_str()),
            403,
            assumed_cooldown_until,
            None,
        ),
        ReleaseRecord::Failed {
            status,
            error,
            retry_at,
        } => {
            let http = status.and_then(|s| i16::try_from(s).ok());
            let waiting = tx
                .execute(
                    &format!(
                        "UPDATE submissions SET released_by = NULL, http_status = $3,
                             error = $4, lease_until = to_timestamp($5) WHERE {OURS}"
                    ),
                    &[&task_row, &instance, &http, error, retry_at],
                )
                .await?;
            tx.commit().await?;
            return Ok(waiting == 1);
        }
        ReleaseRecord::Interrupted => {
            let waiting = tx
                .execute(
                    &format!(
                        "UPDATE submissions SET released_by = NULL, lease_until = NULL
                         WHERE {OURS}"
                    ),
                    &[&task_row, &instance],
                )
                .await?;
            tx.commit().await?;
            return Ok(waiting == 1);
        }
    };
    let generations =
        feedback.map(|f| i32::try_from(f.generations_within_the_window).unwrap_or(i32::MAX));
    let finished = tx
        .execute(
            &format!(
                "UPDATE submissions SET state = 'completed', completed_at = now(),
                     lease_until = NULL, http_status = $3, error = $4,
                     cooldown_until = to_timestamp($5),
                     validation_failed = $6, task_fidelity_score = $7,
                     average_fidelity_score = $8, generations_within_the_window = $9,
                     current_duel_rating = $10, current_miner_reward = $11
                 WHERE {OURS}"
            ),
            &[
                &task_row,
                &instance,
                &http,
                &error,
                cooldown_until,
                &feedback.map(|f| f.validation_failed),
                &feedback.map(|f| f.task_fidelity_score as f32),
                &feedback.map(|f| f.average_fidelity_score as f32),
                &generations,
                &feedback.map(|f| f.current_duel_rating as f32),
                &feedback.map(|f| f.current_miner_reward as f32),
            ],
        )
        .await?;
    if finished != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.execute(
        &format!(
            "UPDATE tasks SET status = $2, status_reason = 'released with an empty submission',
                 updated_at = now() WHERE id = $1
             RETURNING {}",
            closed::notify_sql("validator_id", "$3::float8", "NULL", "task_id")
        ),
        &[&task_row, &status.as_str(), cooldown_until],
    )
    .await?;
    tx.execute(
        &format!(
            "UPDATE validator_state SET {}
             FROM tasks t WHERE t.id = $1 AND validator_state.validator_id = t.validator_id",
            cooldown::raise_sql("$2")
        ),
        &[&task_row, cooldown_until],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}
