//! A task's time budget: the larger of the configured minimum and the validator's throttle
//! period minus a margin (time inside the throttle period is free; after it each second delays
//! that validator's next task), and never past the task's deadline.

/// When the retry ladder must stop starting or waiting on attempts, unix milliseconds.
pub fn budget_end_unix_ms(
    started_unix_ms: i64,
    throttle_period_secs: u32,
    deadline_unix_ms: i64,
    min_budget_ms: u64,
    margin_ms: u64,
) -> i64 {
    let throttle_ms = u64::from(throttle_period_secs) * 1000;
    let budget_ms = throttle_ms.saturating_sub(margin_ms).max(min_budget_ms);
    let budget_ms = i64::try_from(budget_ms).unwrap_or(i64::MAX);
    started_unix_ms
        .saturating_add(budget_ms)
        .min(deadline_unix_ms)
}

#[cfg(test)]
mod tests {
    use super::budget_end_unix_ms;

    #[test]
    fn throttle_minus_margin_wins_over_a_smaller_minimum() {
        assert_eq!(budget_end_unix_ms(0, 30, 1_000_000, 20_000, 3_000), 27_000);
    }

    #[test]
    fn minimum_applies_when_throttle_is_zero() {
        assert_eq!(budget_end_unix_ms(0, 0, 1_000_000, 20_000, 3_000), 20_000);
    }

    #[test]
    fn never_past_the_deadline() {
        assert_eq!(budget_end_unix_ms(0, 300, 10_000, 20_000, 3_000), 10_000);
    }
}
