//! `splatfleet-worker score FILE|DIR... --models DIR`: the validator's own score of model files
//! on disk, as the validation service computes it (`VALIDATOR_SCORING.md` §4–§9): the
//! validator's 16 views at 518×518, DINOv2 quality, SSIM and LPIPS between adjacent views, the
//! task's prompt alignment (`--prompt TEXT` for text-to-3D, `--image FILE` for image-to-3D),
//! the service's aggregation. Rendered on the GPU when there is one (the CPU reference
//! otherwise, or with `--cpu`), alignment included. Without a prompt
//! the alignment is not measured: the score takes it as 1.0 and the output says so.
//!
//! Each file gets one line (`--json`: one JSON object) on stdout with the service's names
//! (`score`, `iqa`, `alignment_score`, `ssim`, `lpips`); a file that cannot be read, decoded or
//! rendered gets a line with its error and makes the exit status 1, never a panic.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use splatfleet_common::config::DEFAULT_MODELS_DIR;
use splatfleet_kernels::{
    scorer::{ModelFileError, Prompt, Scorer, ValidatorScore},
    KernelError, OrbitSpec, Renderer, Rig,
};

use crate::{
    check::{self, load, progress_bar, InputError, LoadedModel},
    gate::UNMEASURED_ALIGNMENT,
    models::{load_models, ModelsError, ValidatorModels},
};

/// The validator's render: 16 views of 518×518 (`VALIDATOR_SCORING.md` §4).
pub const VALIDATOR_VIEWS: usize = 16;
pub const VALIDATOR_SIZE: u32 = 518;
/// Largest model file read, bytes (as `worker.max_response_bytes`' default).
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Every file was scored.
pub const EXIT_ALL_SCORED: u8 = 0;
/// Some file could not be read, decoded or rendered.
pub const EXIT_SOME_FAILED: u8 = 1;
/// The command line cannot be run: a missing path, no model files, unusable `--models`.
pub const EXIT_USAGE: u8 = 2;

/// Arguments of `splatfleet-worker score`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Scores each file as the validator would: its 16 views at 518x518, the DINOv2 quality head, \
SSIM and LPIPS of adjacent views, the prompt alignment (--prompt or --image) and the \
service's aggregation; a model the validator's hard-zero rules reject scores 0 unrendered. \
Without --prompt or --image the alignment is not measured: the score takes it as 1.0 and \
the output says so.

Exit status:
  0  every file was scored
  1  some file could not be read, decoded or rendered (its line says why)
  2  usage error: a path that does not exist, no .ply/.spz files, unusable --models")]
pub struct ScoreArgs {
    /// PLY or SPZ files, or directories searched recursively for *.ply and *.spz.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,
    /// The scorer's model files, under their upstream names (as `[worker.scorer] models_dir`).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_MODELS_DIR)]
    pub models: PathBuf,
    /// The task's text prompt, as the validator sent it (text-to-3D).
    #[arg(long, value_name = "TEXT", conflicts_with = "image")]
    pub prompt: Option<String>,
    /// The task's prompt image (PNG, JPEG or WebP), for image-to-3D.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// One JSON object per file instead of a line of text.
    #[arg(long)]
    pub json: bool,
    /// Score on the CPU reference even when a GPU is present.
    #[arg(long)]
    pub cpu: bool,
    /// Render at N×N pixels instead of the validator's 518 (the CPU reference is slow at 518;
    /// the score is then not quite the validator's, and the output says so).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(16..=2048))]
    pub render_size: Option<u32>,
}

/// Why a score run could not start (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ScoreUsageError {
    #[error(transparent)]
    Inputs(#[from] InputError),
    #[error("--image {path}: {source}")]
    Image {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--models {dir}: {source}")]
    Models {
        dir: PathBuf,
        source: ModelFileError,
    },
    #[error("the scorer could not be started: {0}")]
    Scorer(KernelError),
}

/// Why one file has no score.
#[derive(Debug, thiserror::Error)]
pub enum FileScoreError {
    #[error("{0}")]
    Load(String),
    #[error("render failed: {0}")]
    Render(KernelError),
}

/// One file's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileScore {
    pub path: PathBuf,
    pub format: &'static str,
    pub gaussians: usize,
    pub score: f64,
    /// `None` for a hard-zero model (not rendered).
    pub iqa: Option<f64>,
    pub alignment_score: f64,
    /// No prompt was given: `alignment_score` is the stand-in 1.0, not a measurement.
    pub alignment_assumed: bool,
    /// Why the alignment could not be measured (the validator scores such a model 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alignment_problem: Option<String>,
    pub ssim: Option<f64>,
    pub lpips: Option<f64>,
    /// The validator's hard-zero rules the model breaks (score 0), by category.
    pub hard_zero: Vec<String>,
    pub scorer: &'static str,
    pub ms: u64,
}

/// The scorer of a run: renderer, scorer and the validator's rig.
#[derive(Debug)]
pub struct ModelScorer {
    renderer: Renderer,
    scorer: Scorer,
    rig: Rig,
}

impl ModelScorer {
    /// `models` scored on GPU `gpu` unless `cpu` or there is none, on the validator's 16
    /// views of `size`×`size` (518 is the validator's).
    pub fn new(
        models: ValidatorModels,
        gpu: usize,
        cpu: bool,
        size: u32,
    ) -> Result<Self, KernelError> {
        let renderer = if cpu {
            Renderer::cpu()
        } else {
            Renderer::new(gpu)
        };
        let scorer = Scorer::for_renderer(models.scoring, &renderer)?
            .with_alignment(&renderer, models.alignment)?;
        let spec = OrbitSpec::validator_sized(VALIDATOR_VIEWS, size, size);
        Ok(Self {
            renderer,
            scorer,
            rig: Rig::orbit(&spec),
        })
    }

    /// `cuda` or `cpu`.
    pub fn device(&self) -> &'static str {
        if self.scorer.is_gpu() {
            "cuda"
        } else {
            "cpu"
        }
    }

    /// The validator's score of a loaded model for `prompt` (0 unrendered when a hard-zero
    /// rule applies; alignment taken as 1.0, and said so, without a prompt).
    pub fn score(
        &mut self,
        model: &LoadedModel,
        prompt: Option<Prompt>,
    ) -> Result<FileScore, FileScoreError> {
        let decoded = model.decoded();
        let hard_zero: Vec<String> = decoded
            .report
            .hard_zero()
            .into_iter()
            .map(|rule| {
                crate::gate::GateReason::HardZero(rule)
                    .category()
                    .to_owned()
            })
            .collect();
        let mut result = FileScore {
            path: model.path().to_owned(),
            format: model.format().as_str(),
            gaussians: decoded.report.count,
            score: 0.0,
            iqa: None,
            alignment_score: UNMEASURED_ALIGNMENT,
            alignment_assumed: prompt.is_none(),
            alignment_problem: None,
            ssim: None,
            lpips: None,
            hard_zero,
            scorer: self.device(),
            ms: 0,
        };
        if result.hard_zero.is_empty() {
            // The GPU towers read the render in place; the CPU needs the views.
            let download = prompt.is_some() && !self.scorer.is_gpu();
            let (views, _, parts) = self
                .renderer
                .render_and_score(&decoded.splat, &self.rig, &mut self.scorer, download)
                .map_err(FileScoreError::Render)?;
            let alignment = prompt.and_then(|prompt| {
                self.renderer
                    .align_last_render(&self.rig, views.as_ref(), &mut self.scorer, prompt)
            });
            if let Some(alignment) = &alignment {
                result.alignment_score = alignment.score;
                result.alignment_problem = alignment.problem.clone();
            }
            let scored =
                ValidatorScore::aggregate(parts, result.alignment_score, result.alignment_assumed);
            result.score = scored.score;
            result.iqa = Some(scored.iqa);
            result.ssim = Some(scored.ssim);
            result.lpips = Some(scored.lpips);
        }
        result.ms = u64::try_from(model.started().elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(result)
    }
}

fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

/// A result as one line of text.
pub fn text_line(result: &FileScore) -> String {
    let assumed = if result.alignment_assumed {
        " (assumed)"
    } else {
        ""
    };
    let mut line = format!(
        "{}: score {:.4}  iqa {}  alignment_score {:.4}{assumed}  ssim {}  lpips {}  ({} gaussians, {} ms)",
        result.path.display(),
        result.score,
        number(result.iqa),
        result.alignment_score,
        number(result.ssim),
        number(result.lpips),
        result.gaussians,
        result.ms,
    );
    if !result.hard_zero.is_empty() {
        line.push_str(&format!("  hard zero: {}", result.hard_zero.join(", ")));
    }
    if let Some(problem) = &result.alignment_problem {
        line.push_str(&format!("  alignment not measurable: {problem}"));
    }
    line
}

/// A file with no score, as a line of text or a JSON object.
fn error_line(path: &Path, error: &str, json: bool) -> String {
    if json {
        let mut object = BTreeMap::new();
        object.insert("path", path.display().to_string());
        object.insert("error", error.to_owned());
        serde_json::to_string(&object).unwrap_or_else(|_| format!("{{\"error\":{error:?}}}"))
    } else {
        format!("{}: error: {error}", path.display())
    }
}

fn result_line(result: &FileScore, json: bool) -> String {
    if json {
        serde_json::to_string(result)
            .unwrap_or_else(|err| error_line(&result.path, &err.to_string(), true))
    } else {
        text_line(result)
    }
}

/// Runs `score` and returns its exit status; see [`ScoreArgs`].
pub fn run(args: &ScoreArgs, gpu: usize) -> ExitCode {
    match run_scores(args, gpu) {
        Ok(true) => ExitCode::from(EXIT_ALL_SCORED),
        Ok(false) => ExitCode::from(EXIT_SOME_FAILED),
        Err(err) => {
            eprintln!("splatfleet-worker score: {err}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Scores every file; true when every file was scored.
fn run_scores(args: &ScoreArgs, gpu: usize) -> Result<bool, ScoreUsageError> {
    let inputs = check::collect_inputs(&args.paths)?;
    let image = match &args.image {
        Some(path) => Some(
            std::fs::read(path).map_err(|source| ScoreUsageError::Image {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let prompt = match (&args.prompt, &image) {
        (Some(text), _) => Some(Prompt::Text(text)),
        (None, Some(bytes)) => Some(Prompt::ImageFile(bytes)),
        (None, None) => None,
    };
    let settings = splatfleet_common::config::ScorerSettings {
        models_dir: args.models.clone(),
        ..Default::default()
    };
    let models = load_models(&settings)
        .map_err(|ModelsError { dir, source }| ScoreUsageError::Models { dir, source })?;
    let size = args.render_size.unwrap_or(VALIDATOR_SIZE);
    let mut scorer =
        ModelScorer::new(models, gpu, args.cpu, size).map_err(ScoreUsageError::Scorer)?;
    let not_validator = if size == VALIDATOR_SIZE {
        ""
    } else {
        " (--render-size: not the validator's 518, so not quite its score)"
    };
    let alignment = match prompt {
        Some(prompt) => format!("{} prompt alignment", prompt.kind()),
        None => format!(
            "no --prompt or --image: alignment not measured, taken as {UNMEASURED_ALIGNMENT}"
        ),
    };
    eprintln!(
        "scoring {} files: {VALIDATOR_VIEWS} views at {size}×{size}{not_validator} on {}; \
         {alignment}",
        inputs.files.len() + inputs.unlistable_dirs.len(),
        scorer.device(),
    );
    let mut all_scored = true;
    let mut stdout = std::io::stdout().lock();
    let mut emit = |line: String| {
        // A closed stdout (`| head`) ends the output, not the run's verdict.
        let _ = writeln!(stdout, "{line}");
    };
    for (path, err) in &inputs.unlistable_dirs {
        all_scored = false;
        emit(error_line(path, &format!("unreadable: {err}"), args.json));
    }
    let bar = progress_bar(inputs.files.len());
    for path in &inputs.files {
        bar.set_message(path.display().to_string());
        let scored = match load(path, MAX_FILE_BYTES) {
            Ok(model) => scorer.score(&model, prompt),
            Err(failed) => Err(FileScoreError::Load(failed.reasons_text())),
        };
        let line = match scored {
            Ok(result) => result_line(&result, args.json),
            Err(err) => {
                all_scored = false;
                error_line(path, &err.to_string(), args.json)
            }
        };
        bar.suspend(|| emit(line));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(all_scored)
}
