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
//!
//! `--compare URL` also sends each model (as SPZ) with the prompt to a running validation
//! service (the gate's tier-2 client) and prints its numbers beside ours with the difference
//! of each part: how an operator with the real weights checks this port on their machine, and
//! how a change of the validator's models shows up.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use base64::Engine as _;
use splatfleet_common::{config::DEFAULT_MODELS_DIR, messages::TaskKind, splat::encode_spz};
use splatfleet_kernels::{
    scorer::{ModelFileError, Prompt, Scorer, ValidatorScore},
    KernelError, OrbitSpec, Renderer, Rig,
};

use crate::{
    check::{self, load, progress_bar, InputError, LoadedModel},
    gate::UNMEASURED_ALIGNMENT,
    models::{load_models, ModelsError, ValidatorModels},
    validation_client::{ValidationClient, ValidationScores},
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
    /// Also score each model on the validation service at URL (e.g. http://127.0.0.1:8094)
    /// and print its numbers and the differences beside ours; needs --prompt or --image.
    #[arg(long, value_name = "URL")]
    pub compare: Option<String>,
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
    #[error("--compare needs the task's prompt: give --prompt TEXT or --image FILE")]
    CompareWithoutPrompt,
    #[error("--compare {url}: {reason}")]
    Compare { url: String, reason: String },
}

/// Why one file has no score.
#[derive(Debug, thiserror::Error)]
pub enum FileScoreError {
    #[error("{0}")]
    Load(String),
    #[error("render failed: {0}")]
    Render(KernelError),
}

/// The validation service's numbers for one model, and ours minus its, part by part.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    pub service: ServiceScore,
    /// Ours − the service's; `None` where the service sent no number.
    pub difference: ServiceScore,
}

/// A validation service's answer in the service's names.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct ServiceScore {
    pub score: Option<f64>,
    pub iqa: Option<f64>,
    pub alignment_score: Option<f64>,
    pub ssim: Option<f64>,
    pub lpips: Option<f64>,
}

impl Comparison {
    fn new(ours: &FileScore, theirs: &ValidationScores) -> Self {
        let minus = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
        Self {
            service: ServiceScore {
                score: Some(theirs.score),
                iqa: theirs.iqa,
                alignment_score: theirs.alignment_score,
                ssim: theirs.ssim,
                lpips: theirs.lpips,
            },
            difference: ServiceScore {
                score: Some(ours.score - theirs.score),
                iqa: minus(ours.iqa, theirs.iqa),
                alignment_score: minus(Some(ours.alignment_score), theirs.alignment_score),
                ssim: minus(ours.ssim, theirs.ssim),
                lpips: minus(ours.lpips, theirs.lpips),
            },
        }
    }
}

/// The validation service `--compare` asks, with the task's prompt in its terms.
struct Compare {
    client: ValidationClient,
    runtime: tokio::runtime::Runtime,
    kind: TaskKind,
    /// The text prompt, or the prompt image as base64 (as a validator sends it).
    prompt: String,
}

/// Longest wait for one validation (the service renders and runs four networks).
const COMPARE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

impl Compare {
    fn new(url: &str, kind: TaskKind, prompt: String) -> Result<Self, ScoreUsageError> {
        let failed = |reason: String| ScoreUsageError::Compare {
            url: url.to_owned(),
            reason,
        };
        let client = ValidationClient::new(url).map_err(|e| failed(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| failed(format!("no async runtime: {e}")))?;
        Ok(Self {
            client,
            runtime,
            kind,
            prompt,
        })
    }

    /// The service's numbers for `model` (sent as SPZ, as validators receive models).
    fn validate(&self, model: &LoadedModel) -> Result<ValidationScores, String> {
        let spz = encode_spz(&model.decoded().splat).map_err(|e| format!("SPZ encoding: {e}"))?;
        self.runtime
            .block_on(
                self.client
                    .validate(self.kind, &self.prompt, &spz, COMPARE_TIMEOUT),
            )
            .map_err(|e| e.to_string())
    }
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
    /// `--compare`: the validation service's numbers and the differences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared: Option<Comparison>,
    /// `--compare`: why the service gave no numbers for this model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare_error: Option<String>,
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
            compared: None,
            compare_error: None,
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
    if let Some(compared) = &result.compared {
        let (s, d) = (&compared.service, &compared.difference);
        let part = |name: &str, theirs: Option<f64>, diff: Option<f64>| match (theirs, diff) {
            (Some(t), Some(d)) => format!("  {name} {t:.4} ({d:+.4})"),
            (Some(t), None) => format!("  {name} {t:.4}"),
            _ => format!("  {name} -"),
        };
        line.push_str("\n    service:");
        line.push_str(&part("score", s.score, d.score));
        line.push_str(&part("iqa", s.iqa, d.iqa));
        line.push_str(&part(
            "alignment_score",
            s.alignment_score,
            d.alignment_score,
        ));
        line.push_str(&part("ssim", s.ssim, d.ssim));
        line.push_str(&part("lpips", s.lpips, d.lpips));
        line.push_str("  (ours − service in brackets)");
    }
    if let Some(err) = &result.compare_error {
        line.push_str(&format!("\n    service: error: {err}"));
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
    let compare = match (&args.compare, &args.prompt, &image) {
        (None, _, _) => None,
        (Some(url), Some(text), _) => Some(Compare::new(url, TaskKind::Text, text.clone())?),
        (Some(url), None, Some(bytes)) => Some(Compare::new(
            url,
            TaskKind::Image,
            base64::engine::general_purpose::STANDARD.encode(bytes),
        )?),
        (Some(_), None, None) => return Err(ScoreUsageError::CompareWithoutPrompt),
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
            Ok(model) => scorer.score(&model, prompt).map(|mut result| {
                if let Some(compare) = &compare {
                    match compare.validate(&model) {
                        Ok(theirs) => result.compared = Some(Comparison::new(&result, &theirs)),
                        Err(err) => result.compare_error = Some(err),
                    }
                }
                result
            }),
            Err(failed) => Err(FileScoreError::Load(failed.reasons_text())),
        };
        let line = match scored {
            Ok(result) => {
                all_scored &= result.compare_error.is_none();
                result_line(&result, args.json)
            }
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
