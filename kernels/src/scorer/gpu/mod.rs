//! The scorer on CUDA (being written): cuBLAS for the matrix products, NVRTC kernels for the
//! rest, reading the renderer's image buffer on the same device.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream};

use super::{aggregate::PartScores, images::ScoreImages, model::ScorerModels};
use crate::gpu::GpuError;

/// The scorer's weights and work buffers on one device.
#[derive(Debug)]
pub struct GpuScorer {
    _stream: Arc<CudaStream>,
}

impl GpuScorer {
    /// Uploads `models` to the device of `ctx`, compiles the kernels, and works on `stream`.
    pub fn new(
        ctx: &Arc<CudaContext>,
        stream: &Arc<CudaStream>,
        models: &ScorerModels,
    ) -> Result<Self, GpuError> {
        let _ = (ctx, models);
        Ok(Self {
            _stream: stream.clone(),
        })
    }

    /// Scores the renderer's image buffer (`views × height × width` RGBA `f32`, view-major),
    /// truncated to 8 bits on the device as the validator truncates.
    pub fn score_render(
        &mut self,
        image: &CudaSlice<f32>,
        views: usize,
        width: u32,
        height: u32,
    ) -> Result<PartScores, GpuError> {
        let _ = (image, views, width, height);
        Err(GpuError::Unavailable("the GPU scorer is being written"))
    }

    /// Uploads 8-bit images and scores them (the `score` CLI, parity checks).
    pub fn score_images(&mut self, images: &ScoreImages) -> Result<PartScores, GpuError> {
        let _ = images;
        Err(GpuError::Unavailable("the GPU scorer is being written"))
    }
}
