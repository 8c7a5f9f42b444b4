//! The operator subcommands: `report` and `export`. They read the config for the database
//! only, run on a small runtime of their own, and print to stdout (or write `--out`).

use std::{path::PathBuf, process::ExitCode};

use splatfleet_common::{config::Config, db};

use crate::{
    export::{self, TaskTypeFilter},
    reports::{self, Format, GroupBy, Report},
};

/// `report <name> [--since 7d] [--by validator|day|task-type|config] [--format table|csv|json]`
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    #[arg(value_enum)]
    pub report: Report,
    /// How far back, e.g. 7d, 24h, 90m.
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// Grouping of the acceptance report.
    #[arg(long, value_enum, default_value = "validator")]
    pub by: GroupBy,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// `export --min-score 0.7 [--task-type image] [--since 30d] --out accepted.jsonl`
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// Lowest validator score (task_fidelity_score) exported.
    #[arg(long, default_value_t = 0.7)]
    pub min_score: f64,
    #[arg(long, value_enum, default_value = "any")]
    pub task_type: TaskTypeFilter,
    #[arg(long, default_value = "30d")]
    pub since: String,
    /// The JSONL file to write; `-` for stdout.
    #[arg(long)]
    pub out: PathBuf,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn finish(program: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{program}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `report` against the configured database.
pub fn report(config_path: &std::path::Path, args: &ReportArgs) -> ExitCode {
    let result = (|| {
        let config = Config::load(config_path).map_err(|e| e.to_string())?;
        runtime()?.block_on(async {
            let pool = db::connect(&config.database)
                .await
                .map_err(|e| e.to_string())?;
            let table = reports::run_report(&pool, args.report, &args.since, args.by)
                .await
                .map_err(|e| e.to_string())?;
            print!("{}", reports::render(&table, args.format));
            Ok(())
        })
    })();
    finish("splatfleet-submitter report", result)
}

/// Runs `export` against the configured database.
pub fn export(config_path: &std::path::Path, args: &ExportArgs) -> ExitCode {
    let result = (|| {
        let config = Config::load(config_path).map_err(|e| e.to_string())?;
        runtime()?.block_on(async {
            let pool = db::connect(&config.database)
                .await
                .map_err(|e| e.to_string())?;
            let lines = export::accepted_lines(&pool, args.min_score, args.task_type, &args.since)
                .await
                .map_err(|e| e.to_string())?;
            let written = if args.out.as_os_str() == "-" {
                export::write_lines(&lines, &mut std::io::stdout().lock())
            } else {
                let file = std::fs::File::create(&args.out)
                    .map_err(|e| format!("{}: {e}", args.out.display()))?;
                export::write_lines(&lines, &mut std::io::BufWriter::new(file))
            }
            .map_err(|e| e.to_string())?;
            eprintln!(
                "exported {written} accepted generations to {}",
                args.out.display()
            );
            Ok(())
        })
    })();
    finish("splatfleet-submitter export", result)
}
