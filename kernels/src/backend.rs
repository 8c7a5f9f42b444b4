//! Choosing where to render. cudarc panics when `libcuda` or NVRTC cannot be loaded, so both
//! libraries are probed first; any failure (no library, no device, a driver error) falls
//! back to the CPU reference with the reason logged. Never panics.

use splatfleet_common::splat::Splat;

use crate::{
    gpu::{GpuError, GpuRenderer},
    metrics::Metrics,
    rig::Rig,
    views::Views,
    KernelError,
};

/// Where kernels run.
#[derive(Debug)]
pub enum Backend {
    /// A CUDA device, with its renderer and reusable buffers.
    Cuda(Box<GpuRenderer>),
    /// The CPU reference, with why the GPU was not used.
    Cpu { reason: String },
}

/// Probes for CUDA on device `ordinal`; the CPU backend (with the reason) when it is missing.
pub fn detect(ordinal: usize) -> Backend {
    match GpuRenderer::new(ordinal) {
        Ok(renderer) => {
            tracing::info!(device = %renderer.device_name(), "rendering on the GPU");
            Backend::Cuda(Box::new(renderer))
        }
        Err(GpuError::Unavailable(reason)) => cpu_because(reason),
        Err(err) => cpu_because(&format!("CUDA device {ordinal} could not be used: {err}")),
    }
}

fn cpu_because(reason: &str) -> Backend {
    tracing::warn!(reason, "rendering on the CPU reference");
    Backend::Cpu {
        reason: reason.to_owned(),
    }
}

/// Renders and measures on whichever backend was detected.
#[derive(Debug)]
pub struct Renderer {
    backend: Backend,
}

impl Renderer {
    /// Detects the backend for GPU `ordinal` (the CPU when there is none).
    pub fn new(ordinal: usize) -> Self {
        Self {
            backend: detect(ordinal),
        }
    }

    /// The CPU reference, regardless of what hardware is present.
    pub fn cpu() -> Self {
        Self {
            backend: Backend::Cpu {
                reason: "asked for the CPU".into(),
            },
        }
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    pub fn is_gpu(&self) -> bool {
        matches!(self.backend, Backend::Cuda(_))
    }

    /// Times the GPU's stages with CUDA events from now on, for the worker's per-stage
    /// table (a few events per render; nothing on the CPU).
    pub fn time_stages(&mut self) {
        if let Backend::Cuda(gpu) = &mut self.backend {
            gpu.profile = true;
        }
    }

    /// The last render's views, downloaded from the GPU (`None` on the CPU, whose render
    /// returns its views): for a preview of a render that was measured without them.
    pub fn download_last_views(&self, rig: &Rig) -> Result<Option<Views>, KernelError> {
        match &self.backend {
            Backend::Cuda(gpu) => gpu.download_views(rig).map(Some),
            Backend::Cpu { .. } => Ok(None),
        }
    }

    /// The last render's host-to-device upload, when [`Renderer::time_stages`] is on and the
    /// render ran on the GPU.
    pub fn last_upload(&self) -> Option<std::time::Duration> {
        match &self.backend {
            Backend::Cuda(gpu) if gpu.profile => Some(gpu.last_times().upload),
            _ => None,
        }
    }

    /// Decodes, normalises, renders every view of `rig` and measures them. Views are
    /// downloaded from the GPU only when `download_views` is set (previews, checks).
    pub fn render_and_measure(
        &mut self,
        splat: &Splat,
        rig: &Rig,
        download_views: bool,
    ) -> Result<(Option<Views>, Metrics), KernelError> {
        match &mut self.backend {
            Backend::Cuda(gpu) => gpu.render_and_measure(splat, rig, download_views),
            Backend::Cpu { .. } => {
                let (views, metrics) = crate::render_and_measure_cpu(splat, rig)?;
                Ok((Some(views), metrics))
            }
        }
    }
}
