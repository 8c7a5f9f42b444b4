//! The validator's own score, computed on our renders: the v45 validation service's quality
//! score (DINOv2-small with its linear quality head), SSIM and LPIPS between adjacent views,
//! and its aggregation (outlier filter, means, final formula, hard-zero rules). Facts and
//! their upstream source lines: `VALIDATOR_SCORING.md` (§4, §5, §8, §9).
//!
//! Layout, one job per file:
//! - [`model`]: the typed weights of each network (what the math reads).
//! - [`files`]: the operator's `models_dir` (upstream file names), safetensors and torch
//!   checkpoints, sha256 pins, typed errors naming the file and the expected tensors.
//! - [`cpu`]: the CPU reference of every operation and of each forward pass (CI's path and
//!   the ground truth of the GPU path).
//! - [`gpu`]: the same on CUDA (cuBLAS through cudarc, NVRTC kernels), reading the
//!   renderer's image buffer directly.
//! - [`images`]: the 8-bit views every metric reads.
//! - [`aggregate`]: the service's outlier filter, means and final formula.

pub mod aggregate;
pub mod cpu;
pub mod files;
pub mod gpu;
pub mod images;
pub mod model;

pub use aggregate::{PartScores, ValidatorScore};
pub use files::{ModelFileError, ModelsDir};
pub use images::ScoreImages;
pub use model::ScorerModels;
