//! The cooldown arithmetic, written once: a validator's cooldown only ever moves later
//! (`greatest` of what we knew and what we learned), and a validator that no longer holds a
//! released task is assumed to cool down for the configured time from now.

/// SQL that raises `validator_state.cooldown_until` to the timestamp expression `until`
/// (unix seconds as float8): the `SET` clause of every statement that learns a cooldown.
pub(crate) fn raise_sql(until: &str) -> String {
    format!(
        "cooldown_until = greatest(validator_state.cooldown_until, to_timestamp({until})),
         updated_at = now()"
    )
}

/// The cooldown assumed after a release the validator answered with "not held" (unix
/// seconds): it gave us no cooldown, so we wait the configured time.
pub fn assumed_until(now_secs: f64, assumed_cooldown_secs: f64) -> f64 {
    now_secs + assumed_cooldown_secs
}

/// A cooldown a validator answered with (unix seconds, 0 for none) as the ledger stores it.
pub fn answered_until(cooldown_until: i64) -> Option<f64> {
    (cooldown_until > 0).then_some(cooldown_until as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_cooldown_is_none_and_the_assumed_one_counts_from_now() {
        assert_eq!(answered_until(0), None);
        assert_eq!(answered_until(1_900_000_000), Some(1_900_000_000.0));
        assert_eq!(assumed_until(100.0, 300.0), 400.0);
        assert!(raise_sql("$2").contains("greatest(validator_state.cooldown_until"));
    }
}
