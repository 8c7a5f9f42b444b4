//! Each validator's recent verdicts, read from the `submission_verdicts` view
//! (`sql/migrations/0007_ledger_views.sql`, the one place a verdict is decided), and the
//! accepted / penalised figures counted from them.

use std::collections::HashMap;

use super::{client, prepared, status::Verdict};
use crate::db::{DbError, Pool};

/// Submission figures of one validator, over its recent completed non-empty submissions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubmissionStats {
    pub completed: u32,
    pub accepted: u32,
    /// Scored under the threshold (the 600 s penalty): no fidelity, validation not failed.
    pub penalised: u32,
}

impl SubmissionStats {
    /// The figures of `verdicts` (judged ones count; the others are skipped).
    pub fn of<'a>(verdicts: impl IntoIterator<Item = &'a Verdict>) -> Self {
        let mut stats = Self::default();
        for verdict in verdicts {
            if !Verdict::JUDGED.contains(verdict) {
                continue;
            }
            stats.completed += 1;
            match verdict {
                Verdict::Accepted => stats.accepted += 1,
                Verdict::Penalised => stats.penalised += 1,
                _ => {}
            }
        }
        stats
    }
}

/// [`recent_verdicts`]' statement. Per validator it walks `tasks_validator_latest_idx` from
/// the newest task and stops after `$1` judged verdicts: its cost is validators × window,
/// whatever the size of the tables. A validator holds one task of ours at a time, so the
/// order of its tasks' pulls is the order of their submissions.
const RECENT_VERDICTS_SQL: &str = "SELECT v.hotkey, r.verdict
     FROM validators v
     LEFT JOIN validator_state vs ON vs.validator_id = v.id
     CROSS JOIN LATERAL (
         SELECT s.verdict, t.pulled_at, t.id
         FROM tasks t JOIN submission_verdicts s ON s.task_id = t.id
         WHERE t.validator_id = v.id AND s.verdict = ANY($2::text[])
           AND s.completed_at > coalesce(vs.blacklisted_until, '-infinity'::timestamptz)
         ORDER BY t.pulled_at DESC, t.id DESC LIMIT $1
     ) r
     ORDER BY v.hotkey, r.pulled_at DESC, r.id DESC";

/// Each validator's last `window` judged verdicts (completed non-empty submissions), newest
/// first, after its last blacklisting ended; validators without any are left out.
pub async fn recent_verdicts(
    pool: &Pool,
    window: u32,
) -> Result<HashMap<String, Vec<Verdict>>, DbError> {
    let client = client(pool).await?;
    let statement = prepared(&client, RECENT_VERDICTS_SQL).await?;
    let judged: Vec<&str> = Verdict::JUDGED.iter().map(|v| v.as_str()).collect();
    let rows = client
        .query(&statement, &[&i64::from(window), &judged])
        .await?;
    let mut out: HashMap<String, Vec<Verdict>> = HashMap::new();
    for row in rows {
        let text: String = row.get(1);
        if let Some(verdict) = Verdict::parse(&text) {
            out.entry(row.get(0)).or_default().push(verdict);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_judged_verdicts_count() {
        let stats = SubmissionStats::of(&[
            Verdict::Accepted,
            Verdict::Penalised,
            Verdict::ValidationFailed,
            Verdict::Empty,
            Verdict::Lost,
            Verdict::Accepted,
        ]);
        assert_eq!(
            stats,
            SubmissionStats {
                completed: 4,
                accepted: 2,
                penalised: 1
            }
        );
    }
}
