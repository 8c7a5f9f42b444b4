//! Validators as the puller sees them: their rows (refreshed on discovery), their state
//! (cooldowns, backoff, 401 stops), exclusions with their history, the blacklist, and the
//! snapshot of each validator's cooldown and latest task the scheduler starts from.

use std::collections::HashMap;

use super::{client, prepared, status::TaskStatus};
use crate::{
    db::{DbError, Pool},
    discovery::ValidatorInfo,
};

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

/// One validator's wanted exclusion: `Some((reason, detail))`, or `None` when eligible.
pub type Exclusion<'a> = (&'a str, Option<(&'a str, &'a str)>);

/// Records exclusions (hotkey → reason and detail, `None`: eligible): a changed reason closes
/// the old exclusion row and opens a new one; a validator that became eligible has its open
/// exclusion closed. Hotkeys without a row id in `ids` are skipped.
pub async fn record_exclusions(
    pool: &Pool,
    ids: &HashMap<String, i64>,
    wanted: &[Exclusion<'_>],
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
    for &(hotkey, exclusion) in wanted {
        let Some(&id) = ids.get(hotkey) else { continue };
        let now_reason = current.get(&id).cloned().flatten();
        let new_reason = exclusion.map(|(reason, _)| reason.to_owned());
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
            tracing::info!(validator = hotkey, reason, detail, "validator excluded");
            tx.execute(
                "INSERT INTO validator_exclusions (validator_id, reason, detail) VALUES ($1, $2, $3)",
                &[&id, &reason, &detail],
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
    /// The validator's latest task id and whether it is still open: not terminal, or a
    /// requested empty release not sent yet (a task we closed that the validator still
    /// holds is released after it was closed; until then the validator holds it, and the
    /// cooldown its release starts is not known yet).
    pub latest_task: Option<(String, bool)>,
}

/// The snapshot's statement (`$1`: the hotkeys to read, NULL for all). Public so a test can
/// check its plan: one index row per validator for the latest task
/// (`tasks_validator_latest_idx`), whatever the table's size.
pub const SNAPSHOT_SQL: &str = "SELECT v.hotkey,
            extract(epoch FROM greatest(vs.cooldown_until, lt.cooldown_until))::float8,
            lt.task_id, lt.status, coalesce(lt.releasing, false)
     FROM validators v
     LEFT JOIN validator_state vs ON vs.validator_id = v.id
     LEFT JOIN LATERAL (
         SELECT t.task_id, t.status, s.cooldown_until,
                s.state = 'sending' AND s.claimed_by IS NULL AS releasing
         FROM tasks t
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
    let client = client(pool).await?;
    let statement = prepared(&client, SNAPSHOT_SQL).await?;
    let rows = client.query(&statement, &[&only]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let task_id: Option<String> = r.get(2);
            let status: Option<String> = r.get(3);
            let releasing: bool = r.get(4);
            ValidatorSnapshot {
                hotkey: r.get(0),
                cooldown_until: r.get(1),
                latest_task: task_id.map(|id| {
                    let terminal = status
                        .as_deref()
                        .and_then(TaskStatus::parse)
                        .is_some_and(TaskStatus::is_terminal);
                    (id, !terminal || releasing)
                }),
            }
        })
        .collect())
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
                    &prepared(
                        &client,
                        "UPDATE validator_state SET last_pull_at = now(), last_pull_error = NULL,
                         consecutive_errors = 0, backoff_until = NULL,
                         cooldown_until = CASE WHEN $2::float8 IS NULL THEN cooldown_until
                             ELSE greatest(cooldown_until, to_timestamp($2)) END,
                         cooldown_violations = coalesce($3, cooldown_violations),
                         updated_at = now()
                     WHERE validator_id = $1",
                    )
                    .await?,
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
                    &prepared(
                        &client,
                        "UPDATE validator_state SET last_pull_at = now(), last_pull_error = $2,
                         consecutive_errors = least(consecutive_errors + 1, 1000000),
                         backoff_until = to_timestamp($3), updated_at = now()
                     WHERE validator_id = $1",
                    )
                    .await?,
                    &[&validator_id, error, backoff_until],
                )
                .await?;
        }
        PullRecord::Stopped { error } => {
            client
                .execute(
                    &prepared(
                        &client,
                        "UPDATE validator_state SET last_pull_at = now(), last_pull_error = $2,
                         consecutive_errors = least(consecutive_errors + 1, 1000000),
                         pulls_stopped_reason = $2, updated_at = now()
                     WHERE validator_id = $1",
                    )
                    .await?,
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
