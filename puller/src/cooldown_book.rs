//! The `CooldownBook`: per validator, the unix time before which pulling counts as a
//! cooldown violation. Fed by PullTask answers, by the submitter's recorded feedback (read
//! from Postgres, so it survives restarts) and by released lost tasks. It only ever moves a
//! cooldown later: an older report can never shorten a newer one.

use std::collections::HashMap;

/// Cooldowns by validator hotkey, in unix seconds.
#[derive(Debug, Clone, Default)]
pub struct CooldownBook {
    until: HashMap<String, f64>,
    /// Waited past `cooldown_until` before a validator counts as cool: the validator's clock
    /// and ours differ, and it truncates to whole seconds.
    margin_secs: f64,
}

impl CooldownBook {
    pub fn new(margin_secs: f64) -> Self {
        Self {
            until: HashMap::new(),
            margin_secs: margin_secs.max(0.0),
        }
    }

    /// Records a cooldown reported for `hotkey`; keeps the later of the known and the new one.
    pub fn raise(&mut self, hotkey: &str, until_unix_secs: f64) {
        if !until_unix_secs.is_finite() {
            return;
        }
        let entry = self.until.entry(hotkey.to_owned()).or_insert(0.0);
        if until_unix_secs > *entry {
            *entry = until_unix_secs;
        }
    }

    /// The validator's `cooldown_until` as last known (0 when never on cooldown).
    pub fn cooldown_until(&self, hotkey: &str) -> f64 {
        self.until.get(hotkey).copied().unwrap_or(0.0)
    }

    /// The first moment a pull to `hotkey` cannot be a violation.
    pub fn cool_at(&self, hotkey: &str) -> f64 {
        match self.until.get(hotkey) {
            Some(&until) if until > 0.0 => until + self.margin_secs,
            _ => 0.0,
        }
    }

    pub fn is_cool(&self, hotkey: &str, now: f64) -> bool {
        now >= self.cool_at(hotkey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shortens_and_adds_the_margin() {
        let mut book = CooldownBook::new(2.0);
        assert!(book.is_cool("a", 0.0));
        book.raise("a", 100.0);
        book.raise("a", 50.0);
        assert_eq!(book.cooldown_until("a"), 100.0);
        assert!(!book.is_cool("a", 101.0));
        assert!(book.is_cool("a", 102.0));
        book.raise("a", f64::NAN);
        assert_eq!(book.cooldown_until("a"), 100.0);
    }
}
