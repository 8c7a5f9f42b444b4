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
//! - [`alignment`]: prompt alignment for both task kinds ([`convnext_clip`] for text
//!   prompts, [`llm2clip`] for image prompts): the models, the prompt, the typed result.

pub mod aggregate;
pub mod alignment;
pub mod convnext_clip;
pub mod cpu;
pub mod files;
pub mod gpu;
pub mod images;
pub mod llm2clip;
pub mod model;

pub use aggregate::{PartScores, ValidatorScore};
pub use alignment::{Alignment, AlignmentModels, Prompt};

use convnext_clip::ClipTokenizer;
pub use files::{ModelFileError, ModelsDir};
pub use images::ScoreImages;
pub use model::ScorerModels;

use std::sync::Arc;

use splatfleet_common::splat::Splat;

use crate::{backend::Backend, metrics::Metrics, rig::Rig, views::Views, KernelError, Renderer};

/// The scorer of one worker: the models, and their copy on the renderer's GPU when it has one.
#[derive(Debug)]
pub struct Scorer {
    models: Arc<ScorerModels>,
    gpu: Option<gpu::GpuScorer>,
    /// Prompt alignment; `None`: not measured.
    alignment: Option<AlignmentSide>,
}

/// Where a scorer measures prompt alignment.
#[derive(Debug)]
enum AlignmentSide {
    /// The CPU reference over the models (shared by the worker's slots).
    Cpu(Arc<AlignmentModels>),
    /// On the scorer's GPU.
    Gpu(Box<GpuAlignmentSide>),
}

/// Both towers on the scorer's GPU, and the tokenizer: the host copy of the weights (2.5 GB
/// in FP32) is let go once they are uploaded.
#[derive(Debug)]
struct GpuAlignmentSide {
    towers: gpu::alignment::GpuAlignment,
    tokenizer: ClipTokenizer,
}

impl Scorer {
    /// The CPU reference, whatever hardware is present.
    pub fn cpu(models: Arc<ScorerModels>) -> Self {
        Self {
            models,
            gpu: None,
            alignment: None,
        }
    }

    /// Measures prompt alignment with `models` from now on: on the GPU beside the quality
    /// networks when the scorer is on one (the towers uploaded now), else on the CPU.
    pub fn with_alignment(
        mut self,
        renderer: &Renderer,
        models: Arc<AlignmentModels>,
    ) -> Result<Self, KernelError> {
        self.alignment = Some(match (renderer.backend(), &self.gpu) {
            (Backend::Cuda(r), Some(_)) => AlignmentSide::Gpu(Box::new(GpuAlignmentSide {
                towers: gpu::alignment::GpuAlignment::new(r.context(), r.stream(), &models)?,
                tokenizer: models.tokenizer.clone(),
            })),
            _ => AlignmentSide::Cpu(models),
        });
        Ok(self)
    }

    /// Device memory the alignment towers hold (`None` when they are not on a GPU).
    pub fn alignment_memory(&self) -> Option<gpu::alignment::AlignmentMemory> {
        match &self.alignment {
            Some(AlignmentSide::Gpu(side)) => Some(side.towers.memory()),
            _ => None,
        }
    }

    /// The alignment of 8-bit `images` with `prompt` (`None` without alignment models): on
    /// the GPU towers when there are some, else the CPU reference.
    pub fn alignment(&mut self, images: &ScoreImages, prompt: Prompt) -> Option<Alignment> {
        Some(match self.alignment.as_mut()? {
            AlignmentSide::Gpu(side) => {
                let GpuAlignmentSide { towers, tokenizer } = side.as_mut();
                towers.align_images(tokenizer, images, prompt)
            }
            AlignmentSide::Cpu(models) => alignment::cpu_alignment(models, images, prompt),
        })
    }

    /// A scorer on the same device as `renderer` (the CPU reference when it renders on the CPU).
    pub fn for_renderer(
        models: Arc<ScorerModels>,
        renderer: &Renderer,
    ) -> Result<Self, KernelError> {
        let gpu = match renderer.backend() {
            Backend::Cuda(r) => Some(gpu::GpuScorer::new(r.context(), r.stream(), &models)?),
            Backend::Cpu { .. } => None,
        };
        Ok(Self {
            models,
            gpu,
            alignment: None,
        })
    }

    pub fn is_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    pub fn models(&self) -> &Arc<ScorerModels> {
        &self.models
    }

    /// Per-view and per-pair parts of 8-bit images (uploaded when the scorer is on a GPU).
    pub fn score_images(&mut self, images: &ScoreImages) -> Result<PartScores, KernelError> {
        match &mut self.gpu {
            Some(gpu) => Ok(gpu.score_images(images)?),
            None => Ok(cpu::try_score_parts(&self.models, images)?),
        }
    }
}

impl Scorer {
    /// The GEMM arithmetic of the GPU path, alignment towers included (no effect on the
    /// CPU reference).
    pub fn set_precision(&mut self, precision: gpu::ScorerPrecision) {
        if let Some(gpu) = &mut self.gpu {
            gpu.set_precision(precision);
        }
        if let Some(AlignmentSide::Gpu(side)) = &mut self.alignment {
            side.towers.set_precision(precision);
        }
    }

    /// (view, head) pairs per attention step on the GPU (benchmarks; `None`: all of them).
    pub fn set_attention_chunk(&mut self, chunk: Option<usize>) -> Result<(), KernelError> {
        if let Some(gpu) = &mut self.gpu {
            gpu.set_attention_chunk(chunk)?;
        }
        Ok(())
    }

    /// The CLS embeddings of the last GPU-scored views (parity checks); `None` on the CPU.
    pub fn last_cls_embeddings(&self, views: usize) -> Result<Option<Vec<Vec<f32>>>, KernelError> {
        match &self.gpu {
            Some(gpu) => Ok(Some(gpu.last_cls_embeddings(views)?)),
            None => Ok(None),
        }
    }

    /// Scores `renderer`'s last render again, straight from its image buffer (benchmarks:
    /// the score alone, without the render). `None` when either is on the CPU.
    pub fn rescore_last_render(
        &mut self,
        renderer: &Renderer,
        rig: &Rig,
    ) -> Result<Option<PartScores>, KernelError> {
        match (renderer.backend(), &mut self.gpu) {
            (Backend::Cuda(r), Some(gpu)) => Ok(Some(gpu.score_render(
                r.image(),
                rig.views(),
                rig.width,
                rig.height,
            )?)),
            _ => Ok(None),
        }
    }
}

impl Renderer {
    /// The alignment of this renderer's last render with `prompt` (`None` without alignment
    /// models): on the GPU straight from the image buffer when renderer and towers are both
    /// there, else from `views` (the downloaded render) on whatever the scorer has.
    pub fn align_last_render(
        &self,
        rig: &Rig,
        views: Option<&Views>,
        scorer: &mut Scorer,
        prompt: Prompt,
    ) -> Option<Alignment> {
        match (self.backend(), scorer.alignment.as_mut()?, views) {
            (Backend::Cuda(r), AlignmentSide::Gpu(side), _) => {
                let GpuAlignmentSide { towers, tokenizer } = side.as_mut();
                Some(towers.align_render(
                    tokenizer,
                    r.image(),
                    (rig.views(), rig.width, rig.height),
                    prompt,
                ))
            }
            (_, _, Some(views)) => scorer.alignment(&ScoreImages::from_views(views), prompt),
            (_, _, None) => Some(Alignment::failed("no views to align")),
        }
    }

    /// Renders and measures as [`Renderer::render_and_measure`], then scores the render with
    /// `scorer` ([`Renderer::score_last_render`]).
    pub fn render_and_score(
        &mut self,
        splat: &Splat,
        rig: &Rig,
        scorer: &mut Scorer,
        download_views: bool,
    ) -> Result<(Option<Views>, Metrics, PartScores), KernelError> {
        let (views, metrics) =
            self.render_and_measure(splat, rig, download_views || !self.scores_in_place(scorer))?;
        let parts = self.score_last_render(rig, views.as_ref(), scorer)?;
        Ok((views, metrics, parts))
    }

    /// Whether `scorer` reads this renderer's image buffer in place (else it needs the
    /// downloaded views).
    pub fn scores_in_place(&self, scorer: &Scorer) -> bool {
        matches!(self.backend(), Backend::Cuda(_)) && scorer.gpu.is_some()
    }

    /// The quality parts of the last render: on the GPU straight from the image buffer, on
    /// the CPU from `views` (which [`Renderer::scores_in_place`] says are needed).
    pub fn score_last_render(
        &self,
        rig: &Rig,
        views: Option<&Views>,
        scorer: &mut Scorer,
    ) -> Result<PartScores, KernelError> {
        match (self.backend(), &mut scorer.gpu, views) {
            (Backend::Cuda(r), Some(gpu), _) => {
                Ok(gpu.score_render(r.image(), rig.views(), rig.width, rig.height)?)
            }
            (_, _, Some(v)) => Ok(cpu::try_score_parts(
                &scorer.models,
                &ScoreImages::from_views(v),
            )?),
            (_, _, None) => Err(crate::gpu::GpuError::Unavailable("no views to score").into()),
        }
    }
}
