//! The submitter's Prometheus metrics: submissions by validator and outcome, validator
//! scores, penalties, end-to-end time from pull to feedback, submit latency, send retries,
//! releases of lost tasks and PostgreSQL retries. Validator hotkeys are labels; task ids never are.

use metrics::{counter, describe_counter, describe_histogram, histogram, Unit};
use splatfleet_common::telemetry::uid_label;

/// Describes every metric once at start.
pub fn describe() {
    describe_counter!(
        "splatfleet_submitter_submissions_total",
        "Results handled, by validator and outcome (accepted, rejected, validation_failed, \
         empty, refused, gave_up, duplicate, late, unloadable)."
    );
    describe_histogram!(
        "splatfleet_submitter_validator_score",
        "task_fidelity_score the validator gave non-empty submissions."
    );
    describe_counter!(
        "splatfleet_submitter_penalties_total",
        "Non-empty submissions the validator scored 0 without failing validation (the 600 s penalty)."
    );
    describe_histogram!(
        "splatfleet_submitter_pull_to_feedback_seconds",
        Unit::Seconds,
        "Time from the puller's pull to the validator's feedback."
    );
    describe_histogram!(
        "splatfleet_submitter_submit_seconds",
        Unit::Seconds,
        "Duration of one SubmitResults call, by validator."
    );
    describe_counter!(
        "splatfleet_submitter_send_retries_total",
        "SubmitResults calls sent again after a transient failure, by validator."
    );
    describe_counter!(
        "splatfleet_submitter_releases_total",
        "Empty releases of lost tasks sent (the puller requests them), by validator and outcome \
         (released, not_held, failed, interrupted)."
    );
    describe_counter!(
        "splatfleet_submitter_db_retries_total",
        "PostgreSQL operations retried because the database was unavailable."
    );
}

pub fn submission(validator: &str, uid: Option<u16>, outcome: &'static str) {
    counter!("splatfleet_submitter_submissions_total", "validator" => validator.to_owned(), "uid" => uid_label(uid), "outcome" => outcome)
        .increment(1);
}

pub fn score(validator: &str, uid: Option<u16>, score: f64) {
    histogram!("splatfleet_submitter_validator_score", "validator" => validator.to_owned(), "uid" => uid_label(uid))
        .record(score);
}

pub fn penalty(validator: &str, uid: Option<u16>) {
    counter!("splatfleet_submitter_penalties_total", "validator" => validator.to_owned(), "uid" => uid_label(uid))
        .increment(1);
}

pub fn pull_to_feedback(seconds: f64) {
    histogram!("splatfleet_submitter_pull_to_feedback_seconds").record(seconds);
}

pub fn submit_latency(validator: &str, uid: Option<u16>, seconds: f64) {
    histogram!("splatfleet_submitter_submit_seconds", "validator" => validator.to_owned(), "uid" => uid_label(uid))
        .record(seconds);
}

pub fn send_retry(validator: &str, uid: Option<u16>) {
    counter!("splatfleet_submitter_send_retries_total", "validator" => validator.to_owned(), "uid" => uid_label(uid))
        .increment(1);
}

pub fn released(validator: &str, uid: Option<u16>, outcome: &'static str) {
    counter!("splatfleet_submitter_releases_total", "validator" => validator.to_owned(), "uid" => uid_label(uid), "outcome" => outcome)
        .increment(1);
}

pub fn db_retry() {
    counter!("splatfleet_submitter_db_retries_total").increment(1);
}

#[cfg(test)]
mod tests {
    use splatfleet_common::telemetry::render_recorded;

    #[test]
    fn per_validator_metrics_carry_the_uid_beside_the_hotkey() {
        let text = render_recorded(|| {
            super::submission("5Hot", Some(3), "accepted");
            super::penalty("5Hot", Some(3));
            super::send_retry("5Hot", Some(3));
            super::released("5Old", None, "released");
        });
        for line in [
            r#"splatfleet_submitter_submissions_total{validator="5Hot",uid="3",outcome="accepted"} 1"#,
            r#"splatfleet_submitter_penalties_total{validator="5Hot",uid="3"} 1"#,
            r#"splatfleet_submitter_send_retries_total{validator="5Hot",uid="3"} 1"#,
            r#"splatfleet_submitter_releases_total{validator="5Old",uid="",outcome="released"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in:\n{text}");
        }
    }
}
