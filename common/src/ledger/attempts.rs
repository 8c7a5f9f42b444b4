//! A result's attempt rows: every attempt of a `ResultMsg` inserted in one statement (one
//! array per column), idempotent per (task, attempt number), with the gate mode and the
//! predicted validator score read from each attempt's gate metrics.

use std::sync::LazyLock;

use crate::{
    db::DbError,
    messages::{ResultMsg, ResultOutcome},
};

fn gpu_of(worker: &str) -> Option<i16> {
    worker
        .rsplit('/')
        .next()
        .and_then(|last| last.strip_prefix("gpu"))
        .and_then(|n| n.parse().ok())
}

fn json_of<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_else(|_| serde_json::json!({}))
}

/// A result's attempts as one array per column, so one statement inserts them all.
pub(crate) struct AttemptColumns {
    worker: String,
    gpu: Option<i16>,
    attempt_no: Vec<i16>,
    params: Vec<serde_json::Value>,
    started: Vec<f64>,
    finished: Vec<f64>,
    stage_ms: Vec<serde_json::Value>,
    gaussians: Vec<Option<i32>>,
    local_score: Vec<Option<f32>>,
    gate_passed: Vec<Option<bool>>,
    gate_metrics: Vec<serde_json::Value>,
    ply_key: Vec<Option<String>>,
    ply_sha256: Vec<Option<String>>,
    ply_bytes: Vec<Option<i64>>,
    spz_key: Vec<Option<String>>,
    spz_sha256: Vec<Option<String>>,
    spz_bytes: Vec<Option<i64>>,
    preview_key: Vec<Option<String>>,
    error: Vec<Option<String>>,
    /// The chosen attempt's `attempt_no` for a ready result.
    pub(crate) chosen_no: Option<i16>,
}

/// How many parameters [`AttemptColumns::params`] gives.
pub(crate) const ATTEMPT_PARAMS: usize = 19;

impl AttemptColumns {
    pub(crate) fn of(msg: &ResultMsg) -> Self {
        let chosen = match &msg.outcome {
            ResultOutcome::Ready {
                chosen_attempt,
                spz,
                preview,
                ..
            } => Some((usize::from(*chosen_attempt), spz.as_ref(), preview.as_ref())),
            ResultOutcome::Empty { .. } => None,
        };
        let n = msg.attempts.len();
        let mut columns = Self {
            worker: msg.worker.clone(),
            gpu: gpu_of(&msg.worker),
            attempt_no: Vec::with_capacity(n),
            params: Vec::with_capacity(n),
            started: Vec::with_capacity(n),
            finished: Vec::with_capacity(n),
            stage_ms: Vec::with_capacity(n),
            gaussians: Vec::with_capacity(n),
            local_score: Vec::with_capacity(n),
            gate_passed: Vec::with_capacity(n),
            gate_metrics: Vec::with_capacity(n),
            ply_key: Vec::with_capacity(n),
            ply_sha256: Vec::with_capacity(n),
            ply_bytes: Vec::with_capacity(n),
            spz_key: Vec::with_capacity(n),
            spz_sha256: Vec::with_capacity(n),
            spz_bytes: Vec::with_capacity(n),
            preview_key: Vec::with_capacity(n),
            error: Vec::with_capacity(n),
            chosen_no: chosen.map(|(index, _, _)| attempt_no_of(index)),
        };
        let bytes = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for (index, attempt) in msg.attempts.iter().enumerate() {
            let started = attempt.started_at_unix_ms as f64 / 1000.0;
            let took_ms: u64 = attempt.stage_ms.values().map(|&ms| u64::from(ms)).sum();
            let (spz, preview) = match chosen {
                Some((chosen_index, spz, preview)) if chosen_index == index => (spz, preview),
                _ => (None, None),
            };
            let ply = attempt.ply.as_ref();
            columns.attempt_no.push(attempt_no_of(index));
            columns.params.push(json_of(&attempt.params));
            columns.started.push(started);
            columns.finished.push(started + took_ms as f64 / 1000.0);
            columns.stage_ms.push(json_of(&attempt.stage_ms));
            columns.gaussians.push(
                attempt
                    .gaussian_count
                    .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            );
            columns
                .local_score
                .push(attempt.local_score.filter(|s| s.is_finite()));
            columns.gate_passed.push(attempt.gate_passed);
            columns.gate_metrics.push(json_of(&attempt.gate_metrics));
            columns.ply_key.push(ply.map(|a| a.key.clone()));
            columns
                .ply_sha256
                .push(ply.map(|a| a.sha256.to_ascii_lowercase()));
            columns.ply_bytes.push(ply.map(|a| bytes(a.bytes)));
            columns.spz_key.push(spz.map(|a| a.key.clone()));
            columns
                .spz_sha256
                .push(spz.map(|a| a.sha256.to_ascii_lowercase()));
            columns.spz_bytes.push(spz.map(|a| bytes(a.bytes)));
            columns.preview_key.push(preview.map(|a| a.key.clone()));
            columns.error.push(attempt.error.clone());
        }
        columns
    }

    /// The parameters of [`insert_attempts_sql`], in its order.
    pub(crate) fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); ATTEMPT_PARAMS] {
        [
            &self.worker,
            &self.gpu,
            &self.attempt_no,
            &self.params,
            &self.started,
            &self.finished,
            &self.stage_ms,
            &self.gaussians,
            &self.local_score,
            &self.gate_passed,
            &self.gate_metrics,
            &self.ply_key,
            &self.ply_sha256,
            &self.ply_bytes,
            &self.spz_key,
            &self.spz_sha256,
            &self.spz_bytes,
            &self.preview_key,
            &self.error,
        ]
    }
}

fn attempt_no_of(index: usize) -> i16 {
    i16::try_from(index + 1).unwrap_or(i16::MAX)
}

/// Inserts every attempt of a result in one statement (idempotent: a redelivery writes
/// nothing twice), for the task row `task` (an SQL expression over `from`), taking the
/// [`AttemptColumns::params`] as `$first` onwards; returns the new rows' `id, attempt_no`.
pub(crate) fn insert_attempts_sql(task: &str, from: &str, first: usize) -> String {
    let p = |i: usize| format!("${}", first + i);
    format!(
        "INSERT INTO attempts (task_id, attempt_no, worker, gpu, params, started_at,
                               finished_at, stage_ms, gaussian_count, local_score, gate_passed,
                               gate_metrics, ply_key, ply_sha256, ply_bytes, spz_key,
                               spz_sha256, spz_bytes, preview_key, error, gate_mode,
                               predicted_score, predicted_iqa, predicted_alignment,
                               predicted_ssim, predicted_lpips, alignment_assumed)
         SELECT {task}, a.attempt_no, {worker}::text, {gpu}::smallint, a.params,
                to_timestamp(a.started), to_timestamp(a.finished), a.stage_ms, a.gaussians,
                a.local_score, a.gate_passed, a.gate_metrics, a.ply_key, a.ply_sha256,
                a.ply_bytes, a.spz_key, a.spz_sha256, a.spz_bytes, a.preview_key, a.error,
                {gate_mode}, {predicted}
         FROM {from}unnest({}::smallint[], {}::jsonb[], {}::float8[], {}::float8[],
                     {}::jsonb[], {}::integer[], {}::real[], {}::boolean[], {}::jsonb[],
                     {}::text[], {}::text[], {}::bigint[], {}::text[], {}::text[],
                     {}::bigint[], {}::text[], {}::text[])
              AS a(attempt_no, params, started, finished, stage_ms, gaussians, local_score,
                   gate_passed, gate_metrics, ply_key, ply_sha256, ply_bytes, spz_key,
                   spz_sha256, spz_bytes, preview_key, error)
         ORDER BY a.attempt_no
         ON CONFLICT (task_id, attempt_no) DO NOTHING
         RETURNING id, attempt_no",
        p(2),
        p(3),
        p(4),
        p(5),
        p(6),
        p(7),
        p(8),
        p(9),
        p(10),
        p(11),
        p(12),
        p(13),
        p(14),
        p(15),
        p(16),
        p(17),
        p(18),
        worker = p(0),
        gpu = p(1),
        gate_mode = GATE_MODE_SQL,
        predicted = predicted_sql(),
    )
}

/// The gate mode an attempt's metrics name (`<mode key> = 1`, `worker::gate::gate_mode_metric`);
/// NULL when it never reached the gate.
const GATE_MODE_SQL: &str = "CASE WHEN a.gate_metrics ? 'gate_mode_validator' THEN 'validator'
                     WHEN a.gate_metrics ? 'gate_mode_geometry' THEN 'geometry'
                     WHEN a.gate_metrics ? 'validity_only' THEN 'validity_only'
                END";

/// The predicted score and its parts from the attempt's metrics, in the columns' order (a
/// number, or NULL: a NaN travels as JSON null), and whether alignment was assumed.
fn predicted_sql() -> String {
    let number = |key: &str| {
        format!(
            "CASE WHEN jsonb_typeof(a.gate_metrics -> '{key}') = 'number'
                     THEN (a.gate_metrics ->> '{key}')::float8 END"
        )
    };
    let mut columns: Vec<String> = [
        "predicted_score",
        "predicted_iqa",
        "predicted_alignment",
        "predicted_ssim",
        "predicted_lpips",
    ]
    .iter()
    .map(|key| number(key))
    .collect();
    columns.push(format!("({}) <> 0", number("alignment_assumed")));
    columns.join(",\n                ")
}

/// [`record_attempts`]' statement: the task row is `$1`.
static RECORD_ATTEMPTS_SQL: LazyLock<String> =
    LazyLock::new(|| insert_attempts_sql("$1::bigint", "", 2));

/// Inserts the result's attempts (idempotent: a redelivery writes nothing twice).
pub(crate) async fn record_attempts(
    client: &impl deadpool_postgres::GenericClient,
    task_row: i64,
    msg: &ResultMsg,
) -> Result<(), DbError> {
    let columns = AttemptColumns::of(msg);
    let statement = client.prepare_cached(&RECORD_ATTEMPTS_SQL).await?;
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&task_row];
    params.extend(columns.params());
    client.execute(&statement, &params).await?;
    Ok(())
}
