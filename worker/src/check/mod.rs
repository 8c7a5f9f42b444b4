//! `splatfleet-worker check FILE|DIR...`: batch local validation of PLY and SPZ files with the
//! worker's own tier-1 gate, the tool operators use to tune `[worker]` gate settings against
//! a pile of models. Each file is read under a size cap, decoded by `common::splat`'s strict
//! readers and judged by [`crate::gate::Gate::evaluate`] — the same code path as a task's
//! attempt — then reported: a progress bar on stderr, a summary on stdout, optionally a CSV
//! row and a contact sheet per file. A bad file is a failed row, never the end of the run.

mod csv_report;
mod inputs;
mod inspect;
mod previews;
mod summary;

use std::{
    io::IsTerminal as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use splatfleet_common::{
    config::{Config, ConfigError, GateMode, WorkerSettings},
    role::DEFAULT_CONFIG_PATH,
};

use crate::gate::Gate;

pub use csv_report::{header as csv_header, CsvReport};
pub use inputs::{collect as collect_inputs, InputError, Inputs};
pub use inspect::{judge, load, FileCheck, FileProblem, LoadedModel, ModelFormat, ReadError};
pub use summary::{percentile, render as render_summary};

/// Decoded models that may wait for the gate at once.
const LOAD_AHEAD: usize = 2;

/// Every file passed the gate.
pub const EXIT_ALL_PASSED: u8 = 0;
/// A file failed the gate or could not be read, or an output could not be written.
pub const EXIT_SOME_FAILED: u8 = 1;
/// The command line cannot be run: a missing path, no model files, a bad config or an
/// output that cannot be created. (clap's own argument errors exit 2 as well.)
pub const EXIT_USAGE: u8 = 2;

/// Arguments of `splatfleet-worker check`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Gate settings come from the [worker] section of --config / SPLATFLEET_CONFIG when given, else \
from /etc/splatfleet/splatfleet.toml when it exists, else the built-in defaults. No broker, \
database or generation service is needed.

Exit status:
  0  every file passed the gate
  1  some file failed the gate or could not be read (or a preview/CSV row could not be written)
  2  usage error: a path that does not exist, no .ply/.spz files, a bad config (in
     gate_mode = \"validator\": unusable model files), or an output that cannot be created")]
pub struct CheckArgs {
    /// PLY or SPZ files, or directories searched recursively for *.ply and *.spz.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,
    /// Write one row per file (path, verdict, score, reasons, gate metrics) to this CSV.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Write each rendered file's 4×4 contact sheet into this directory as <name>.png.
    #[arg(long, value_name = "DIR")]
    pub previews: Option<PathBuf>,
    /// Render at N×N pixels instead of worker.gate_render_size (the CPU renderer is slow
    /// at the validator's 518).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=2048))]
    pub render_size: Option<u32>,
}

/// Why a check could not start (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Inputs(#[from] InputError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--csv {path}: {source}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error("--previews {path}: {source}")]
    Previews {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Models(#[from] crate::models::ModelsError),
    #[error("the scorer could not be started: {0}")]
    Scorer(splatfleet_kernels::KernelError),
}

/// The `[worker]` settings a check uses and a line saying where they came from.
/// `explicit_config` is the `--config` / `SPLATFLEET_CONFIG` value when one was given.
pub fn gate_settings(
    explicit_config: Option<&Path>,
) -> Result<(WorkerSettings, String), ConfigError> {
    let path = match explicit_config {
        Some(path) => path,
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => Path::new(DEFAULT_CONFIG_PATH),
        None => return Ok((WorkerSettings::default(), "built-in defaults".into())),
    };
    let config = Config::load(path)?;
    Ok((config.worker, format!("[worker] of {}", path.display())))
}

/// The config path when someone named it (`--config` or `SPLATFLEET_CONFIG`): only a named
/// config is required to exist (see [`gate_settings`]).
pub fn named_config<'a>(matches: &clap::ArgMatches, path: &'a Path) -> Option<&'a Path> {
    let named = matches!(
        matches.value_source("config"),
        Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
    );
    named.then_some(path)
}

/// Runs a check and returns its exit status; see [`CheckArgs`].
pub fn run(args: &CheckArgs, explicit_config: Option<&Path>, gpu: usize) -> ExitCode {
    match run_checks(args, explicit_config, gpu) {
        Ok(all_passed) if all_passed => ExitCode::from(EXIT_ALL_PASSED),
        Ok(_) => ExitCode::from(EXIT_SOME_FAILED),
        Err(err) => {
            eprintln!("splatfleet-worker check: {err}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// A progress bar on stderr, hidden off a terminal.
pub fn progress_bar(len: usize) -> ProgressBar {
    // indicatif hides itself off a terminal too; saying so keeps CI logs free of escapes.
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len as u64), target);
    if let Ok(style) = ProgressStyle::with_template(
        "[{elapsed_precise}] {bar:30} {pos}/{len} eta {eta} {wide_msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Checks every file; true when all passed and every output was written.
fn run_checks(
    args: &CheckArgs,
    explicit_config: Option<&Path>,
    gpu: usize,
) -> Result<bool, UsageError> {
    let (mut settings, source) = gate_settings(explicit_config)?;
    if let Some(size) = args.render_size {
        settings.gate_render_size = size;
    }
    let inputs = collect_inputs(&args.paths)?;
    let csv = args
        .csv
        .as_deref()
        .map(|path| {
            CsvReport::create(path).map_err(|source| UsageError::Csv {
                path: path.to_owned(),
                source,
            })
        })
        .transpose()?;
    let mut previews = args
        .previews
        .as_deref()
        .map(|path| {
            previews::PreviewDir::create(path).map_err(|source| UsageError::Previews {
                path: path.to_owned(),
                source,
            })
        })
        .transpose()?;
    let models = crate::models::models_for(&settings)?;
    let mut gate = Gate::start(splatfleet_kernels::Renderer::new(gpu), &settings, models)
        .map_err(UsageError::Scorer)?;
    let pass = match settings.gate_mode {
        GateMode::Validator => format!(
            "gate_mode validator, predicted score needed {:.3}",
            gate.validator_pass().needed()
        ),
        GateMode::Geometry => format!("pass threshold {}", settings.gate_pass_threshold),
        GateMode::ValidityOnly => "gate_mode validity_only".into(),
    };
    eprintln!(
        "checking {} files: {} views at {size}×{size} on {}; {pass}; settings: {source}",
        inputs.files.len() + inputs.unlistable_dirs.len(),
        settings.gate_views,
        gate.backend_detail(),
        size = settings.gate_render_size,
    );
    let cap = settings.max_response_bytes;
    let mut report = Report {
        checks: Vec::with_capacity(inputs.files.len() + inputs.unlistable_dirs.len()),
        csv,
        outputs_ok: true,
    };
    let started = std::time::Instant::now();
    for (path, err) in inputs.unlistable_dirs {
        let problem = FileProblem::Unreadable(ReadError::Io(err));
        report.add(FileCheck::failed_early(
            path,
            ModelFormat::Unknown,
            None,
            problem,
            started,
        ));
    }
    let bar = progress_bar(inputs.files.len());
    // Reading and decoding the next files overlaps the gate's work on this one (on a GPU,
    // decoding a large PLY takes longer than rendering it); the channel's bound keeps at most
    // LOAD_AHEAD decoded models waiting in memory.
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel(LOAD_AHEAD);
        let files = &inputs.files;
        scope.spawn(move || {
            for path in files {
                if sender.send(load(path, cap)).is_err() {
                    break;
                }
            }
        });
        for loaded in receiver {
            let mut check = match loaded {
                Ok(model) => {
                    bar.set_message(model.path().display().to_string());
                    judge(model, &mut gate)
                }
                Err(failed) => *failed,
            };
            if let (Some(dir), Some(views)) = (previews.as_mut(), check.views.take()) {
                match dir.write(&check.path, &views) {
                    Ok(written) => check.preview = Some(written),
                    Err(err) => {
                        bar.suspend(|| eprintln!("{}: no preview: {err}", check.path.display()));
                        report.outputs_ok = false;
                    }
                }
            }
            bar.suspend(|| report.add(check));
            bar.inc(1);
        }
    });
    bar.finish_and_clear();
    print!("{}", render_summary(&report.checks));
    Ok(report.outputs_ok && report.checks.iter().all(|c| c.passed))
}

/// The rows so far, and the CSV they are written to as they come.
struct Report {
    checks: Vec<FileCheck>,
    csv: Option<CsvReport>,
    outputs_ok: bool,
}

impl Report {
    fn add(&mut self, mut check: FileCheck) {
        // Views are large (views × size² pixels); a row needs none of them.
        check.views = None;
        if let Some(csv) = self.csv.as_mut() {
            if let Err(err) = csv.write(&check) {
                eprintln!("--csv: row for {} not written: {err}", check.path.display());
                self.outputs_ok = false;
            }
        }
        self.checks.push(check);
    }
}
