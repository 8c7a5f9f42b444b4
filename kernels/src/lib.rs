//! Render what the validator renders, and measure it: decode and normalise a splat exactly as
//! the validator does, render its 16 views as gsplat would, and compute the gate's metrics.
//! Two backends share the camera and constant definitions: CUDA kernels compiled at run time
//! with NVRTC (through cudarc), and a CPU reference of every kernel (rayon) that is both the
//! fallback and the ground truth the GPU path is checked against.

pub mod backend;
pub mod constants;
pub mod cpu;
pub mod gaussians;
pub mod gpu;
pub mod metrics;
pub mod project;
pub mod rig;
pub mod scorer;
pub mod views;

pub use backend::{Backend, Renderer};
pub use gaussians::{decode_normalise, Gaussians, NormaliseError};
pub use metrics::{Metrics, ViewMetrics};
pub use rig::{Camera, OrbitSpec, Rig};
pub use views::Views;

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(transparent)]
    Normalise(#[from] NormaliseError),
    #[error("GPU: {0}")]
    Gpu(#[from] gpu::GpuError),
    #[error(transparent)]
    Score(#[from] scorer::cpu::ScoreError),
}

/// Renders `splat` with `rig` on the CPU reference and measures the views. The worker uses
/// [`Renderer::render_and_measure`], which picks the GPU when there is one.
pub fn render_and_measure_cpu(
    splat: &splatfleet_common::splat::Splat,
    rig: &Rig,
) -> Result<(Views, Metrics), KernelError> {
    let (gaussians, _) = decode_normalise(splat)?;
    let views = cpu::render(&gaussians, rig);
    let metrics = cpu::measure(&views, gaussians::floater_fraction(splat));
    Ok((views, metrics))
}
