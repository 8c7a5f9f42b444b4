//! LLM2CLIP's vision side on CUDA: `CLIPVisionTransformer` (class token + bias-free patch
//! conv + position embeddings, `pre_layrnorm`, pre-norm encoder layers, `post_layernorm` on
//! the class token) and the bias-free `visual_projection`, on every image at once (rows =
//! images × tokens; attention as strided batched GEMMs over (image, head) and a row
//! softmax); the last layer on the class rows only. CPU reference: `scorer::llm2clip::vit`.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream};

use super::{
    super::{
        device::{Buf, Mat},
        encoder::{Encoder, LayerBufs, MlpHalf, Stack, StackLayer},
        weights::{bad, check_len, linear_parts, stacked_qkv},
    },
    AlignmentMemory, AlignmentPrecision, Alloc, Lin, Norm, Runtime, ViewEncoder, ViewSource,
    INITIAL_VIEWS,
};
use crate::{
    gpu::GpuError,
    scorer::{
        images::ScoreImages,
        llm2clip::{
            files::{Activation, Llm2ClipVision, VisionConfig},
            vit::{check_model, CLIP_MEAN, CLIP_STD, NORMALISE_FACTOR},
            PromptImage,
        },
    },
};

#[derive(Debug)]
struct Layer {
    ln1: Norm,
    /// q, k, v stacked: `[3·hidden, hidden]` and `[3·hidden]`.
    qkv: Lin,
    out: Lin,
    ln2: Norm,
    fc1: Lin,
    fc2: Lin,
}

#[derive(Debug)]
struct Weights {
    config: VisionConfig,
    class: Buf<f32>,
    /// `[hidden, 3·patch²]`.
    patch: Buf<f32>,
    pos: Buf<f32>,
    pre: Norm,
    layers: Vec<Layer>,
    post: Norm,
    /// `[projection, hidden]`.
    projection: Buf<f32>,
    /// Zeros (`hidden`): the patch conv's absent bias.
    zeros: Buf<f32>,
    /// Ones (`hidden`): the residual kernel's layer scale, which CLIP's layers lack.
    ones: Buf<f32>,
}

fn upload(a: &mut Alloc<'_>, m: &Llm2ClipVision) -> Result<Weights, GpuError> {
    check_model(m).map_err(|e| bad(e.to_string()))?;
    let c = m.config;
    let (h, mlp, p) = (c.hidden_size, c.intermediate_size, c.patch_size);
    check_len(
        "patch_embedding.weight",
        m.patch_embedding.weight.data.len(),
        h * 3 * p * p,
    )?;
    let mut layers = Vec::with_capacity(m.layers.len());
    for (i, l) in m.layers.iter().enumerate() {
        let name = |part: &str| format!("vision_model.encoder.layers.{i}.{part}");
        let (w, b) = stacked_qkv(
            [
                (&l.q_proj, name("self_attn.q_proj")),
                (&l.k_proj, name("self_attn.k_proj")),
                (&l.v_proj, name("self_attn.v_proj")),
            ],
            h,
        )?;
        layers.push(Layer {
            ln1: Norm::upload(a, &l.layer_norm1, h, &name("layer_norm1"))?,
            qkv: Lin {
                w: a.upload_gemm(&w)?,
                b: a.upload(&b)?,
            },
            out: Lin::upload(a, &l.out_proj, h, h, &name("self_attn.out_proj"))?,
            ln2: Norm::upload(a, &l.layer_norm2, h, &name("layer_norm2"))?,
            fc1: Lin::upload(a, &l.fc1, mlp, h, &name("mlp.fc1"))?,
            fc2: Lin::upload(a, &l.fc2, h, mlp, &name("mlp.fc2"))?,
        });
    }
    let (proj, _) = linear_parts(
        &m.visual_projection,
        c.projection_dim,
        h,
        "visual_projection",
    )?;
    Ok(Weights {
        config: c,
        class: a.upload(&m.class_embedding)?,
        patch: a.upload_gemm(&m.patch_embedding.weight.data)?,
        pos: a.upload(&m.position_embedding)?,
        pre: Norm::upload(a, &m.pre_layrnorm, h, "vision_model.pre_layrnorm")?,
        layers,
        post: Norm::upload(a, &m.post_layernorm, h, "vision_model.post_layernorm")?,
        projection: a.upload_gemm(&proj)?,
        zeros: a.upload(&vec![0.0; h])?,
        ones: a.upload(&vec![1.0; h])?,
    })
}

/// Work buffers for up to `images` images.
#[derive(Debug)]
struct Work {
    images: usize,
    cols: Buf<f32>,
    x: Buf<f32>,
    xn: Buf<f32>,
    y: Buf<f32>,
    wide: Buf<f32>,
    heads: Buf<f32>,
    scores: Buf<f32>,
    ctx: Buf<f32>,
    /// O = P·V's operand addresses per (image, head): P, V, then the context rows (the
    /// heads of an image side by side, so O lands in `[tokens, hidden]`).
    pv_ptrs: Buf<u64>,
    emb: Buf<f32>,
    out: Buf<f32>,
    bytes: usize,
}

impl Work {
    fn new(s: &Arc<CudaStream>, c: &VisionConfig, images: usize) -> Result<Self, GpuError> {
        let (h, t, p) = (c.hidden_size, c.tokens(), c.patch_size);
        let (nh, dim) = (c.num_attention_heads, h / c.num_attention_heads);
        let m = images * t;
        let pairs = images * nh;
        let mut a = Alloc::new(s);
        let heads = a.zeros(3 * m * h)?;
        let scores = a.zeros(pairs * t * t)?;
        let ctx = a.zeros(m * h)?;
        let mut ptrs = Vec::with_capacity(3 * pairs);
        ptrs.extend((0..pairs).map(|i| scores.at(i * t * t)));
        ptrs.extend((0..pairs).map(|i| heads.at(2 * m * h + i * t * dim)));
        ptrs.extend((0..pairs).map(|i| ctx.at((i / nh) * t * h + (i % nh) * dim)));
        Ok(Self {
            images,
            pv_ptrs: a.upload_u64(&ptrs)?,
            cols: a.zeros(images * c.grid() * c.grid() * 3 * p * p)?,
            x: a.zeros(m * h)?,
            xn: a.zeros(m * h)?,
            y: a.zeros(m * h)?,
            wide: a.zeros(m * (3 * h).max(c.intermediate_size))?,
            heads,
            scores,
            ctx,
            emb: a.zeros(images * c.projection_dim)?,
            out: a.zeros(images * c.projection_dim)?,
            bytes: a.bytes,
        })
    }
}

/// The image task's alignment model (LLM2CLIP's vision tower) on one device.
#[derive(Debug)]
pub struct GpuImageAlignment {
    rt: Runtime,
    weights: Weights,
    work: Work,
    weight_bytes: usize,
}

impl GpuImageAlignment {
    /// Uploads `model` to the device of `ctx`, compiles the kernels, and works on `stream`.
    pub fn new(
        ctx: &Arc<CudaContext>,
        stream: &Arc<CudaStream>,
        model: &Llm2ClipVision,
    ) -> Result<Self, GpuError> {
        let mut rt = Runtime::new(ctx, stream)?;
        let mut a = Alloc::new(stream);
        let weights = upload(&mut a, model)?;
        let weight_bytes = a.bytes;
        rt.gemm_weights = a.gemm_weights;
        let work = Work::new(stream, &weights.config, INITIAL_VIEWS)?;
        Ok(Self {
            rt,
            weights,
            work,
            weight_bytes,
        })
    }

    pub fn precision(&self) -> AlignmentPrecision {
        self.rt.precision
    }

    pub fn set_precision(&mut self, precision: impl Into<AlignmentPrecision>) {
        self.rt.precision = precision.into();
    }

    /// Device memory held: weights, and work buffers at their current size.
    pub fn memory(&self) -> AlignmentMemory {
        AlignmentMemory {
            weights: self.weight_bytes + self.rt.half_weight_bytes(),
            work: self.work.bytes + self.rt.input_bytes(),
        }
    }

    /// The normalised embedding of each view of the renderer's image buffer (`views ×
    /// height × width` RGBA `f32`, view-major), truncated to 8 bits as the validator does.
    pub fn encode_views_from_render(
        &mut self,
        image: &CudaSlice<f32>,
        views: usize,
        width: u32,
        height: u32,
    ) -> Result<Vec<Vec<f32>>, GpuError> {
        self.encode_source(&ViewSource::Render {
            image,
            views,
            width,
            height,
        })
    }

    /// The normalised embedding of each 8-bit view.
    pub fn encode_views(&mut self, images: &ScoreImages) -> Result<Vec<Vec<f32>>, GpuError> {
        self.encode_source(&ViewSource::Images(images))
    }

    /// The normalised embedding of the decoded prompt image (any size; resized as the
    /// service resizes).
    pub fn encode_prompt(&mut self, prompt: &PromptImage) -> Result<Vec<f32>, GpuError> {
        self.rt
            .planes_from_rgb8(&prompt.rgb8, 1, (prompt.width, prompt.height))?;
        let mut out = self.encode_planes(1, (prompt.width, prompt.height))?;
        out.pop()
            .ok_or(GpuError::Unavailable("the prompt embedding"))
    }
}

impl ViewEncoder for GpuImageAlignment {
    fn runtime(&mut self) -> &mut Runtime {
        &mut self.rt
    }

    fn encode_planes(
        &mut self,
        images: usize,
        (w, h): (usize, usize),
    ) -> Result<Vec<Vec<f32>>, GpuError> {
        let cfg = self.weights.config;
        if images > self.work.images {
            self.work = Work::new(&self.rt.stream, &cfg, 1)?;
            self.work = Work::new(&self.rt.stream, &cfg, images)?;
        }
        self.rt.set_math()?;
        let (rt, wt, wk) = (&self.rt, &self.weights, &self.work);
        let (s, k, al, b) = (&rt.stream, &rt.kernels, &rt.align, &rt.blas);
        let (hd, t, nh, mlp) = (
            cfg.hidden_size,
            cfg.tokens(),
            cfg.num_attention_heads,
            cfg.intermediate_size,
        );
        let (p, g) = (cfg.patch_size, cfg.grid());
        let (m, kk) = (images * t, 3 * p * p);
        let mean = CLIP_MEAN.map(|v| v * NORMALISE_FACTOR);
        let std = CLIP_STD.map(|v| v * NORMALISE_FACTOR);
        al.bicubic_patches(
            s,
            rt.planes.ptr(),
            (w, h),
            images,
            (cfg.image_size, p),
            (mean, std),
            wk.cols.ptr(),
        )?;
        // SAFETY (every GEMM below): the operands lie inside buffers `Work::new` sized for at
        // least `images` images, and the weights' shapes were checked at upload.
        // The patch embedding into rows 1.. of each image's tokens in `y`.
        unsafe {
            b.gemm(
                (g * g, hd, kk),
                1.0,
                Mat::strided(wk.cols.ptr(), kk, g * g * kk),
                Mat::new(wt.patch.ptr(), kk),
                true,
                0.0,
                Mat::strided(wk.y.at(hd), hd, t * hd),
                images,
            )?;
        }
        // Class token + position embeddings, then pre_layrnorm into the residual stream x.
        k.embed_finish(
            s,
            wk.y.ptr(),
            (wt.class.ptr(), wt.pos.ptr(), wt.zeros.ptr()),
            wt.pre.args(),
            m,
            t,
            hd,
            wk.x.ptr(),
        )?;
        let first = wt
            .layers
            .first()
            .ok_or(GpuError::Unavailable("the vision tower's layers"))?;
        al.layer_norm_rows(
            s,
            wk.x.ptr(),
            None,
            first.ln1.args(),
            (m, hd, hd),
            wk.xn.ptr(),
            hd,
        )?;
        // Q, K and V at fixed offsets of the buffer (sized for `wk.images` images), where the
        // P·V address arrays expect V; attention in one chunk of all pairs.
        let cap = wk.images * t;
        let bh = wk.images * nh;
        let stack = Stack {
            batch: images,
            tokens: t,
            hidden: hd,
            heads: nh,
            mlp,
            chunk: images * nh,
            x: wk.x.ptr(),
            qkv: (
                wk.heads.ptr(),
                wk.heads.at(cap * hd),
                wk.heads.at(2 * cap * hd),
            ),
            pv_ptrs: (wk.pv_ptrs.ptr(), wk.pv_ptrs.at(bh), wk.pv_ptrs.at(2 * bh)),
            scores: wk.scores.ptr(),
            bufs: LayerBufs {
                ctx: wk.ctx.ptr(),
                y: wk.y.ptr(),
                xn: wk.xn.ptr(),
                wide: wk.wide.ptr(),
            },
        };
        let layer = |i: usize| {
            let l = &wt.layers[i];
            StackLayer {
                qkv: (l.qkv.w.ptr(), l.qkv.b.ptr()),
                half: MlpHalf {
                    out: (l.out.w.ptr(), l.out.b.ptr()),
                    ls1: wt.ones.ptr(),
                    norm2: l.ln2.args(),
                    fc1: (l.fc1.w.ptr(), l.fc1.b.ptr()),
                    fc2: (l.fc2.w.ptr(), l.fc2.b.ptr()),
                    ls2: wt.ones.ptr(),
                },
                // The next layer's layer_norm1, or post_layernorm after the last (class rows).
                next: Some(wt.layers.get(i + 1).map_or(&wt.post, |l| &l.ln1).args()),
            }
        };
        let act = |y, bias, r, c| match cfg.activation {
            Activation::QuickGelu => al.bias_quick_gelu(s, y, bias, r, c),
            Activation::Gelu => k.bias_gelu(s, y, bias, r, c),
        };
        let enc = Encoder { s, k, b };
        unsafe { enc.class_token_stack(&stack, wt.layers.len(), layer, act) }?;
        // visual_projection (no bias) of post_layernorm(class), then L2.
        let e = cfg.projection_dim;
        unsafe {
            b.linear(
                images,
                e,
                hd,
                wk.xn.ptr(),
                wt.projection.ptr(),
                wk.emb.ptr(),
            )
        }?;
        al.l2_normalise_rows(s, wk.emb.ptr(), (images, e, e), wk.out.ptr())?;
        rt.download(&wk.out, images, e)
    }
}
