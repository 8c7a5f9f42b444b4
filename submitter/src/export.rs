//! The training-data export: one JSON line per accepted generation (validator score at least
//! `--min-score`), written by `sql/reports/export_accepted.sql`, with the prompt or image
//! reference, generation parameters, gate metrics, scores and artifact keys.

use std::io::Write;

use splatfleet_common::db::Pool;

use crate::reports::{self, ReportError};

/// Which task types to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskTypeFilter {
    Any,
    Text,
    Image,
}

impl TaskTypeFilter {
    fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::Text => "text",
            Self::Image => "image",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("writing the export: {0}")]
    Write(#[from] std::io::Error),
}

/// The export's lines, oldest submission first.
pub async fn accepted_lines(
    pool: &Pool,
    min_score: f64,
    task_type: TaskTypeFilter,
    since: &str,
) -> Result<Vec<String>, ExportError> {
    let values = [
        ("since", reports::since_interval(since)?),
        ("min_score", min_score.to_string()),
        ("task_type", task_type.as_str().to_owned()),
    ];
    let table = reports::run_sql(
        pool,
        include_str!("../../sql/reports/export_accepted.sql"),
        &values,
    )
    .await?;
    Ok(table
        .rows
        .iter()
        .filter_map(|row| row.first().and_then(|v| v.as_str()).map(str::to_owned))
        .collect())
}

/// Writes the lines to `out`, one JSON object each; returns how many.
pub fn write_lines(lines: &[String], out: &mut impl Write) -> Result<usize, ExportError> {
    for line in lines {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(lines.len())
}
