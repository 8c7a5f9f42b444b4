//! The ledger: the one owner of the task and submission lifecycle in PostgreSQL. Every
//! INSERT, UPDATE and DELETE on `tasks`, `submissions` and `attempts` lives in this module;
//! the puller and the submitter (and their tests) call it.
//!
//! The lifecycle:
//!
//! ```text
//! task:        queued ──▶ … ──▶ submitted | submitted_empty | failed | expired
//!                 │  (recorded in the transaction that publishes it)
//!                 └─(the submitter records a task the puller never did)── generated
//! submission:  (none) ──claim──▶ sending ──finish──▶ completed | failed
//!                                   ▲                              │
//!                                   └──── release (empty) ◀────────┘ (failed only)
//! ```
//!
//! A task has at most one submission. A `sending` row with a `claimed_by` is a submitter's,
//! held for `lease_until` (renewed on each send, taken over once it runs out); a `sending` row
//! whose `claimed_by` is NULL is a requested empty release of a task the fleet lost (the
//! puller requests it, a submitter's release loop holds it in `released_by` and sends it: the
//! submitter is the one role that signs). Finishing records the submission with the
//! validator's feedback, the task's terminal status and the validator's cooldown in one
//! statement, and announces the close to the puller ([`closed`]). A task costs three commits:
//! the puller's record-and-publish, the submitter's claim and its finish.
//!
//! One job per file: [`status`] (the status lists), [`cooldown`] (the cooldown arithmetic),
//! [`validators`] (validator rows, state, exclusions, blacklist, the puller's snapshot),
//! [`tasks`] (recording tasks as they are published, adopting unknown ones, finding lost ones),
//! [`claim`] (claiming, leasing and reading the submission row), [`attempts`] (a result's
//! attempt rows), [`finish`] (finishing a submission, late and unloadable results),
//! [`release`] (the empty release of a lost task: request, take, finish), [`closed`] (the
//! notice a closed task sends the puller), [`verdicts`]
//! (accepted / penalised figures from the `submission_verdicts` view). `seed` (feature
//! `test-support`, for tests and tools only) sets up the few states tests need that the roles
//! never write.

pub mod attempts;
pub mod claim;
pub mod closed;
pub mod cooldown;
pub mod finish;
pub mod release;
#[cfg(feature = "test-support")]
pub mod seed;
pub mod status;
pub mod tasks;
pub mod validators;
pub mod verdicts;

pub use claim::{claim, claim_first, mark_sending, release_lease, submission_state};
pub use claim::{Claim, ClaimRequest, FirstClaim, SubmissionRow};
pub use finish::{finish, record_late, record_unloadable, Finish};
pub use release::{finish_release, request_release, take_releases, ReleaseJob, ReleaseRecord};
pub use status::{SubmissionState, TaskStatus, Verdict};
pub use tasks::{
    find_or_adopt_task, insert_task, lost_tasks, record_task, LostTask, Recorded, TaskInsert,
    TaskRow,
};
pub use verdicts::{recent_verdicts, SubmissionStats};

use crate::db::{DbError, Pool};

async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, DbError> {
    Ok(pool.get().await?)
}

/// `sql` prepared once per pooled connection: a statement prepared on the fly costs a round
/// trip of its own before it runs.
async fn prepared(
    client: &deadpool_postgres::Object,
    sql: &str,
) -> Result<tokio_postgres::Statement, DbError> {
    Ok(client.prepare_cached(sql).await?)
}
