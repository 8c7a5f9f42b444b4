//! Everything the puller reads from and writes to Postgres: validators and their state
//! (cooldowns, backoff, exclusions), the automatic blacklist and acceptance figures from the
//! submitter's records, task rows (written as `queued` before publishing), the publish
//! bookkeeping, and the empty submissions that release lost tasks.
//!
//! The submitter's side of the contract: when it records a submission it sets the task's
//! status to a terminal one and writes `submissions.cooldown_until` (and
//! `validator_state.cooldown_until`) in the same transaction.

use std::collections::HashMap;

use splatfleet_common::{
    db::{DbError, Pool},
    discovery::ValidatorInfo,
    messages::{TaskKind, TaskMsg, ValidatorRef},
    protocol::sn17::Feedback,
};

use crate::validator_set::ValidatorSet;

/// Task statuses after which the validator no longer holds the task for us.
pub const TERMINAL_STATUSES: [&str; 4] = ["submitted", "submitted_empty", "expired", "failed"];

fn is_terminal(status: &str) -> bool {
    TERMINAL_STATUSES.contains(&status)
}

async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, DbError> {
    Ok(pool.get().await?)
}

/// Inserts or refreshes every discovered validator; returns their row ids by hotkey.
pub async fn upsert_validators(
    pool: &Pool,
    validators: &[ValidatorInfo],
    source: &str,
) -> Result<HashMap<String, i64>, DbError> {
    let mut client = client(pool).await?;
    let tx = client.transaction().await?;
    let mut ids = HashMap::new();
    for v in validators {
        let uid = i32::from(v.uid);
        let port = i32::from(v.port);
        let row = tx
            .query_one(
                "INSERT INTO validators (hotkey, uid, ip, port, stake, source)
                 VALUES ($1, $2, $3::text::inet, $4, $5, $6)
                 ON CONFLICT (hotkey) DO UPDATE SET uid = EXCLUDED.uid, ip = EXCLUDED.ip,
                     port = EXCLUDED.port, stake = EXCLUDED.stake, source = EXCLUDED.source,
                     last_seen_at = now()
                 RETURNING id",
                &[&v.hotkey, &uid, &v.ip, &port, &v.stake.max(0.0), &source],
            )
            .await?;
        let id: i64 = row.get(0);
        tx.execute(
            "INSERT INTO validator_state (validator_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&id],
        )
        .await?;
        ids.insert(v.hotkey.clone(), id);
    }
    tx.commit().await?;
    Ok(ids)
}

/// Records the set's exclusions: a changed reason closes the old exclusion row and opens a
/// new one; a validator that became eligible has its open exclusion closed.
pub async fn record_exclusions(
    pool: &Pool,
    ids: &HashMap<String, i64>,
    set: &ValidatorSet,
) -> Result<(), DbError> {
    let mut client = client(pool).await?;
    let tx = client.transaction().await?;
    let rows = tx
        .query(
            "SELECT validator_id, excluded_reason FROM validator_state",
            &[],
        )
        .await?;
    let current: HashMap<i64, Option<String>> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let wanted = set
        .excluded
        .iter()
        .map(|e| {
            (
                e.validator.hotkey.as_str(),
                Some((e.reason, e.detail.as_str())),
            )
        })
        .chain(set.eligible.iter().map(|v| (v.hotkey.as_str(), None)));
    for (hotkey, exclusion) in wanted {
        let Some(&id) = ids.get(hotkey) else { continue };
        let now_reason = current.get(&id).cloned().flatten();
        let new_reason = exclusion.map(|(reason, _)| reason.as_str().to_owned());
        if now_reason == new_reason {
            continue;
        }
        tx.execute(
            "UPDATE validator_exclusions SET ended_at = now()
             WHERE validator_id = $1 AND ended_at IS NULL",
            &[&id],
        )
        .await?;
        if let Some((reason, detail)) = exclusion {
            tracing::info!(
                validator = hotkey,
                reason = reason.as_str(),
                detail,
                "validator excluded"
            );
            tx.execute(
                "INSERT INTO validator_exclusions (validator_id, reason, detail) VALUES ($1, $2, $3)",
                &[&id, &reason.as_str(), &detail],
            )
            .await?;
        } else {
            tracing::info!(validator = hotkey, "validator eligible again");
        }
        tx.execute(
            "UPDATE validator_state SET excluded_reason = $2,
                 excluded_since = CASE WHEN $2::text IS NULL THEN NULL ELSE now() END,
                 updated_at = now()
             WHERE validator_id = $1",
            &[&id, &new_reason],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Submission figures of one validator, over its recent completed non-empty submissions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubmissionStats {
    pub completed: u32,
    pub accepted: u32,
    /// Scored under the threshold (the 600 s penalty): no fidelity, validation not failed.
    pub penalised: u32,
}

/// Recent submission figures by hotkey: the last `window` completed non-empty submissions
/// after the validator's last automatic blacklisting ended.
pub async fn submission_stats(
    pool: &Pool,
    window: u32,
) -> Result<HashMap<String, SubmissionStats>, DbError> {
    let client = client(pool).await?;
    let window = i64::from(window);
    let rows = client
        .query(
            "WITH recent AS (
                 SELECT v.hotkey, s.task_fidelity_score, s.validation_failed,
                        row_number() OVER (PARTITION BY v.id ORDER BY s.completed_at DESC) AS rn
                 FROM submissions s
                 JOIN tasks t ON t.id = s.task_id
                 JOIN validators v ON v.id = t.validator_id
                 LEFT JOIN validator_state vs ON vs.validator_id = v.id
                 WHERE s.state = 'completed' AND NOT s.empty
                   AND s.completed_at > coalesce(vs.blacklisted_until, '-infinity'::timestamptz))
             SELECT hotkey, count(*),
                    count(*) FILTER (WHERE task_fidelity_score > 0),
                    count(*) FILTER (WHERE coalesce(task_fidelity_score, 0) <= 0
                                       AND NOT coalesce(validation_failed, false))
             FROM recent WHERE rn <= $1 GROUP BY hotkey",
            &[&window],
        )
        .await?;
    let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                SubmissionStats {
                    completed: count(r.get(1)),
                    accepted: count(r.get(2)),
                    penalised: count(r.get(3)),
                },
            )
        })
        .collect())
}

/// Blacklists `hotkey` until `secs` from now, with its reason.
pub async fn auto_blacklist(
    pool: &Pool,
    hotkey: &str,
    reason: &str,
    secs: u64,
) -> Result<(), DbError> {
    let secs = secs as f64;
    client(pool)
        .await?
        .execute(
            "UPDATE validator_state SET blacklisted = true, blacklist_reason = $2,
                 blacklisted_until = now() + make_interval(secs => $3), updated_at = now()
             FROM validators v WHERE v.id = validator_state.validator_id AND v.hotkey = $1",
            &[&hotkey, &reason, &secs],
        )
        .await?;
    Ok(())
}

/// Validators blacklisted in Postgres right now (by us or by an operator), hotkey → reason;
/// lifts expired blacklistings on the way.
pub async fn blacklisted(pool: &Pool) -> Result<HashMap<String, String>, DbError> {
    let client = client(pool).await?;
    client
        .execute(
            "UPDATE validator_state SET blacklisted = false, updated_at = now()
             WHERE blacklisted AND blacklisted_until <= now()",
            &[],
        )
        .await?;
    let rows = client
        .query(
            "SELECT v.hotkey, vs.blacklist_reason FROM validator_state vs
             JOIN validators v ON v.id = vs.validator_id WHERE vs.blacklisted",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get::<_, Option<String>>(1).unwrap_or_default()))
        .collect())
}

/// A validator's latest task and its cooldown, as Postgres knows them.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatorSnapshot {
    pub hotkey: String,
    /// Unix seconds; the later of the state's and the latest submission's.
    pub cooldown_until: Option<f64>,
    /// The validator's latest task id and whether it is still open.
    pub latest_task: Option<(String, bool)>,
}

/// The snapshot's statement (`$1`: the hotkeys to read, NULL for all). Public so a test can
/// check its plan: one index row per validator for the latest task
/// (`tasks_validator_latest_idx`), whatever the table's size.
pub const SNAPSHOT_SQL: &str = "SELECT v.hotkey,
            extract(epoch FROM greatest(vs.cooldown_until, lt.cooldown_until))::float8,
            lt.task_id, lt.status
     FROM validators v
     LEFT JOIN validator_state vs ON vs.validator_id = v.id
     LEFT JOIN LATERAL (
         SELECT t.task_id, t.status, s.cooldown_until FROM tasks t
         LEFT JOIN submissions s ON s.task_id = t.id
         WHERE t.validator_id = v.id ORDER BY t.pulled_at DESC, t.id DESC LIMIT 1
     ) lt ON true
     WHERE $1::text[] IS NULL OR v.hotkey = ANY($1::text[])";

/// The cooldown and latest task of every validator, or of `only` those hotkeys, in one
/// consistent read.
pub async fn snapshot(
    pool: &Pool,
    only: Option<&[String]>,
) -> Result<Vec<ValidatorSnapshot>, DbError> {
    let rows = client(pool).await?.query(SNAPSHOT_SQL, &[&only]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let task_id: Option<String> = r.get(2);
            let status: Option<String> = r.get(3);
            ValidatorSnapshot {
                hotkey: r.get(0),
                cooldown_until: r.get(1),
                latest_task: task_id.map(|id| (id, !status.as_deref().is_some_and(is_terminal))),
            }
        })
        .collect())
}

/// What inserting a pulled task found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskInsert {
    /// A new row, status `queued`, not yet published.
    Inserted { id: i64 },
    /// The validator handed us a task we already have.
    Existing { id: i64, status: String },
}

/// Records a pulled task as `queued` before it is published (unique per validator + task id).
pub async fn insert_task(
    pool: &Pool,
    validator_id: i64,
    msg: &TaskMsg,
    prompt_sha256: &str,
) -> Result<TaskInsert, DbError> {
    let client = client(pool).await?;
    let kind = match msg.kind {
        TaskKind::Text => "text",
        TaskKind::Image => "image",
    };
    let threshold = msg.validation_threshold;
    let throttle = i32::try_from(msg.throttle_period_secs).unwrap_or(i32::MAX);
    let pulled_ms = msg.pulled_at_unix_ms as f64 / 1000.0;
    let deadline_ms = msg.deadline_unix_ms as f64 / 1000.0;
    let inserted = client
        .query_opt(
            "INSERT INTO tasks (validator_id, task_id, kind, prompt_sha256, prompt, pulled_at,
                                deadline_at, validation_threshold, throttle_period_s, status)
             VALUES ($1, $2, $3, $4, $5, to_timestamp($6), to_timestamp($7), $8, $9, 'queued')
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
        status: row.get(1),
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
             WHERE t.status = 'queued' AND t.published_at IS NULL AND t.prompt IS NOT NULL
               AND t.pulled_at < now() - make_interval(secs => $1) AND t.deadline_at > now()
             ORDER BY t.pulled_at LIMIT 100",
            &[&older_than_secs],
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

/// Open tasks whose deadline passed more than `grace_secs` ago and that have no submission
/// (or only a failed release of ours).
pub async fn lost_tasks(pool: &Pool, grace_secs: u64) -> Result<Vec<LostTask>, DbError> {
    let grace = grace_secs as f64;
    let rows = client(pool)
        .await?
        .query(
            "SELECT t.id, v.hotkey, t.task_id, t.prompt FROM tasks t
             JOIN validators v ON v.id = t.validator_id
             LEFT JOIN submissions s ON s.task_id = t.id
             WHERE t.status NOT IN ('submitted', 'submitted_empty', 'expired', 'failed')
               AND t.deadline_at + make_interval(secs => $1) < now()
               AND t.prompt IS NOT NULL
               AND (s.id IS NULL OR (s.empty AND s.state = 'failed'))",
            &[&grace],
        )
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

/// Takes the task's one submission for an empty release. `false`: the submitter (or an
/// earlier release) already owns it.
///
/// A `failed` submission is taken over whoever failed it: an earlier release of ours, or a
/// result the submitter gave up on (every send failed, or the validator refused it). Either
/// way the validator never processed it; it still holds the task (that is why we release),
/// and without the release it would hand the same task back on every pull for good. The row
/// becomes the puller's empty release (`claimed_by` NULL), keeping the failed send's error in
/// `empty_reason`.
pub async fn claim_release(pool: &Pool, task_row: i64, reason: &str) -> Result<bool, DbError> {
    let claimed = client(pool)
        .await?
        .query_opt(
            "INSERT INTO submissions (task_id, empty, empty_reason, state, tries)
             VALUES ($1, true, $2, 'sending', 1)
             ON CONFLICT (task_id) DO UPDATE SET state = 'sending',
                 tries = least(submissions.tries + 1, 32767),
                 empty_reason = CASE WHEN submissions.empty THEN submissions.empty_reason
                     ELSE $2 || '; our result was not delivered: '
                          || coalesce(submissions.error, 'no error recorded') END,
                 empty = true, attempt_id = NULL, claimed_by = NULL, lease_until = NULL
             WHERE submissions.state = 'failed'
             RETURNING id",
            &[&task_row, &reason],
        )
        .await?;
    Ok(claimed.is_some())
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
            "submitted_empty",
            None,
            200i16,
            cooldown_until,
            feedback.as_ref(),
        ),
        ReleaseRecord::NotHeld {
            error,
            assumed_cooldown_until,
        } => (
            "expired",
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
        &[&task_row, &status],
    )
    .await?;
    tx.execute(
        "UPDATE validator_state SET cooldown_until =
             greatest(cooldown_until, to_timestamp($2)), updated_at = now()
         FROM tasks t WHERE t.id = $1 AND validator_state.validator_id = t.validator_id",
        &[&task_row, cooldown_until],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// What one pull did to a validator's state row.
#[derive(Debug, Clone, PartialEq)]
pub enum PullRecord {
    /// Answered (task or cooldown); `cooldown_until` when the validator gave one.
    Answered {
        cooldown_until: Option<f64>,
        violations: Option<i32>,
    },
    /// Failed; backing off until then (unix seconds).
    Failed { error: String, backoff_until: f64 },
    /// 401: pulls stopped.
    Stopped { error: String },
}

/// Updates the validator's state row after a pull.
pub async fn record_pull(
    pool: &Pool,
    validator_id: i64,
    record: &PullRecord,
) -> Result<(), DbError> {
    let client = client(pool).await?;
    match record {
        PullRecord::Answered {
            cooldown_until,
            violations,
        } => {
            client
                .execute(
                    "UPDATE validator_state SET last_pull_at = now(), last_pull_error = NULL,
                         consecutive_errors = 0, backoff_until = NULL,
                         cooldown_until = CASE WHEN $2::float8 IS NULL THEN cooldown_until
                             ELSE greatest(cooldown_until, to_timestamp($2)) END,
                         cooldown_violations = coalesce($3, cooldown_violations),
                         updated_at = now()
                     WHERE validator_id = $1",
                    &[&validator_id, cooldown_until, violations],
                )
                .await?;
        }
        PullRecord::Failed {
            error,
            backoff_until,
        } => {
            client
                .execute(
                    "UPDATE validator_state SET last_pull_at = now(), last_pull_error = $2,
                         consecutive_errors = least(consecutive_errors + 1, 1000000),
                         backoff_until = to_timestamp($3), updated_at = now()
                     WHERE validator_id = $1",
                    &[&validator_id, error, backoff_until],
                )
                .await?;
        }
        PullRecord::Stopped { error } => {
            client
                .execute(
                    "UPDATE validator_state SET last_pull_at = now(), last_pull_error = $2,
                         consecutive_errors = least(consecutive_errors + 1, 1000000),
                         pulls_stopped_reason = $2, updated_at = now()
                     WHERE validator_id = $1",
                    &[&validator_id, error],
                )
                .await?;
        }
    }
    Ok(())
}

/// Clears the 401 stops of a previous run: a restart is how an operator says "fixed".
pub async fn clear_stops(pool: &Pool) -> Result<(), DbError> {
    client(pool)
        .await?
        .execute(
            "UPDATE validator_state SET pulls_stopped_reason = NULL
             WHERE pulls_stopped_reason IS NOT NULL",
            &[],
        )
        .await?;
    Ok(())
}
