//! What must hold after a fault run, judged from the two records that do not depend on the
//! fleet being right: the simulated validators' event log (what the validators saw) and
//! PostgreSQL (what the fleet says it did).
//!
//! - every task a validator handed out ended in exactly one submission the validator
//!   processed (or, in Postgres, a recorded expiry with its reason);
//! - no validator processed two submissions for one task; no cooldown violation; no
//!   bad-signature penalty;
//! - every processed submission in the validators' logs is in Postgres, completed, with its
//!   feedback, and every completed submission in Postgres is in a validator's log.
//!
//! A resend whose first copy had already been processed (the answer was lost in a network
//! fault) reaches the validator as a "wrong task" / "validation locked" verdict or a 403
//! refusal, is never scored and costs nothing; those are counted as in-doubt resends, not
//! duplicates.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::validator_log::ValidatorEvent;

/// Verdicts for which the validator scored (or released) the task: each task gets one.
const PROCESSED: &[&str] = &[
    "accepted",
    "rejected",
    "empty",
    "validation_failed",
    "bad_signature",
];

/// Verdicts for a submission the validator did not process (a resend after a lost answer).
const UNPROCESSED: &[&str] = &["wrong_task", "validation_locked", "resubmitted_too_quickly"];

/// One task row of Postgres with its submission.
#[derive(Debug, Clone)]
pub struct PgTask {
    pub validator: String,
    pub task_id: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub submission_state: Option<String>,
    pub empty: Option<bool>,
    pub http_status: Option<i16>,
    pub validation_failed: Option<bool>,
    pub fidelity: Option<f32>,
    /// A result the submitter sent (`claimed_by` set); otherwise an empty release the
    /// puller requested (and a submitter's release loop sent).
    pub by_submitter: bool,
}

/// Reads every task and its submission.
pub async fn load_pg(
    client: &tokio_postgres::Client,
) -> Result<Vec<PgTask>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT v.hotkey, t.task_id, t.status, t.status_reason, s.state, s.empty,
                    s.http_status, s.validation_failed, s.task_fidelity_score,
                    s.claimed_by IS NOT NULL
             FROM tasks t JOIN validators v ON v.id = t.validator_id
             LEFT JOIN submissions s ON s.task_id = t.id
             ORDER BY t.id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| PgTask {
            validator: r.get(0),
            task_id: r.get(1),
            status: r.get(2),
            status_reason: r.get(3),
            submission_state: r.get(4),
            empty: r.get(5),
            http_status: r.get(6),
            validation_failed: r.get(7),
            fidelity: r.get(8),
            by_submitter: r.get::<_, Option<bool>>(9).unwrap_or(false),
        })
        .collect())
}

/// Validators whose pulls the puller stopped after a 401, with the reason.
pub async fn load_pulls_stopped(
    client: &tokio_postgres::Client,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT v.hotkey, s.pulls_stopped_reason FROM validator_state s
             JOIN validators v ON v.id = s.validator_id
             WHERE s.pulls_stopped_reason IS NOT NULL",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| format!("{}: {}", r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect())
}

/// What the checks found. Every `Vec<String>` names the offending tasks as
/// `validator-prefix/task_id: detail`.
#[derive(Debug, Default, Clone)]
pub struct CheckReport {
    pub tasks_handed_out: usize,
    pub tasks_in_pg: usize,
    /// Processed verdicts by outcome.
    pub verdicts: BTreeMap<String, usize>,
    pub pg_statuses: BTreeMap<String, usize>,
    /// Tasks a validator handed out that it never got a processed submission for.
    pub lost: Vec<String>,
    /// Tasks a validator processed more than one submission for.
    pub duplicates: Vec<String>,
    pub in_doubt_resends: usize,
    pub violations: usize,
    pub bad_signature_penalties: usize,
    pub low_score_penalties: usize,
    /// Refusals by HTTP status (403 after a lost answer).
    pub refusals: BTreeMap<u64, usize>,
    /// 401 "Nonce is too old": a request held in a paused link past the axon's nonce window
    /// (4 s + the request's timeout) and delivered after the fleet had given up on it, so the
    /// answer reached nobody.
    pub stale_requests: usize,
    /// Other 401s: a signing or nonce bug of the fleet.
    pub unauthorized: Vec<String>,
    /// Validators the puller stopped pulling from after a 401 (`pulls_stopped_reason`).
    pub pulls_stopped: Vec<String>,
    /// Processed in a validator's log, not completed in Postgres.
    pub missing_in_pg: Vec<String>,
    /// Completed with HTTP 200 in Postgres, not processed in any validator's log.
    pub missing_in_log: Vec<String>,
    /// Completed in Postgres without the validator's feedback, or with other feedback than
    /// the validator gave.
    pub feedback_problems: Vec<String>,
    /// Postgres tasks not closed: no completed submission and no recorded expiry.
    pub open_in_pg: Vec<String>,
    /// Processed by the validator while Postgres records the send as failed: the validator's
    /// answer was lost in a network fault and every resend failed too. No miner can know the
    /// outcome then (the protocol has no way to ask); counted, not a failure.
    pub answers_lost: Vec<String>,
    /// Pulls the validators answered with a task we already held: a re-pull after a puller
    /// restart, or (by the hundred) a validator stuck on a task the fleet cannot release.
    pub same_task_pulls: usize,
    /// Expiries recorded in Postgres, with their reasons.
    pub expiries: Vec<String>,
    pub unreadable_log_lines: usize,
}

fn short(validator: &str, task_id: &str) -> String {
    format!("{}/{task_id}", &validator[..validator.len().min(8)])
}

impl CheckReport {
    /// The invariants that failed, one sentence each (empty when all hold).
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut list = |what: &str, items: &[String]| {
            if !items.is_empty() {
                let shown: Vec<_> = items.iter().take(10).cloned().collect();
                out.push(format!("{} {what}: {}", items.len(), shown.join("; ")));
            }
        };
        list("tasks lost (handed out, never processed)", &self.lost);
        list("tasks with two processed submissions", &self.duplicates);
        list(
            "processed submissions missing in Postgres",
            &self.missing_in_pg,
        );
        list(
            "Postgres submissions the validators never processed",
            &self.missing_in_log,
        );
        list(
            "submissions with missing or wrong feedback",
            &self.feedback_problems,
        );
        list("tasks still open in Postgres", &self.open_in_pg);
        if self.violations > 0 {
            out.push(format!("{} cooldown violations", self.violations));
        }
        if self.bad_signature_penalties > 0 {
            out.push(format!(
                "{} bad-signature penalties",
                self.bad_signature_penalties
            ));
        }
        if let Some(n) = self.refusals.get(&401) {
            out.push(format!(
                "{n} requests refused with 401 (signature or nonce)"
            ));
        }
        if self.unreadable_log_lines > 0 {
            out.push(format!(
                "{} unreadable validator log lines",
                self.unreadable_log_lines
            ));
        }
        out
    }
}

/// Judges the run from the validators' events and the Postgres rows.
pub fn check(
    events: &[ValidatorEvent],
    pg: &[PgTask],
    pulls_stopped: Vec<String>,
    unreadable_log_lines: usize,
) -> CheckReport {
    let mut report = CheckReport {
        unreadable_log_lines,
        pulls_stopped,
        ..CheckReport::default()
    };
    let mut handed_out: Vec<(String, String)> = Vec::new();
    let mut processed: HashMap<(String, String), Vec<&ValidatorEvent>> = HashMap::new();
    // Tasks a resend reached after the first copy (its answer lost in a fault).
    let mut resent: HashSet<(String, String)> = HashSet::new();
    for event in events {
        let key = || {
            (
                event.validator.clone(),
                event.task_id.clone().unwrap_or_default(),
            )
        };
        match event.kind.as_str() {
            "pull" if event.is_new_task() => handed_out.push(key()),
            "pull" if event.outcome.as_deref() == Some("same") => report.same_task_pulls += 1,
            "verdict" => {
                let outcome = event.outcome.as_deref().unwrap_or("");
                if PROCESSED.contains(&outcome) {
                    *report.verdicts.entry(outcome.to_owned()).or_default() += 1;
                    processed.entry(key()).or_default().push(event);
                } else if UNPROCESSED.contains(&outcome) {
                    report.in_doubt_resends += 1;
                    resent.insert(key());
                } else {
                    *report.verdicts.entry(outcome.to_owned()).or_default() += 1;
                }
            }
            "violation" => report.violations += 1,
            "penalty" => match event.reason.as_deref() {
                Some("bad_signature") => report.bad_signature_penalties += 1,
                _ => report.low_score_penalties += 1,
            },
            "rejected" => {
                let status = event.status.unwrap_or(0);
                *report.refusals.entry(status).or_default() += 1;
                let message = event.message.as_deref().unwrap_or("");
                match status {
                    403 => report.in_doubt_resends += 1,
                    401 if message.contains("Nonce is too old") => report.stale_requests += 1,
                    401 => report.unauthorized.push(format!(
                        "{}: {message}",
                        &event.validator[..event.validator.len().min(8)]
                    )),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    report.tasks_handed_out = handed_out.len();
    report.tasks_in_pg = pg.len();

    let pg_by_key: HashMap<(String, String), &PgTask> = pg
        .iter()
        .map(|t| ((t.validator.clone(), t.task_id.clone()), t))
        .collect();
    let handed_set: HashSet<&(String, String)> = handed_out.iter().collect();

    for key in &handed_out {
        let name = short(&key.0, &key.1);
        match processed.get(key).map(Vec::len).unwrap_or(0) {
            0 => {
                let pg_state = pg_by_key
                    .get(key)
                    .map(|t| format!("pg status {}", t.status))
                    .unwrap_or_else(|| "not in pg".into());
                report.lost.push(format!("{name}: {pg_state}"));
            }
            1 => {}
            n => report.duplicates.push(format!("{name}: {n} processed")),
        }
    }

    for (key, verdicts) in &processed {
        let name = short(&key.0, &key.1);
        let Some(verdict) = verdicts.first() else {
            continue;
        };
        let Some(task) = pg_by_key.get(key) else {
            report
                .missing_in_pg
                .push(format!("{name}: no task row ({:?})", verdict.outcome));
            continue;
        };
        if task.submission_state.as_deref() == Some("failed") && task.by_submitter {
            report
                .answers_lost
                .push(format!("{name}: validator saw {:?}", verdict.outcome));
            continue;
        }
        if task.submission_state.as_deref() != Some("completed") {
            report.missing_in_pg.push(format!(
                "{name}: submission {:?}, task {}",
                task.submission_state, task.status
            ));
            continue;
        }
        let outcome = verdict.outcome.as_deref().unwrap_or("");
        if resent.contains(key) && task.fidelity == Some(0.0) && outcome != "empty" {
            // The first copy was processed but its answer never came back (the send timed
            // out in a link fault); the resend was refused as "not your task" with fidelity 0,
            // and that refusal is all the fleet could see and record.
            report.answers_lost.push(format!(
                "{name}: validator saw {outcome}, the resend's refusal was recorded"
            ));
            continue;
        }
        let empty_in_log = outcome == "empty";
        if task.empty != Some(empty_in_log) {
            report.feedback_problems.push(format!(
                "{name}: validator saw {outcome}, pg empty = {:?}",
                task.empty
            ));
        }
        {
            // The validator's feedback (results and requested releases
            // alike): fidelity is the score when accepted, else 0.
            let want = if outcome == "accepted" {
                verdict.score.unwrap_or(0.0).min(1.0)
            } else {
                0.0
            };
            match (task.validation_failed, task.fidelity) {
                (Some(_), Some(got)) if (f64::from(got) - want).abs() < 1e-3 => {}
                (failed, got) => report.feedback_problems.push(format!(
                    "{name}: validator gave {outcome} fidelity {want:.4}, pg has validation_failed {failed:?} fidelity {got:?}"
                )),
            }
        }
    }

    for task in pg {
        let key = (task.validator.clone(), task.task_id.clone());
        let name = short(&task.validator, &task.task_id);
        *report.pg_statuses.entry(task.status.clone()).or_default() += 1;
        if !handed_set.contains(&key) {
            report
                .missing_in_log
                .push(format!("{name}: a task the validators never handed out"));
        }
        let completed = task.submission_state.as_deref() == Some("completed");
        let answer_lost = task.submission_state.as_deref() == Some("failed")
            && task.by_submitter
            && processed.contains_key(&key);
        if answer_lost {
            // Counted above; the task is closed (`failed`, with the send's error).
        } else if task.status == "expired" {
            match &task.status_reason {
                Some(reason) => report.expiries.push(format!("{name}: {reason}")),
                None => report
                    .open_in_pg
                    .push(format!("{name}: expired without a reason")),
            }
        } else if !completed || !matches!(task.status.as_str(), "submitted" | "submitted_empty") {
            report.open_in_pg.push(format!(
                "{name}: status {}, submission {:?}",
                task.status, task.submission_state
            ));
        }
        if completed && task.http_status == Some(200) && !processed.contains_key(&key) {
            report.missing_in_log.push(format!(
                "{name}: completed in pg, not processed by the validator"
            ));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, task: &str, outcome: Option<&str>) -> ValidatorEvent {
        ValidatorEvent {
            ts: 1.0,
            kind: kind.into(),
            validator: "5Validator".into(),
            task_id: Some(task.into()),
            outcome: outcome.map(Into::into),
            reason: None,
            status: None,
            message: None,
            score: Some(0.8),
            payload_chars: None,
        }
    }

    fn pg(task: &str, state: Option<&str>, status: &str) -> PgTask {
        PgTask {
            validator: "5Validator".into(),
            task_id: task.into(),
            status: status.into(),
            status_reason: None,
            submission_state: state.map(Into::into),
            empty: Some(false),
            http_status: Some(200),
            validation_failed: Some(false),
            fidelity: Some(0.8),
            by_submitter: true,
        }
    }

    #[test]
    fn a_clean_run_passes() {
        let events = [
            event("pull", "a", Some("new")),
            event("submit", "a", None),
            event("verdict", "a", Some("accepted")),
        ];
        let report = check(
            &events,
            &[pg("a", Some("completed"), "submitted")],
            Vec::new(),
            0,
        );
        assert!(report.failures().is_empty(), "{:?}", report.failures());
    }

    #[test]
    fn lost_duplicate_and_unrecorded_tasks_fail() {
        let events = [
            event("pull", "lost", Some("new")),
            event("pull", "twice", Some("new")),
            event("verdict", "twice", Some("accepted")),
            event("verdict", "twice", Some("accepted")),
            event("pull", "unrecorded", Some("new")),
            event("verdict", "unrecorded", Some("accepted")),
            event("verdict", "twice", Some("wrong_task")),
        ];
        let rows = [
            pg("lost", None, "queued"),
            pg("twice", Some("completed"), "submitted"),
            pg("ghost", Some("completed"), "submitted"),
        ];
        let report = check(&events, &rows, Vec::new(), 0);
        assert_eq!(report.lost.len(), 1, "{report:?}");
        assert_eq!(report.duplicates.len(), 1, "{report:?}");
        assert_eq!(report.missing_in_pg.len(), 1, "{report:?}");
        assert_eq!(report.in_doubt_resends, 1);
        // "ghost": never handed out, and completed without a validator verdict.
        assert_eq!(report.missing_in_log.len(), 2, "{report:?}");
        assert_eq!(report.open_in_pg.len(), 1, "{report:?}");
        assert_eq!(report.failures().len(), 5, "{:?}", report.failures());
    }

    #[test]
    fn a_resend_refused_after_its_first_copy_was_accepted_is_counted_not_failed() {
        let events = [
            event("pull", "a", Some("new")),
            event("verdict", "a", Some("accepted")),
            event("verdict", "a", Some("wrong_task")),
        ];
        let mut row = pg("a", Some("completed"), "submitted");
        row.validation_failed = Some(false);
        row.fidelity = Some(0.0);
        let report = check(&events, &[row.clone()], Vec::new(), 0);
        assert_eq!(report.answers_lost.len(), 1, "{report:?}");
        assert!(report.failures().is_empty(), "{:?}", report.failures());
        // Without the resend, the same rows are a feedback mismatch.
        let report = check(&events[..2], &[row], Vec::new(), 0);
        assert_eq!(report.feedback_problems.len(), 1, "{report:?}");
    }

    #[test]
    fn a_processed_submission_whose_answer_was_lost_is_counted_not_failed() {
        let events = [
            event("pull", "a", Some("new")),
            event("verdict", "a", Some("accepted")),
        ];
        let mut row = pg("a", Some("failed"), "failed");
        row.validation_failed = None;
        row.fidelity = None;
        let report = check(&events, &[row], Vec::new(), 0);
        assert_eq!(report.answers_lost.len(), 1, "{report:?}");
        assert!(report.failures().is_empty(), "{:?}", report.failures());
    }
}
