//! The alignment towers on CUDA, beside the quality scorer and on the same stream: the text
//! task's open_clip `convnext_large_d` (ConvNeXt image tower on the views at 224, causal
//! text transformer on the prompt's tokens; [`GpuTextAlignment`]) and the image task's
//! LLM2CLIP CLIP ViT-L/14-336 vision tower (views and prompt image at 336;
//! [`GpuImageAlignment`]). Their CPU references are `scorer::convnext_clip` and
//! `scorer::llm2clip`; every step here is the same operation.
//!
//! cuBLAS does the matrix products (`device::Blas`, strided-batched for attention), the
//! scorer's kernels (`scorer.cu`) the shared steps (8-bit planes from the render buffer,
//! head split, softmax, GELU, residual + LayerNorm, im2col, embeddings), `alignment.cu` the
//! rest (bicubic resize + normalisation as a patch im2col, row LayerNorm, depthwise conv +
//! LayerNorm, average pool, quick GELU, causal mask, L2 normalisation). Activations are
//! channels-last rows, so ConvNeXt's LayerNorms are row LayerNorms and its MLPs plain GEMMs.
//!
//! Both return L2-normalised embeddings (`Vec<f32>` per image); [`cosines`] gives the
//! per-view cosines that `aggregate::text_alignment` / `llm2clip::alignment_of_cosines`
//! take. Weights are uploaded once (FP32; the matrix products' weights get FP16 copies on
//! the device the first time [`AlignmentPrecision::Fp16`] runs); work buffers are sized for
//! 16 views of 518² at construction and grow on demand; [`AlignmentMemory`] reports both.

mod convnext;
mod kernels;
mod vit;

pub use convnext::GpuTextAlignment;
pub use vit::GpuImageAlignment;

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream};

use self::kernels::AlignKernels;
use super::{
    device::{address_of, Blas, Buf, Math},
    kernels::Kernels,
    ScorerPrecision,
};
use crate::{
    gpu::GpuError,
    scorer::{
        alignment::{measure, Alignment, AlignmentModels, Prompt, Towers},
        convnext_clip::ClipTokenizer,
        images::ScoreImages,
        llm2clip::PromptImage,
    },
};

/// The arithmetic of the towers' matrix products (every other step is FP32).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AlignmentPrecision {
    /// FP32 GEMMs: parity with the FP32 CPU reference.
    Fp32,
    /// TF32 tensor-core GEMMs, FP32 accumulation.
    #[default]
    Tf32,
    /// FP16 tensor-core GEMMs for every product with a weight (an FP16 copy of each weight,
    /// made on the device the first time this precision runs; the activation rounded to
    /// FP16 before each product), FP32 accumulation and output, as the service runs these
    /// towers; attention's products between activations run as under `Tf32`.
    Fp16,
}

impl From<ScorerPrecision> for AlignmentPrecision {
    fn from(p: ScorerPrecision) -> Self {
        match p {
            ScorerPrecision::Fp32 => Self::Fp32,
            ScorerPrecision::Tf32 => Self::Tf32,
        }
    }
}

impl AlignmentPrecision {
    fn math(self) -> Math {
        match self {
            Self::Fp32 => Math::Fp32,
            Self::Tf32 => Math::Tf32,
            Self::Fp16 => Math::Fp16,
        }
    }
}

/// Device memory a tower holds, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlignmentMemory {
    /// Weights (FP32), uploaded once, and their FP16 copies once `Fp16` has run.
    pub weights: usize,
    /// Work buffers at their current size (they grow with the views and their size).
    pub work: usize,
}

impl AlignmentMemory {
    pub fn total(&self) -> usize {
        self.weights + self.work
    }
}

pub use crate::scorer::alignment::cosines;

/// Both alignment towers of a worker on one device, and the scorer's way into them
/// ([`crate::scorer::alignment::measure`] through the [`Towers`] below).
#[derive(Debug)]
pub struct GpuAlignment {
    pub text: GpuTextAlignment,
    pub image: GpuImageAlignment,
}

impl GpuAlignment {
    /// Uploads both towers of `models` to the device of `ctx`; they work on `stream`.
    pub fn new(
        ctx: &Arc<CudaContext>,
        stream: &Arc<CudaStream>,
        models: &AlignmentModels,
    ) -> Result<Self, GpuError> {
        Ok(Self {
            text: GpuTextAlignment::new(ctx, stream, &models.text)?,
            image: GpuImageAlignment::new(ctx, stream, &models.image)?,
        })
    }

    /// Device memory both towers hold.
    pub fn memory(&self) -> AlignmentMemory {
        let (t, i) = (self.text.memory(), self.image.memory());
        AlignmentMemory {
            weights: t.weights + i.weights,
            work: t.work + i.work,
        }
    }

    pub fn set_precision(&mut self, precision: impl Into<AlignmentPrecision>) {
        let precision = precision.into();
        self.text.set_precision(precision);
        self.image.set_precision(precision);
    }

    /// The alignment of the renderer's last render (`views × height × width` RGBA `f32`)
    /// with `prompt`.
    pub fn align_render(
        &mut self,
        tokenizer: &ClipTokenizer,
        image: &CudaSlice<f32>,
        (views, width, height): (usize, u32, u32),
        prompt: Prompt,
    ) -> Alignment {
        let source = ViewSource::Render {
            image,
            views,
            width,
            height,
        };
        measure(&mut GpuTowers { gpu: self, source }, tokenizer, prompt)
    }

    /// The alignment of 8-bit views with `prompt` (uploaded first).
    pub fn align_images(
        &mut self,
        tokenizer: &ClipTokenizer,
        images: &ScoreImages,
        prompt: Prompt,
    ) -> Alignment {
        let source = ViewSource::Images(images);
        measure(&mut GpuTowers { gpu: self, source }, tokenizer, prompt)
    }
}

/// Where the views to align are.
enum ViewSource<'a> {
    Render {
        image: &'a CudaSlice<f32>,
        views: usize,
        width: u32,
        height: u32,
    },
    Images(&'a ScoreImages),
}

struct GpuTowers<'a> {
    gpu: &'a mut GpuAlignment,
    source: ViewSource<'a>,
}

impl Towers for GpuTowers<'_> {
    fn text_views(&mut self) -> Result<Vec<Vec<f32>>, String> {
        self.gpu
            .text
            .encode_source(&self.source)
            .map_err(|e| e.to_string())
    }

    fn text_prompt(&mut self, ids: &[u32]) -> Result<Vec<f32>, String> {
        self.gpu.text.encode_text(ids).map_err(|e| e.to_string())
    }

    fn image_views(&mut self) -> Result<Vec<Vec<f32>>, String> {
        self.gpu
            .image
            .encode_source(&self.source)
            .map_err(|e| e.to_string())
    }

    fn image_prompt(&mut self, prompt: &PromptImage) -> Result<Vec<f32>, String> {
        self.gpu
            .image
            .encode_prompt(prompt)
            .map_err(|e| e.to_string())
    }
}

/// A tower's image side: its [`Runtime`] and its forward pass on the runtime's planes,
/// and from those the encoding of views wherever they are.
trait ViewEncoder {
    fn runtime(&mut self) -> &mut Runtime;

    /// The normalised embedding of each of the `views` views of `w × h` in the planes.
    fn encode_planes(
        &mut self,
        views: usize,
        wh: (usize, usize),
    ) -> Result<Vec<Vec<f32>>, GpuError>;

    /// The normalised embedding of each view of `source`: the render buffer's views
    /// truncated to 8 bits on the device as the validator truncates, or 8-bit views uploaded.
    fn encode_source(&mut self, source: &ViewSource<'_>) -> Result<Vec<Vec<f32>>, GpuError> {
        let (views, wh) = match *source {
            ViewSource::Render {
                image,
                views,
                width,
                height,
            } => {
                let wh = (width as usize, height as usize);
                self.runtime().planes_from_render(image, views, wh)?;
                (views, wh)
            }
            ViewSource::Images(images) => {
                (images.views, self.runtime().planes_from_images(images)?)
            }
        };
        self.encode_planes(views, wh)
    }
}

/// The views per render the work buffers are first sized for, and their side.
const INITIAL_VIEWS: usize = 16;
const INITIAL_SIDE: usize = 518;

/// Allocates device buffers and counts their bytes.
struct Alloc<'a> {
    stream: &'a Arc<CudaStream>,
    bytes: usize,
    /// The matrix products' weights uploaded (address, floats): those with an FP16 copy
    /// under [`AlignmentPrecision::Fp16`].
    gemm_weights: Vec<(u64, usize)>,
}

impl<'a> Alloc<'a> {
    fn new(stream: &'a Arc<CudaStream>) -> Self {
        Self {
            stream,
            bytes: 0,
            gemm_weights: Vec::new(),
        }
    }

    /// [`Alloc::upload`] of a weight that is a matrix product's B operand (from its head).
    fn upload_gemm(&mut self, data: &[f32]) -> Result<Buf<f32>, GpuError> {
        let b = self.upload(data)?;
        self.gemm_weights.push((b.ptr(), b.len()));
        Ok(b)
    }

    fn zeros(&mut self, n: usize) -> Result<Buf<f32>, GpuError> {
        let b = Buf::zeros(self.stream, n)?;
        self.bytes += b.len() * 4;
        Ok(b)
    }

    fn upload(&mut self, data: &[f32]) -> Result<Buf<f32>, GpuError> {
        let b = Buf::upload(self.stream, data)?;
        self.bytes += b.len() * 4;
        Ok(b)
    }

    fn upload_u64(&mut self, data: &[u64]) -> Result<Buf<u64>, GpuError> {
        let b = Buf::upload(self.stream, data)?;
        self.bytes += b.len() * 8;
        Ok(b)
    }
}

/// A LayerNorm on the device, with its byte count folded into an [`Alloc`].
#[derive(Debug)]
struct Norm {
    w: Buf<f32>,
    b: Buf<f32>,
    eps: f32,
}

impl Norm {
    fn upload(
        a: &mut Alloc<'_>,
        n: &crate::scorer::model::LayerNorm,
        width: usize,
        what: &str,
    ) -> Result<Self, GpuError> {
        super::weights::check_len(&format!("{what}.weight"), n.weight.len(), width)?;
        super::weights::check_len(&format!("{what}.bias"), n.bias.len(), width)?;
        Ok(Self {
            w: a.upload(&n.weight)?,
            b: a.upload(&n.bias)?,
            eps: n.eps,
        })
    }

    fn args(&self) -> kernels::NormArgs {
        (self.w.ptr(), self.b.ptr(), self.eps)
    }
}

/// A `Linear` on the device: weight `[out, in]` and bias (zeros when it has none), checked.
#[derive(Debug)]
struct Lin {
    w: Buf<f32>,
    b: Buf<f32>,
}

impl Lin {
    fn upload(
        a: &mut Alloc<'_>,
        l: &crate::scorer::model::Linear,
        out: usize,
        inp: usize,
        what: &str,
    ) -> Result<Self, GpuError> {
        let (w, b) = super::weights::linear_parts(l, out, inp, what)?;
        Ok(Self {
            w: a.upload_gemm(&w)?,
            b: a.upload(&b)?,
        })
    }
}

/// What both towers share: the stream, the kernels, a cuBLAS handle, the 8-bit planes of
/// the views (or of a prompt image) and the precision.
#[derive(Debug)]
struct Runtime {
    stream: Arc<CudaStream>,
    kernels: Kernels,
    align: AlignKernels,
    blas: Blas,
    /// Planar `/255` 8-bit views, `views × 3 × pixels`.
    planes: Buf<f32>,
    rgb8: Option<Buf<u8>>,
    precision: AlignmentPrecision,
    /// The tower's matrix-product weights (address, floats), given FP16 copies in `blas`
    /// the first time [`AlignmentPrecision::Fp16`] runs.
    gemm_weights: Vec<(u64, usize)>,
}

impl Runtime {
    fn new(ctx: &Arc<CudaContext>, stream: &Arc<CudaStream>) -> Result<Self, GpuError> {
        crate::gpu::probe()?;
        let align = AlignKernels::load(ctx)?;
        let mut blas = Blas::new(stream)?;
        blas.enable_half(align.f32_to_f16());
        Ok(Self {
            stream: stream.clone(),
            kernels: Kernels::load(ctx)?,
            align,
            blas,
            planes: Buf::zeros(stream, INITIAL_VIEWS * 3 * INITIAL_SIDE * INITIAL_SIDE)?,
            rgb8: None,
            precision: AlignmentPrecision::default(),
            gemm_weights: Vec::new(),
        })
    }

    /// Input buffers and the FP16 scratch buffer, bytes.
    fn input_bytes(&self) -> usize {
        self.planes.len() * 4 + self.rgb8.as_ref().map_or(0, Buf::len) + self.blas.half_bytes().1
    }

    /// The FP16 weight copies' bytes (none before `Fp16` first runs).
    fn half_weight_bytes(&self) -> usize {
        self.blas.half_bytes().0
    }

    /// The precision's cuBLAS math; for `Fp16`, the weights' FP16 copies first (once).
    fn set_math(&mut self) -> Result<(), GpuError> {
        if self.precision == AlignmentPrecision::Fp16 {
            for &(w, len) in &self.gemm_weights {
                // SAFETY: each entry is a weight buffer the tower uploaded and holds, of len
                // floats, never written again.
                unsafe { self.blas.add_half_weight(w, len) }?;
            }
        }
        self.blas.set_math(self.precision.math())
    }

    fn grow_planes(&mut self, n: usize) -> Result<(), GpuError> {
        if self.planes.len() < n {
            // Free the old buffer first.
            self.planes = Buf::zeros(&self.stream, 1)?;
            self.planes = Buf::zeros(&self.stream, n)?;
        }
        Ok(())
    }

    /// The renderer's image buffer (`views × height × width` RGBA `f32`, view-major) as 8-bit
    /// planes, truncated as the validator truncates.
    fn planes_from_render(
        &mut self,
        image: &CudaSlice<f32>,
        views: usize,
        (w, h): (usize, usize),
    ) -> Result<(), GpuError> {
        if views == 0 || w == 0 || h == 0 {
            return Err(GpuError::Input(format!("{views} views of {w}×{h}")));
        }
        if image.len() < views * w * h * 4 {
            return Err(GpuError::Input(format!(
                "the image buffer holds {} floats, {views} views of {w}×{h} RGBA need {}",
                image.len(),
                views * w * h * 4
            )));
        }
        self.grow_planes(views * 3 * w * h)?;
        let image = address_of(&self.stream, image);
        self.kernels
            .planes_from_render(&self.stream, image, w * h, views, self.planes.ptr())
    }

    /// `views` 8-bit HWC images of `w × h` (view-major) uploaded as planes.
    fn planes_from_rgb8(
        &mut self,
        rgb8: &[u8],
        views: usize,
        (w, h): (usize, usize),
    ) -> Result<(), GpuError> {
        let bytes = views * w * h * 3;
        if views == 0 || w == 0 || h == 0 || rgb8.len() != bytes {
            return Err(GpuError::Input(format!(
                "{} bytes of RGB for {views} images of {w}×{h}",
                rgb8.len()
            )));
        }
        self.grow_planes(views * 3 * w * h)?;
        if self.rgb8.as_ref().is_none_or(|b| b.len() < bytes) {
            self.rgb8 = None;
            self.rgb8 = Some(Buf::zeros(&self.stream, bytes)?);
        }
        let Some(buf) = self.rgb8.as_mut() else {
            return Err(GpuError::Unavailable("the 8-bit upload buffer"));
        };
        self.stream
            .memcpy_htod(rgb8, &mut buf.slice_mut().slice_mut(0..bytes))?;
        let ptr = buf.ptr();
        self.kernels
            .planes_from_rgb8(&self.stream, ptr, w * h, views, self.planes.ptr())
    }

    fn planes_from_images(&mut self, images: &ScoreImages) -> Result<(usize, usize), GpuError> {
        let (w, h) = (images.width as usize, images.height as usize);
        self.planes_from_rgb8(&images.rgb8, images.views, (w, h))?;
        Ok((w, h))
    }

    /// Copies `rows` rows of `n` floats from the head of `buf` back, after the stream's work.
    fn download(&self, buf: &Buf<f32>, rows: usize, n: usize) -> Result<Vec<Vec<f32>>, GpuError> {
        let mut host = vec![0f32; rows * n];
        let src = buf.slice().slice(0..rows * n);
        self.stream.memcpy_dtoh(&src, &mut host)?;
        self.stream.synchronize()?;
        Ok(host.chunks(n.max(1)).map(<[f32]>::to_vec).collect())
    }
}
