//! The empty release of a task the fleet lost (no result by the deadline, or a send that
//! failed for good while the validator still holds the task): claimed through the one claim
//! statement with no `claimed_by` (the row then reads as the puller's), and finished as
//! `submitted_empty` (the validator took it), `expired` (it no longer held the task: an
//! assumed cooldown) or `failed` (no answer: the sweep tries again).

use super::{
    claim::{claim, Claim, ClaimRequest},
    client, cooldown,
    status::TaskStatus,
};
use crate::{
    db::{DbError, Pool},
    protocol::sn17::Feedback,
};

/// Takes the task's one submission for an empty release (see `claim::CLAIM_SQL` for which
/// rows may be taken over). `false`: a submitter (or an earlier release) already owns it.
pub async fn claim_release(pool: &Pool, task_row: i64, reason: &str) -> Result<bool, DbError> {
    Ok(matches!(
        claim(pool, task_row, &ClaimRequest::release(reason)).await?,
        Claim::Claimed { .. }
    ))
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
    /// It did not answer; the claim is marked failed and the sweep tries again.
    Failed { status: Option<u16>, error: String },
}

/// Records the end of an empty release: the submission, the task's status and the cooldown.
pub async fn finish_release(
    pool: &Pool,
    task_row: i64,
    outcome: &ReleaseRecord,
) -> Result<(), DbError> {
    let mut client = client(pool).await?;
    let tx = client.transaction().await?;
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
        ReleaseRecord::Failed { status, error } => {
            let http = status.and_then(|s| i16::try_from(s).ok());
            tx.execute(
                "UPDATE submissions SET state = 'failed', sent_at = now(), http_status = $2,
                     error = $3 WHERE task_id = $1",
                &[&task_row, &http, error],
            )
            .await?;
            tx.commit().await?;
            return Ok(());
        }
    };
    let generations =
        feedback.map(|f| i32::try_from(f.generations_within_the_window).unwrap_or(i32::MAX));
    tx.execute(
        "UPDATE submissions SET state = 'completed', sent_at = now(),
             completed_at = now(), http_status = $2, error = $3,
             cooldown_until = to_timestamp($4),
             validation_failed = $5, task_fidelity_score = $6,
             average_fidelity_score = $7, generations_within_the_window = $8,
             current_duel_rating = $9, current_miner_reward = $10
         WHERE task_id = $1",
        &[
            &task_row,
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
    tx.execute(
        "UPDATE tasks SET status = $2, status_reason = 'released by the puller: lost',
             updated_at = now() WHERE id = $1",
        &[&task_row, &status.as_str()],
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
    Ok(())
}
