//! The `--csv` file: one row per checked file under a fixed header. Columns are only ever
//! appended, never reordered, so operators' spreadsheets and scripts keep working. An empty
//! cell means "not measured" (the file never reached the gate, or the gate stopped at a hard
//! zero before rendering).

use std::{fs::File, path::Path};

use super::inspect::FileCheck;

/// Gate metrics copied into their own columns, by their name in `GateVerdict::metrics`.
const METRIC_COLUMNS: [&str; 5] = [
    "low_opacity_fraction",
    "mean_coverage",
    "mean_adjacent_ssim",
    "mean_sharpness",
    "floater_fraction",
];

/// The header, in order.
pub fn header() -> Vec<&'static str> {
    let mut columns = vec![
        "path",
        "format",
        "bytes",
        "gaussians",
        "passed",
        "local_score",
        "category",
        "reason",
    ];
    columns.extend(METRIC_COLUMNS);
    columns.extend(["check_ms", "preview"]);
    columns
}

/// Writes rows as files are checked, so an interrupted run still leaves what it did.
#[derive(Debug)]
pub struct CsvReport {
    writer: csv::Writer<File>,
}

impl CsvReport {
    /// Creates (truncates) `path` and writes the header.
    pub fn create(path: &Path) -> Result<Self, csv::Error> {
        let mut writer = csv::Writer::from_path(path)?;
        writer.write_record(header())?;
        writer.flush()?;
        Ok(Self { writer })
    }

    pub fn write(&mut self, check: &FileCheck) -> Result<(), csv::Error> {
        let optional = |v: Option<String>| v.unwrap_or_default();
        let mut row = vec![
            check.path.display().to_string(),
            check.format.as_str().to_owned(),
            optional(check.bytes.map(|b| b.to_string())),
            optional(check.gaussians.map(|g| g.to_string())),
            check.passed.to_string(),
            optional(check.local_score.map(|s| s.to_string())),
            check.category().to_owned(),
            check.reasons_text(),
        ];
        row.extend(
            METRIC_COLUMNS
                .iter()
                .map(|name| optional(check.metrics.get(*name).map(|v| v.to_string()))),
        );
        row.push(check.elapsed.as_millis().to_string());
        row.push(optional(
            check.preview.as_ref().map(|p| p.display().to_string()),
        ));
        self.writer.write_record(&row)?;
        // One row per file is little; flushing keeps the file current for `tail -f`.
        self.writer.flush()?;
        Ok(())
    }
}
