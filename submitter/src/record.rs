//! Everything the submitter reads from and writes to Postgres, keeping the puller's contract
//! (puller/src/record.rs): the task's one `submissions` row is claimed with
//! `INSERT ... ON CONFLICT (task_id) DO NOTHING` (or taken over once a dead sender's lease ran
//! out) before anything is sent; each send bumps `tries` and renews the lease; and one
//! transaction records the task's terminal status, every attempt of the `ResultMsg`, the
//! submission with its feedback, `submissions.cooldown_until` and
//! `validator_state.cooldown_until`.
//!
//! A `'sending'` row whose `claimed_by` is NULL is the puller's (an empty release of a lost
//! task): the submitter leaves it alone.

use splatfleet_common::{
    db::{DbError, Pool},
    messages::{AttemptRecord, ResultMsg, ResultOutcome, TaskKind},
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
    if let Some(row) = client
        .query_opt(select, &[&msg.validator.hotkey, &msg.task_id])
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
    let row = client(pool)
        .await?
        .query_opt(
            "SELECT state, claimed_by,
                    coalesce(extract(epoch FROM lease_until - now()), 0)::float8
             FROM submissions WHERE task_id = $1",
            &[&task_row],
        )
        .await?;
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
    pub task_row: i64,
    pub claimed_by: &'a str,
    pub lease_secs: f64,
    pub empty_reason: Option<&'a str>,
    pub worker: &'a str,
    pub local_score: Option<f32>,
    /// When the worker finished the result (`ResultMsg::finished_at_unix_ms`).
    pub result_finished_unix_ms: i64,
}

/// Claims the task's one submission: a new row, or a `sending` row of a submitter whose
/// lease ran out (its send was interrupted) or of this same submitter.
pub async fn claim(pool: &Pool, request: &ClaimRequest<'_>) -> Result<Claim, DbError> {
    let empty = request.empty_reason.is_some();
    let claimed = client(pool)
        .await?
        .query_opt(
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
            &[
                &request.task_row,
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
    match claimed {
        Some(row) => Ok(Claim::Claimed {
            tries: u32::try_from(row.get::<_, i16>(0)).unwrap_or(0),
        }),
        None => Ok(Claim::Taken(
            submission_state(pool, request.task_row).await?,
        )),
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
    let row = client(pool)
        .await?
        .query_opt(
            "UPDATE submissions SET tries = least(tries + 1, 32767), sent_at = now(),
                 lease_until = now() + make_interval(secs => $3)
             WHERE task_id = $1 AND claimed_by = $2 AND state = 'sending'
             RETURNING tries",
            &[&task_row, &claimed_by, &lease_secs],
        )
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

/// Inserts the result's attempts (idempotent: a redelivery writes nothing twice) and returns
/// the chosen attempt's row id for a ready result.
async fn record_attempts(
    tx: &tokio_postgres::Transaction<'_>,
    task_row: i64,
    msg: &ResultMsg,
) -> Result<Option<i64>, DbError> {
    let gpu = gpu_of(&msg.worker);
    let chosen = match &msg.outcome {
        ResultOutcome::Ready {
            chosen_attempt,
            spz,
            preview,
            ..
        } => Some((usize::from(*chosen_attempt), spz.as_ref(), preview.as_ref())),
        ResultOutcome::Empty { .. } => None,
    };
    for (index, attempt) in msg.attempts.iter().enumerate() {
        insert_attempt(tx, task_row, msg, gpu, index, attempt, chosen).await?;
    }
    let Some((index, _, _)) = chosen else {
        return Ok(None);
    };
    let attempt_no = i16::try_from(index + 1).unwrap_or(i16::MAX);
    let row = tx
        .query_opt(
            "SELECT id FROM attempts WHERE task_id = $1 AND attempt_no = $2",
            &[&task_row, &attempt_no],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

async fn insert_attempt(
    tx: &tokio_postgres::Transaction<'_>,
    task_row: i64,
    msg: &ResultMsg,
    gpu: Option<i16>,
    index: usize,
    attempt: &AttemptRecord,
    chosen: Option<(
        usize,
        Option<&splatfleet_common::messages::ArtifactRef>,
        Option<&splatfleet_common::messages::ArtifactRef>,
    )>,
) -> Result<(), DbError> {
    let attempt_no = i16::try_from(index + 1).unwrap_or(i16::MAX);
    let started = attempt.started_at_unix_ms as f64 / 1000.0;
    let took_ms: u64 = attempt.stage_ms.values().map(|&ms| u64::from(ms)).sum();
    let finished = started + took_ms as f64 / 1000.0;
    let gaussians = attempt
        .gaussian_count
        .map(|n| i32::try_from(n).unwrap_or(i32::MAX));
    let (spz, preview) = match chosen {
        Some((chosen_index, spz, preview)) if chosen_index == index => (spz, preview),
        _ => (None, None),
    };
    let bytes = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let ply = attempt.ply.as_ref();
    let local_score = attempt.local_score.filter(|s| s.is_finite());
    tx.execute(
        "INSERT INTO attempts (task_id, attempt_no, worker, gpu, params, started_at, finished_at,
                               stage_ms, gaussian_count, local_score, gate_passed, gate_metrics,
                               ply_key, ply_sha256, ply_bytes, spz_key, spz_sha256, spz_bytes,
                               preview_key, error)
         VALUES ($1, $2, $3, $4, $5, to_timestamp($6), to_timestamp($7), $8, $9, $10, $11, $12,
                 $13, $14, $15, $16, $17, $18, $19, $20)
         ON CONFLICT (task_id, attempt_no) DO NOTHING",
        &[
            &task_row,
            &attempt_no,
            &msg.worker,
            &gpu,
            &json_of(&attempt.params),
            &started,
            &finished,
            &json_of(&attempt.stage_ms),
            &gaussians,
            &local_score,
            &attempt.gate_passed,
            &json_of(&attempt.gate_metrics),
            &ply.map(|a| a.key.as_str()),
            &ply.map(|a| a.sha256.to_ascii_lowercase()),
            &ply.map(|a| bytes(a.bytes)),
            &spz.map(|a| a.key.as_str()),
            &spz.map(|a| a.sha256.to_ascii_lowercase()),
            &spz.map(|a| bytes(a.bytes)),
            &preview.map(|a| a.key.as_str()),
            &attempt.error,
        ],
    )
    .await?;
    Ok(())
}

/// One transaction: the attempts, the submission with its feedback, the task's terminal
/// status and the validator's cooldown. `false` when the row was no longer ours (nothing is
/// written then).
pub async fn finish(
    pool: &Pool,
    task_row: i64,
    claimed_by: &str,
    msg: &ResultMsg,
    outcome: &Finish,
) -> Result<bool, DbError> {
    let mut client = client(pool).await?;
    let tx = client.transaction().await?;
    let attempt_id = record_attempts(&tx, task_row, msg).await?;
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
    let updated = tx
        .execute(
            "UPDATE submissions SET state = $3, attempt_id = $4, http_status = $5, error = $6,
                 latency_ms = $7, completed_at = now(), lease_until = NULL,
                 validation_failed = $8, task_fidelity_score = $9, average_fidelity_score = $10,
                 generations_within_the_window = $11, current_duel_rating = $12,
                 current_miner_reward = $13, cooldown_until = to_timestamp($14)
             WHERE task_id = $1 AND claimed_by = $2 AND state = 'sending'",
            &[
                &task_row,
                &claimed_by,
                &state,
                &attempt_id,
                &http,
                &error,
                &latency_ms,
                &f.map(|f| f.validation_failed),
                &f.map(|f| f.task_fidelity_score as f32),
                &f.map(|f| f.average_fidelity_score as f32),
                &generations,
                &f.map(|f| f.current_duel_rating as f32),
                &f.map(|f| f.current_miner_reward as f32),
                &cooldown,
            ],
        )
        .await?;
    if updated == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.execute(
        "UPDATE tasks SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1",
        &[&task_row, &task_status, &reason],
    )
    .await?;
    if let Some(cooldown) = cooldown {
        tx.execute(
            "UPDATE validator_state SET cooldown_until =
                 greatest(cooldown_until, to_timestamp($2)), updated_at = now()
             FROM tasks t WHERE t.id = $1 AND validator_state.validator_id = t.validator_id",
            &[&task_row, &cooldown],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Records the attempts of a result that arrived after its task was already answered or
/// released, without touching the submission.
pub async fn record_late(pool: &Pool, task_row: i64, msg: &ResultMsg) -> Result<(), DbError> {
    let mut client = client(pool).await?;
    let tx = client.transaction().await?;
    record_attempts(&tx, task_row, msg).await?;
    tx.commit().await?;
    Ok(())
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
