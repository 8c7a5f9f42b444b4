//! The scorer's model files, read once per worker process when `gate_mode = "validator"`:
//! `[worker.scorer] models_dir` with its sha256 pins, through the kernels' loader. A file
//! that is missing or wrong stops the worker before it takes a task (exit 78, the file and
//! its download command named): a worker that would reject or wrongly pass every model is
//! worse than one that does not start.

use std::{path::PathBuf, sync::Arc};

use splatfleet_common::config::{GateMode, ScorerSettings, WorkerSettings};
use splatfleet_kernels::scorer::{ModelFileError, ModelsDir, ScorerModels};

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

/// The models of `settings.models_dir`, checked against its pins.
pub fn load_models(settings: &ScorerSettings) -> Result<Arc<ScorerModels>, ModelsError> {
    let dir = ModelsDir {
        root: settings.models_dir.clone(),
        sha256: settings.sha256.clone(),
    };
    let loaded = dir.load();
    loaded.map(Arc::new).map_err(|source| ModelsError {
        dir: settings.models_dir.clone(),
        source,
    })
}

/// The models a worker with `settings` needs: `None` unless `gate_mode = "validator"`.
pub fn models_for(settings: &WorkerSettings) -> Result<Option<Arc<ScorerModels>>, ModelsError> {
    match settings.gate_mode {
        GateMode::Validator => load_models(&settings.scorer).map(Some),
        GateMode::Geometry | GateMode::ValidityOnly => Ok(None),
    }
}
