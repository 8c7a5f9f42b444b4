//! The only spelling of each status in Rust: a task's `tasks.status`, a submission's
//! `submissions.state`, and a submission's verdict (`submission_verdict()` in
//! `sql/migrations/0007_ledger_views.sql`). The migrations' CHECK lists and the verdict
//! function must agree with these lists; the tests below read them from the migration files.

use std::fmt;

macro_rules! sql_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in the migration's order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The text stored in Postgres.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// The value stored as `text`; `None` for text this build does not know.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

sql_enum! {
    /// Where a task stands (`tasks.status`).
    TaskStatus {
        /// Recorded, not yet queued (unused by the roles today; the column's default).
        Pulled => "pulled",
        /// Recorded by the puller in the transaction that publishes it.
        Queued => "queued",
        Generating => "generating",
        /// A result exists but was not submitted (adopted by the submitter, or unloadable).
        Generated => "generated",
        Submitting => "submitting",
        /// The validator processed our model.
        Submitted => "submitted",
        /// The validator took an empty submission (a release, or nothing worth submitting).
        SubmittedEmpty => "submitted_empty",
        /// The validator no longer held the task when we released it.
        Expired => "expired",
        /// Our submission was refused or never delivered.
        Failed => "failed",
    }
}

impl TaskStatus {
    /// The statuses after which the validator no longer holds the task for us.
    pub const TERMINAL: [Self; 4] = [
        Self::Submitted,
        Self::SubmittedEmpty,
        Self::Expired,
        Self::Failed,
    ];

    pub fn is_terminal(self) -> bool {
        Self::TERMINAL.contains(&self)
    }

    /// `'submitted', 'submitted_empty', 'expired', 'failed'`: the terminal list as SQL
    /// literals, for `status NOT IN (...)`.
    pub fn terminal_sql_list() -> String {
        sql_list(Self::TERMINAL.iter().map(|s| s.as_str()))
    }
}

sql_enum! {
    /// Where a task's one submission stands (`submissions.state`).
    SubmissionState {
        /// Claimed and being sent (or a release waiting for its sender).
        Sending => "sending",
        /// The validator answered.
        Completed => "completed",
        /// Refused, or never delivered: the validator did not process it.
        Failed => "failed",
    }
}

sql_enum! {
    /// What a submission came to (`submission_verdict()`, the `submission_verdicts` view).
    Verdict {
        /// Scored above zero.
        Accepted => "accepted",
        /// Scored zero without failing validation: the validator's 600 s penalty.
        Penalised => "penalised",
        /// Validation failed: scored zero, no penalty.
        ValidationFailed => "validation_failed",
        /// An empty submission the validator took.
        Empty => "empty",
        /// Refused or never delivered: the validator did not process it.
        Lost => "lost",
        /// Not finished yet.
        Sending => "sending",
    }
}

impl Verdict {
    /// The verdicts of a completed non-empty submission (the acceptance figures' denominator).
    pub const JUDGED: [Self; 3] = [Self::Accepted, Self::Penalised, Self::ValidationFailed];
}

/// `'a', 'b'`: values as SQL string literals (the values are this module's constants).
fn sql_list<'a>(values: impl Iterator<Item = &'a str>) -> String {
    values
        .map(|v| format!("'{v}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const INITIAL: &str = include_str!("../../../sql/migrations/0001_initial.sql");
    const VIEWS: &str = include_str!("../../../sql/migrations/0007_ledger_views.sql");

    /// The quoted values of the first `IN (...)` list after `anchor` in `sql`.
    fn in_list(sql: &str, anchor: &str) -> Vec<String> {
        let start = sql
            .find(anchor)
            .unwrap_or_else(|| panic!("`{anchor}` in the migration"));
        let rest = &sql[start..];
        let open = rest.find("IN (").expect("an IN list") + 4;
        let close = rest[open..].find(')').expect("a closed IN list") + open;
        quoted(&rest[open..close])
    }

    fn quoted(text: &str) -> Vec<String> {
        text.split('\'')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    fn texts<T: Copy>(values: &[T], as_str: fn(T) -> &'static str) -> Vec<String> {
        values.iter().map(|v| as_str(*v).to_owned()).collect()
    }

    #[test]
    fn task_statuses_match_the_check_constraint() {
        assert_eq!(
            in_list(INITIAL, "status               text NOT NULL"),
            texts(TaskStatus::ALL, TaskStatus::as_str)
        );
    }

    #[test]
    fn terminal_statuses_match_the_open_tasks_index() {
        let index = &INITIAL[INITIAL.find("CREATE INDEX tasks_open_idx").expect("index")..];
        assert_eq!(
            in_list(index, "NOT IN"),
            texts(&TaskStatus::TERMINAL, TaskStatus::as_str)
        );
        assert_eq!(
            quoted(&TaskStatus::terminal_sql_list()),
            texts(&TaskStatus::TERMINAL, TaskStatus::as_str)
        );
    }

    #[test]
    fn submission_states_match_the_check_constraint() {
        assert_eq!(
            in_list(INITIAL, "state                         text NOT NULL"),
            texts(SubmissionState::ALL, SubmissionState::as_str)
        );
    }

    #[test]
    fn verdicts_match_the_verdict_function() {
        let body = &VIEWS[VIEWS.find("SELECT CASE").expect("the function's CASE")..];
        let body = &body[..body.find("END").expect("the CASE's END")];
        let mut found: Vec<String> = body
            .lines()
            .filter_map(|line| {
                line.split_once("THEN")
                    .or_else(|| line.split_once("ELSE"))
                    .map(|(_, value)| quoted(value))
            })
            .flatten()
            .collect();
        let mut wanted = texts(Verdict::ALL, Verdict::as_str);
        found.sort();
        wanted.sort();
        assert_eq!(found, wanted);
    }

    #[test]
    fn values_round_trip() {
        for status in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(status.as_str()), Some(*status));
        }
        for verdict in Verdict::ALL {
            assert_eq!(Verdict::parse(verdict.as_str()), Some(*verdict));
        }
        assert_eq!(SubmissionState::parse("nope"), None);
    }
}
