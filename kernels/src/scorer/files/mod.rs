//! The operator's model files (to be filled in).

/// Why a model file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("{0}")]
    Placeholder(String),
}

/// The operator's `models_dir`.
#[derive(Debug, Clone)]
pub struct ModelsDir {
    pub root: std::path::PathBuf,
}
