//! The puller's metrics: names, descriptions and the small helpers that record them.
//! Validator hotkeys are labels (`validator`, with the uid beside it as `uid`); task ids never
//! are.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

use splatfleet_common::telemetry::uid_label;

use crate::validator_set::ExclusionReason;

pub fn describe() {
    describe_counter!(
        "splatfleet_puller_pulls_total",
        "PullTask calls by validator and outcome (task, same_task, cooldown, violation, unavailable, unauthorized, refused, error)."
    );
    describe_counter!(
        "splatfleet_puller_cooldown_violations_total",
        "Pulls the validator counted as cooldown violations; should stay at zero."
    );
    describe_histogram!(
        "splatfleet_puller_pull_to_publish_seconds",
        Unit::Seconds,
        "Time from sending PullTask to the broker confirming the task's message."
    );
    describe_gauge!(
        "splatfleet_puller_close_notices_listening",
        "1 while the puller listens for the submitter's closed-task notices; 0 while it reads \
         Postgres every tick instead (the listening connection is down)."
    );
    describe_gauge!(
        "splatfleet_puller_validators_eligible",
        "Validators the puller may pull from."
    );
    describe_gauge!(
        "splatfleet_puller_validators_excluded",
        "Validators left out, by reason."
    );
    describe_gauge!(
        "splatfleet_puller_tasks_ready",
        "Ready messages in the tasks queue (the capacity signal)."
    );
    describe_gauge!(
        "splatfleet_puller_task_consumers",
        "Workers consuming the tasks queue (the capacity signal)."
    );
    describe_gauge!(
        "splatfleet_puller_pull_slots_free",
        "Pulls the capacity signal allows right now."
    );
    describe_gauge!(
        "splatfleet_puller_pulls_in_flight",
        "PullTask calls in flight."
    );
    describe_counter!(
        "splatfleet_puller_discovery_failures_total",
        "Validator discovery refreshes that failed (the last good set is kept)."
    );
    describe_gauge!(
        "splatfleet_puller_discovery_stale",
        "1 while the validator set in use is from an earlier discovery because the last refresh failed or found no validator (the last good set is kept, never an empty one), else 0."
    );
    describe_gauge!(
        "splatfleet_puller_discovery_last_success_timestamp_seconds",
        "Unix time of the last successful validator discovery."
    );
    describe_counter!(
        "splatfleet_puller_releases_requested_total",
        "Empty releases requested (the submitter sends them), by validator and reason: `lost` (no result by the deadline), `still_held` (the validator still held a task we closed)."
    );
    describe_counter!(
        "splatfleet_puller_publish_failures_total",
        "Task publishes that failed (the task is retried)."
    );
    describe_gauge!(
        "splatfleet_broker_queue_messages_ready",
        "Messages ready for delivery in each fleet queue (tasks, results, dead), read by the puller."
    );
    describe_gauge!(
        "splatfleet_broker_queue_consumers",
        "Consumers of each fleet queue (tasks, results, dead), read by the puller."
    );
    describe_gauge!(
        "splatfleet_puller_validator_unauthorized",
        "1 while a validator refuses our signature or nonce (401): check the clock and keys."
    );
}

pub fn pull(validator: &str, uid: Option<u16>, outcome: &'static str) {
    metrics::counter!("splatfleet_puller_pulls_total", "validator" => validator.to_owned(), "uid" => uid_label(uid), "outcome" => outcome)
        .increment(1);
}

pub fn violation(validator: &str, uid: Option<u16>) {
    metrics::counter!("splatfleet_puller_cooldown_violations_total", "validator" => validator.to_owned(), "uid" => uid_label(uid))
        .increment(1);
}

pub fn release_requested(validator: &str, uid: Option<u16>, reason: &'static str) {
    metrics::counter!("splatfleet_puller_releases_requested_total", "validator" => validator.to_owned(), "uid" => uid_label(uid), "reason" => reason)
        .increment(1);
}

pub fn unauthorized(validator: &str, uid: Option<u16>) {
    metrics::gauge!("splatfleet_puller_validator_unauthorized", "validator" => validator.to_owned(), "uid" => uid_label(uid))
        .set(1.0);
}

pub fn validator_set(eligible: usize, excluded: &[crate::validator_set::Exclusion]) {
    metrics::gauge!("splatfleet_puller_validators_eligible").set(eligible as f64);
    for reason in ExclusionReason::ALL {
        let n = excluded.iter().filter(|e| e.reason == reason).count();
        metrics::gauge!("splatfleet_puller_validators_excluded", "reason" => reason.as_str())
            .set(n as f64);
    }
}

pub fn discovery_stale(stale: bool) {
    metrics::gauge!("splatfleet_puller_discovery_stale").set(if stale { 1.0 } else { 0.0 });
}

pub fn queue(queue: &str, ready: u32, consumers: u32) {
    metrics::gauge!("splatfleet_broker_queue_messages_ready", "queue" => queue.to_owned())
        .set(f64::from(ready));
    metrics::gauge!("splatfleet_broker_queue_consumers", "queue" => queue.to_owned())
        .set(f64::from(consumers));
}

#[cfg(test)]
mod tests {
    use splatfleet_common::telemetry::render_recorded;

    #[test]
    fn per_validator_metrics_carry_the_uid_beside_the_hotkey() {
        let text = render_recorded(|| {
            super::pull("5Hot", Some(7), "task");
            super::violation("5Hot", Some(7));
            super::unauthorized("5Hot", Some(7));
            super::release_requested("5Gone", None, "lost");
        });
        for line in [
            r#"splatfleet_puller_pulls_total{validator="5Hot",uid="7",outcome="task"} 1"#,
            r#"splatfleet_puller_cooldown_violations_total{validator="5Hot",uid="7"} 1"#,
            r#"splatfleet_puller_validator_unauthorized{validator="5Hot",uid="7"} 1"#,
            r#"splatfleet_puller_releases_requested_total{validator="5Gone",uid="",reason="lost"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in:\n{text}");
        }
    }
}
