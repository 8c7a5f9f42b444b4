//! Accepted and penalised figures per validator, read from the `submission_verdicts` view
//! (`sql/migrations/0007_ledger_views.sql`), the one place a verdict is decided.

use std::collections::HashMap;

use super::{client, status::Verdict};
use crate::db::{DbError, Pool};

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
    let judged: Vec<&str> = Verdict::JUDGED.iter().map(|v| v.as_str()).collect();
    let rows = client
        .query(
            "WITH recent AS (
                 SELECT v.hotkey, s.verdict,
                        row_number() OVER (PARTITION BY v.id ORDER BY s.completed_at DESC) AS rn
                 FROM submission_verdicts s
                 JOIN tasks t ON t.id = s.task_id
                 JOIN validators v ON v.id = t.validator_id
                 LEFT JOIN validator_state vs ON vs.validator_id = v.id
                 WHERE s.verdict = ANY($2::text[])
                   AND s.completed_at > coalesce(vs.blacklisted_until, '-infinity'::timestamptz))
             SELECT hotkey, count(*),
                    count(*) FILTER (WHERE verdict = $3),
                    count(*) FILTER (WHERE verdict = $4)
             FROM recent WHERE rn <= $1 GROUP BY hotkey",
            &[
                &window,
                &judged,
                &Verdict::Accepted.as_str(),
                &Verdict::Penalised.as_str(),
            ],
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
