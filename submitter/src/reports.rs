//! The operators' reports: the SQL files in `sql/reports/` (runnable with psql as they are)
//! run with their psql variables bound as parameters, and printed as a table, CSV or JSON.
//! `--since 7d` becomes the interval `7 days`.

use std::fmt::Write as _;

use splatfleet_common::db::{DbError, Pool};

/// A report the submitter can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Report {
    /// Acceptance rate and mean score, grouped by `--by`.
    Acceptance,
    /// Per validator: acceptance, penalties, empty releases, failures, feedback delay.
    Validators,
    /// Per gate mode, predicted (validator mode) or local score buckets against validator
    /// acceptance and score, and the best pass score.
    Calibration,
    /// Tasks per hour per GPU.
    Throughput,
    /// Failure reasons.
    Failures,
}

impl Report {
    /// The report's SQL, as psql runs it.
    pub fn sql(self) -> &'static str {
        match self {
            Self::Acceptance => include_str!("../../sql/reports/acceptance.sql"),
            Self::Validators => include_str!("../../sql/reports/validators.sql"),
            Self::Calibration => include_str!("../../sql/reports/calibration.sql"),
            Self::Throughput => include_str!("../../sql/reports/throughput.sql"),
            Self::Failures => include_str!("../../sql/reports/failures.sql"),
        }
    }
}

/// How the acceptance report groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Validator,
    Day,
    TaskType,
    Config,
}

impl GroupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validator => "validator",
            Self::Day => "day",
            Self::TaskType => "task-type",
            Self::Config => "config",
        }
    }
}

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("--since `{0}`: expected a number and a unit (s, m, h, d or w), e.g. 7d")]
    Since(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("a report row is not valid JSON: {0}")]
    Row(#[from] serde_json::Error),
}

/// `7d` → `7 days`; also `s`, `m`, `h`, `w`.
pub fn since_interval(since: &str) -> Result<String, ReportError> {
    let since = since.trim();
    let bad = || ReportError::Since(since.to_owned());
    let split = since.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = since.split_at(split);
    let number: u32 = number.parse().map_err(|_| bad())?;
    let unit = match unit {
        "s" => "seconds",
        "m" => "minutes",
        "h" => "hours",
        "d" => "days",
        "w" => "weeks",
        _ => return Err(bad()),
    };
    Ok(format!("{number} {unit}"))
}

/// A report file's SQL with psql's meta-commands dropped and each `:'name'` variable turned
/// into a numbered text parameter; returns the SQL and the variable names in parameter order.
pub fn bind_psql_variables(sql: &str) -> (String, Vec<String>) {
    let mut names: Vec<String> = Vec::new();
    let mut out = String::new();
    for line in sql.lines().filter(|l| !l.trim_start().starts_with('\\')) {
        let mut rest = line;
        while let Some(start) = rest.find(":'") {
            let after = &rest[start + 2..];
            let Some(end) = after.find('\'') else { break };
            let name = &after[..end];
            let index = match names.iter().position(|n| n == name) {
                Some(i) => i + 1,
                None => {
                    names.push(name.to_owned());
                    names.len()
                }
            };
            out.push_str(&rest[..start]);
            let _ = write!(out, "${index}::text");
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    let trimmed = out.trim_end().trim_end_matches(';').to_owned();
    (trimmed, names)
}

/// A report's result: column names and rows of JSON values.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

impl Table {
    /// The value of `column` in row `row` (`Null` when absent).
    pub fn get(&self, row: usize, column: &str) -> &serde_json::Value {
        const NULL: serde_json::Value = serde_json::Value::Null;
        let index = self.columns.iter().position(|c| c == column);
        match (self.rows.get(row), index) {
            (Some(values), Some(i)) => values.get(i).unwrap_or(&NULL),
            _ => &NULL,
        }
    }
}

/// Runs `sql` (a report file) with its variables from `values` (name, value).
pub async fn run_sql(
    pool: &Pool,
    sql: &str,
    values: &[(&str, String)],
) -> Result<Table, ReportError> {
    let (query, names) = bind_psql_variables(sql);
    let params: Vec<String> = names
        .iter()
        .map(|name| {
            values
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
        .collect();
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let client = pool.get().await.map_err(DbError::from)?;
    let statement = client.prepare(&query).await.map_err(DbError::from)?;
    let columns: Vec<String> = statement
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let wrapped = format!("SELECT row_to_json(r)::text FROM ({query}) r");
    let rows = client.query(&wrapped, &refs).await.map_err(DbError::from)?;
    let mut table = Table {
        columns,
        rows: Vec::with_capacity(rows.len()),
    };
    for row in rows {
        let text: String = row.get(0);
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)?;
        table.rows.push(
            table
                .columns
                .iter()
                .map(|c| object.get(c).cloned().unwrap_or(serde_json::Value::Null))
                .collect(),
        );
    }
    Ok(table)
}

/// Runs one report over the last `since` (e.g. `7d`), grouped `by` (acceptance only).
pub async fn run_report(
    pool: &Pool,
    report: Report,
    since: &str,
    by: GroupBy,
) -> Result<Table, ReportError> {
    let values = [
        ("since", since_interval(since)?),
        ("by", by.as_str().to_owned()),
    ];
    run_sql(pool, report.sql(), &values).await
}

fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// The table printed in `format`.
pub fn render(table: &Table, format: Format) -> String {
    let mut out = String::new();
    match format {
        Format::Table => {
            let cells: Vec<Vec<String>> = table
                .rows
                .iter()
                .map(|r| r.iter().map(cell).collect())
                .collect();
            let widths: Vec<usize> = table
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    cells
                        .iter()
                        .map(|r| r.get(i).map_or(0, |s| s.chars().count()))
                        .chain([c.chars().count()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |values: &[String]| {
                values
                    .iter()
                    .zip(&widths)
                    .map(|(v, w)| format!("{v:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_owned()
            };
            let _ = writeln!(out, "{}", line(&table.columns));
            let _ = writeln!(
                out,
                "{}",
                widths
                    .iter()
                    .map(|w| "-".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("  ")
            );
            for row in &cells {
                let _ = writeln!(out, "{}", line(row));
            }
            let _ = writeln!(out, "({} rows)", cells.len());
        }
        Format::Csv => {
            let header: Vec<String> = table.columns.iter().map(|c| csv_field(c)).collect();
            let _ = writeln!(out, "{}", header.join(","));
            for row in &table.rows {
                let fields: Vec<String> = row.iter().map(|v| csv_field(&cell(v))).collect();
                let _ = writeln!(out, "{}", fields.join(","));
            }
        }
        Format::Json => {
            let rows: Vec<String> = table
                .rows
                .iter()
                .map(|row| {
                    let fields: Vec<String> = table
                        .columns
                        .iter()
                        .zip(row)
                        .map(|(c, v)| format!("{}: {v}", serde_json::Value::from(c.as_str())))
                        .collect();
                    format!("{{{}}}", fields.join(", "))
                })
                .collect();
            let _ = writeln!(out, "[{}]", rows.join(",\n "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_number_and_a_unit() {
        assert_eq!(since_interval("7d").expect("7d"), "7 days");
        assert_eq!(since_interval("12h").expect("12h"), "12 hours");
        assert!(since_interval("d").is_err());
        assert!(since_interval("7 fortnights").is_err());
    }

    #[test]
    fn psql_variables_become_parameters_and_meta_commands_go() {
        let (sql, names) = bind_psql_variables(
            "\\if :{?since}\n\\endif\nSELECT :'since'::interval, :'by', :'since';\n",
        );
        assert_eq!(sql, "SELECT $1::text::interval, $2::text, $1::text");
        assert_eq!(names, ["since", "by"]);
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let table = Table {
            columns: vec!["a".into(), "b".into()],
            rows: vec![vec![serde_json::json!("x,y"), serde_json::json!(1.5)]],
        };
        assert_eq!(render(&table, Format::Csv), "a,b\n\"x,y\",1.5\n");
        assert_eq!(
            render(&table, Format::Json),
            "[{\"a\": \"x,y\", \"b\": 1.5}]\n"
        );
    }
}
