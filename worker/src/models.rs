//! The scorer's model files, read once per worker process when `gate_mode = "validator"` and
//! shared by its task slots: `[worker.scorer] models_dir` with its sha256 pins, through the
//! kernels' loaders (the quality networks and both alignment towers). A file
//! that is missing or wrong stops the worker before it takes a task (exit 78, the file and
//! its download command named): a worker that would reject or wrongly pass every model is
//! worse than one that does not start.

use std::{path::PathBuf, sync::Arc};

use splatfleet_common::config::{GateMode, ScorerSettings, WorkerSettings};
use splatfleet_kernels::scorer::{AlignmentModels, ModelFileError, ModelsDir, ScorerModels};

/// Why the scorer's models could not be had.
#[derive(Debug, thiserror::Error)]
#[error(
    "gate_mode = \"validator\" needs the scorer's model files in {dir} \
     (worker.scorer.models_dir): {source}"
)]
pub struct ModelsError {
    pub dir: PathBuf,
    pub source: ModelFileError,
}

/// Everything `validator` mode scores with.
#[derive(Debug, Clone)]
pub struct ValidatorModels {
    /// DINOv2 with the quality head, LPIPS.
    pub scoring: Arc<ScorerModels>,
    /// The text and image alignment towers and the CLIP tokenizer.
    pub alignment: Arc<AlignmentModels>,
}

/// The models of `settings.models_dir`, checked against its pins.
pub fn load_models(settings: &ScorerSettings) -> Result<ValidatorModels, ModelsError> {
    let dir = ModelsDir {
        root: settings.models_dir.clone(),
        sha256: settings.sha256.clone(),
    };
    let failed = |source| ModelsError {
        dir: settings.models_dir.clone(),
        source,
    };
    let scoring = dir.load().map_err(failed)?;
    let alignment = AlignmentModels::load(&dir).map_err(failed)?;
    Ok(ValidatorModels {
        scoring: Arc::new(scoring),
        alignment: Arc::new(alignment),
    })
}

/// The models a worker with `settings` needs: `None` unless `gate_mode = "validator"`.
pub fn models_for(settings: &WorkerSettings) -> Result<Option<ValidatorModels>, ModelsError> {
    match settings.gate_mode {
        GateMode::Validator => load_models(&settings.scorer).map(Some),
        GateMode::Geometry | GateMode::ValidityOnly => Ok(None),
    }
}
