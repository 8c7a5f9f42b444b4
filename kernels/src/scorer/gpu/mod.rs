//! The scorer on CUDA: cuBLAS for the matrix products, NVRTC kernels (`scorer.cu`, and the
//! validator's SSIM beside the renderer's in `metrics.cu`) for the rest, reading the
//! renderer's image buffer on the same device and stream. Weights are uploaded once; work
//! buffers are allocated once (16 views at 518² to start) and grow on demand; nothing is read
//! back but the per-view and per-pair numbers.
//!
//! One call: the 8-bit views (planar, /255) → DINOv2 on all views at once (rows = views ×
//! tokens; attention as strided batched GEMMs over (view, head) and a row softmax) → the
//! quality head; LPIPS's AlexNet on every view once, then its distance for each pair
//! (i, (i + 1) mod n); the validator's SSIM of the same pairs; one packed copy back.

pub mod alignment;
mod device;
mod encoder;
mod kernels;
mod weights;

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream};

use self::{
    device::{address_of, Blas, Buf, Mat, Math},
    encoder::{Encoder, LayerBufs, MlpHalf, Stack, StackLayer},
    kernels::{Kernels, Nhwc},
    weights::Weights,
};
use super::{aggregate::PartScores, images::ScoreImages, model::ScorerModels};
use crate::{
    constants::{LPIPS_SIZE, SSIM_WINDOW},
    gpu::GpuError,
};

/// The arithmetic of the scorer's matrix products.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ScorerPrecision {
    /// FP32 GEMMs (cuBLAS default math, no tensor-core rounding): parity with PyTorch fp32.
    Fp32,
    /// TF32 tensor-core GEMMs (10-bit mantissa inputs, FP32 accumulation): twice as fast,
    /// and within 7e-4 of PyTorch fp32 on every CLS embedding and 1e-4 on the final score
    /// (kernels/BENCH.md), so the gate's default.
    #[default]
    Tf32,
}

/// The views per render the buffers are first sized for (the validator's rig).
const INITIAL_VIEWS: usize = 16;
const INITIAL_SIDE: usize = 518;

/// The scorer's weights and work buffers on one device.
#[derive(Debug)]
pub struct GpuScorer {
    stream: Arc<CudaStream>,
    kernels: Kernels,
    blas: Blas,
    weights: Weights,
    work: Work,
    rgb8: Option<Buf<u8>>,
    precision: ScorerPrecision,
}

/// The feature maps' shapes of LPIPS's AlexNet for `views` views: each conv's input and
/// output, and whether a max-pool precedes it.
#[derive(Debug, Clone, Copy)]
struct ConvStep {
    input: Nhwc,
    output: Nhwc,
    pooled_from: Option<Nhwc>,
}

fn lpips_steps(w: &Weights, views: usize) -> Result<[ConvStep; 5], GpuError> {
    let mut side = LPIPS_SIZE;
    let mut c = 3;
    let mut prev: Option<Nhwc> = None;
    let mut steps = Vec::with_capacity(5);
    for (i, conv) in w.convs.iter().enumerate() {
        // torchvision AlexNet: a 3×3 stride-2 max-pool before the 2nd and 3rd convs.
        let pooled_from = if i == 1 || i == 2 {
            let from = prev.ok_or(GpuError::Unavailable("LPIPS conv order"))?;
            side = from
                .h
                .checked_sub(3)
                .map(|s| s / 2 + 1)
                .ok_or_else(|| GpuError::Model(format!("LPIPS map {i} is under 3×3")))?;
            Some(from)
        } else {
            None
        };
        let input = Nhwc {
            views,
            h: side,
            w: side,
            c,
        };
        let out = conv
            .out(side)
            .filter(|&o| o > 0)
            .ok_or_else(|| GpuError::Model(format!("LPIPS conv {i} does not fit {side}²")))?;
        let output = Nhwc {
            views,
            h: out,
            w: out,
            c: conv.cout,
        };
        steps.push(ConvStep {
            input,
            output,
            pooled_from,
        });
        side = out;
        c = conv.cout;
        prev = Some(output);
    }
    steps
        .try_into()
        .map_err(|_| GpuError::Unavailable("LPIPS has five convs"))
}

fn numel(s: Nhwc) -> usize {
    s.views * s.h * s.w * s.c
}

/// Work buffers for up to `views` views of up to `pixels` pixels.
#[derive(Debug)]
struct Work {
    views: usize,
    pixels: usize,
    planes: Buf<f32>,
    cols: Buf<f32>,
    x: Buf<f32>,
    xn: Buf<f32>,
    wide: Buf<f32>,
    heads: Buf<f32>,
    scores: Buf<f32>,
    ctx: Buf<f32>,
    y: Buf<f32>,
    lpips_in: Buf<f32>,
    feats: Vec<Buf<f32>>,
    pooled: Vec<Buf<f32>>,
    /// O = P·V's operand addresses per (view, head), for `views` views: P, V, then the
    /// context rows (the heads of a view side by side, so O lands in `[tokens, hidden]`).
    /// P of pair `i` is score matrix `i mod attention_chunk`.
    pv_ptrs: Buf<u64>,
    /// (view, head) pairs whose attention scores are computed, softmaxed and applied
    /// together; all of them unless a benchmark asks for fewer (smaller chunks keep the
    /// scores in L2 but were slower on an H200: kernels/BENCH.md).
    attention_chunk: usize,
    quality: Buf<f32>,
    scratch: Buf<f32>,
    ssim: Buf<f64>,
    lpips: Buf<f64>,
    out: Buf<f64>,
}

impl Work {
    fn new(
        s: &Arc<CudaStream>,
        w: &Weights,
        views: usize,
        pixels: usize,
        attention_chunk: Option<usize>,
    ) -> Result<Self, GpuError> {
        let cfg = w.config;
        let (h, t, p) = (cfg.hidden_size, cfg.tokens(), cfg.patch_size);
        let m = views * t;
        let steps = lpips_steps(w, views)?;
        let patch_cols = views * cfg.grid() * cfg.grid() * 3 * p * p;
        let conv_cols = steps
            .iter()
            .zip(&w.convs)
            .map(|(st, c)| st.output.views * st.output.h * st.output.w * st.input.c * c.k * c.k)
            .max()
            .unwrap_or(0);
        let z = |n: usize| Buf::<f32>::zeros(s, n);
        let mut feats = Vec::with_capacity(5);
        let mut pooled = Vec::with_capacity(2);
        for st in &steps {
            feats.push(z(numel(st.output))?);
            if st.pooled_from.is_some() {
                pooled.push(z(numel(st.input))?);
            }
        }
        let pairs = views * cfg.num_attention_heads;
        let chunk = attention_chunk.unwrap_or(pairs).clamp(1, pairs.max(1));
        let scores = z(chunk * t * t)?;
        let heads = z(3 * m * h)?;
        let ctx = z(m * h)?;
        let (nh, dim) = (cfg.num_attention_heads, cfg.head_dim());
        let bh = views * nh;
        let mut ptrs = Vec::with_capacity(3 * bh);
        ptrs.extend((0..bh).map(|i| scores.at((i % chunk) * t * t)));
        ptrs.extend((0..bh).map(|i| heads.at(2 * m * h + i * t * dim)));
        ptrs.extend((0..bh).map(|i| ctx.at((i / nh) * t * h + (i % nh) * dim)));
        Ok(Self {
            views,
            pixels,
            pv_ptrs: Buf::upload(s, &ptrs)?,
            attention_chunk: chunk,
            planes: z(views * 3 * pixels)?,
            cols: z(patch_cols.max(conv_cols))?,
            x: z(m * h)?,
            xn: z(m * h)?,
            wide: z(m * (3 * h).max(cfg.mlp_hidden))?,
            heads,
            scores,
            ctx,
            y: z(m * h)?,
            lpips_in: z(views * LPIPS_SIZE * LPIPS_SIZE * 3)?,
            feats,
            pooled,
            quality: z(views)?,
            scratch: z(views * h)?,
            ssim: Buf::zeros(s, views)?,
            lpips: Buf::zeros(s, views)?,
            out: Buf::zeros(s, 3 * views)?,
        })
    }
}

impl GpuScorer {
    /// Uploads `models` to the device of `ctx`, compiles the kernels, and works on `stream`.
    pub fn new(
        ctx: &Arc<CudaContext>,
        stream: &Arc<CudaStream>,
        models: &ScorerModels,
    ) -> Result<Self, GpuError> {
        crate::gpu::probe()?;
        let kernels = Kernels::load(ctx)?;
        let blas = Blas::new(stream)?;
        let weights = Weights::upload(stream, models)?;
        let work = Work::new(
            stream,
            &weights,
            INITIAL_VIEWS,
            INITIAL_SIDE * INITIAL_SIDE,
            None,
        )?;
        Ok(Self {
            stream: stream.clone(),
            kernels,
            blas,
            weights,
            work,
            rgb8: None,
            precision: ScorerPrecision::default(),
        })
    }

    pub fn precision(&self) -> ScorerPrecision {
        self.precision
    }

    pub fn set_precision(&mut self, precision: ScorerPrecision) {
        self.precision = precision;
    }

    /// (view, head) pairs per attention step (benchmarks; `None`: all of them).
    /// Reallocates the work buffers.
    pub fn set_attention_chunk(&mut self, chunk: Option<usize>) -> Result<(), GpuError> {
        let (views, pixels) = (self.work.views, self.work.pixels);
        self.work = Work::new(&self.stream, &self.weights, 1, 1, Some(1))?;
        self.work = Work::new(&self.stream, &self.weights, views, pixels, chunk)?;
        Ok(())
    }

    pub fn attention_chunk(&self) -> usize {
        self.work.attention_chunk
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
        let (w, h) = self.prepare(views, width, height)?;
        if image.len() < views * w * h * 4 {
            return Err(GpuError::Input(format!(
                "the image buffer holds {} floats, {views} views of {w}×{h} RGBA need {}",
                image.len(),
                views * w * h * 4
            )));
        }
        let image = address_of(&self.stream, image);
        self.kernels.planes_from_render(
            &self.stream,
            image,
            w * h,
            views,
            self.work.planes.ptr(),
        )?;
        self.score_planes(views, w, h)
    }

    /// The CLS embeddings (`last_hidden_state[:, 0]`, after the final LayerNorm) of the last
    /// scored batch's first `views` views, for parity checks against transformers.
    pub fn last_cls_embeddings(&self, views: usize) -> Result<Vec<Vec<f32>>, GpuError> {
        let hidden = self.weights.config.hidden_size;
        let n = views.min(self.work.views) * hidden;
        let mut host = vec![0f32; n];
        let src = self.work.scratch.slice().slice(0..n);
        self.stream.memcpy_dtoh(&src, &mut host)?;
        self.stream.synchronize()?;
        Ok(host.chunks(hidden).map(<[f32]>::to_vec).collect())
    }

    /// Uploads 8-bit images and scores them (the `score` CLI, parity checks).
    pub fn score_images(&mut self, images: &ScoreImages) -> Result<PartScores, GpuError> {
        let (views, w, h) = (images.views, images.width, images.height);
        let (w, h) = self.prepare(views, w, h)?;
        let bytes = views * w * h * 3;
        if images.rgb8.len() != bytes {
            return Err(GpuError::Input(format!(
                "{} bytes of RGB, {views} views of {w}×{h} need {bytes}",
                images.rgb8.len()
            )));
        }
        if self.rgb8.as_ref().is_none_or(|b| b.len() < bytes) {
            self.rgb8 = Some(Buf::zeros(&self.stream, bytes)?);
        }
        let Some(buf) = self.rgb8.as_mut() else {
            return Err(GpuError::Unavailable("the 8-bit upload buffer"));
        };
        // The buffer may be longer than this batch: copy into its head.
        self.stream
            .memcpy_htod(&images.rgb8, &mut buf_slice_mut(buf, bytes))?;
        let ptr = buf.ptr();
        self.kernels
            .planes_from_rgb8(&self.stream, ptr, w * h, views, self.work.planes.ptr())?;
        self.score_planes(views, w, h)
    }

    /// Checks the batch and grows the work buffers for it.
    fn prepare(
        &mut self,
        views: usize,
        width: u32,
        height: u32,
    ) -> Result<(usize, usize), GpuError> {
        let (w, h) = (width as usize, height as usize);
        let r = SSIM_WINDOW / 2;
        if views == 0 || w <= r || h <= r {
            return Err(GpuError::Input(format!(
                "{views} views of {w}×{h}: SSIM's reflection padding needs at least one view \
                 of more than {r}×{r} pixels"
            )));
        }
        if views > self.work.views || w * h > self.work.pixels {
            let views = views.max(self.work.views);
            let pixels = (w * h).max(self.work.pixels);
            // Free the old buffers first: the attention scores alone are large.
            let chunk = Some(self.work.attention_chunk);
            self.work = Work::new(&self.stream, &self.weights, 1, 1, chunk)?;
            self.work = Work::new(&self.stream, &self.weights, views, pixels, chunk)?;
        }
        Ok((w, h))
    }

    /// Everything after the planar 8-bit views are in `work.planes`.
    fn score_planes(&mut self, views: usize, w: usize, h: usize) -> Result<PartScores, GpuError> {
        let math = match self.precision {
            ScorerPrecision::Fp32 => Math::Fp32,
            ScorerPrecision::Tf32 => Math::Tf32,
        };
        self.blas.set_math(math)?;
        self.work.ssim.zero(&self.stream)?;
        self.work.lpips.zero(&self.stream)?;
        self.quality(views, w, h)?;
        self.lpips(views, w, h)?;
        let (s, k, wk) = (&self.stream, &self.kernels, &self.work);
        k.ssim_validator(s, wk.planes.ptr(), (w, h), views, wk.ssim.ptr())?;
        k.pack_scores(
            s,
            (wk.quality.ptr(), wk.ssim.ptr(), wk.lpips.ptr()),
            views,
            (3 * w * h) as f64,
            wk.out.ptr(),
        )?;
        let mut host = vec![0f64; 3 * views];
        let out = wk.out.slice().slice(0..3 * views);
        self.stream.memcpy_dtoh(&out, &mut host)?;
        self.stream.synchronize()?;
        Ok(PartScores {
            view_quality: host[..views].to_vec(),
            pair_ssim: host[views..2 * views].to_vec(),
            pair_lpips: host[2 * views..].to_vec(),
        })
    }

    /// DINOv2 on every view at once, then the quality head: `work.quality`.
    fn quality(&mut self, views: usize, w: usize, h: usize) -> Result<(), GpuError> {
        let (s, k, b, wt, wk) = (
            &self.stream,
            &self.kernels,
            &self.blas,
            &self.weights,
            &self.work,
        );
        let cfg = wt.config;
        let (hd, t, heads, mlp) = (
            cfg.hidden_size,
            cfg.tokens(),
            cfg.num_attention_heads,
            cfg.mlp_hidden,
        );
        let (p, g) = (cfg.patch_size, cfg.grid());
        let (m, kk) = (views * t, 3 * p * p);
        // Patch embedding: im2col of the resized, normalised views, then one GEMM per view
        // into rows 1.. of its tokens (row 0 is the CLS token).
        k.iqa_patches(
            s,
            wk.planes.ptr(),
            (w, h),
            views,
            cfg.image_size,
            p,
            wk.cols.ptr(),
        )?;
        // SAFETY (every GEMM below): the operands lie inside buffers sized by `Work::new` for
        // at least `views` views, and the weights' shapes were checked at upload.
        unsafe {
            b.gemm(
                (g * g, hd, kk),
                1.0,
                Mat::strided(wk.cols.ptr(), kk, g * g * kk),
                Mat::new(wt.patch.w.ptr(), kk),
                true,
                0.0,
                Mat::strided(wk.x.at(hd), hd, t * hd),
                views,
            )?;
        }
        let first = wt.layers.first().map(|l| &l.norm1);
        let norm_of = |n: &weights::Norm| (n.w.ptr(), n.b.ptr(), n.eps);
        let n0 = first.map_or((0, 0, 0.0), norm_of);
        k.embed_finish(
            s,
            wk.x.ptr(),
            (wt.cls.ptr(), wt.pos.ptr(), wt.patch.b.ptr()),
            n0,
            m,
            t,
            hd,
            wk.xn.ptr(),
        )?;
        // Q, K and V sit at fixed offsets of the buffer (sized for `wk.views` views), where
        // the P·V address arrays expect V.
        let cap = wk.views * t;
        let bh = wk.views * heads;
        let stack = Stack {
            batch: views,
            tokens: t,
            hidden: hd,
            heads,
            mlp,
            chunk: wk.attention_chunk,
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
                qkv: (l.qkv_w.ptr(), l.qkv_b.ptr()),
                half: MlpHalf {
                    out: (l.out_w.ptr(), l.out_b.ptr()),
                    ls1: l.ls1.ptr(),
                    norm2: norm_of(&l.norm2),
                    fc1: (l.fc1_w.ptr(), l.fc1_b.ptr()),
                    fc2: (l.fc2_w.ptr(), l.fc2_b.ptr()),
                    ls2: l.ls2.ptr(),
                },
                // The next layer's first LayerNorm; after the last layer only the CLS rows
                // are normalised, by the head.
                next: wt.layers.get(i + 1).map(|l| norm_of(&l.norm1)),
            }
        };
        let gelu = |y, bias, r, c| k.bias_gelu(s, y, bias, r, c);
        let enc = Encoder { s, k, b };
        unsafe { enc.class_token_stack(&stack, wt.layers.len(), layer, gelu) }?;
        k.quality_head(
            s,
            wk.x.ptr(),
            (views, t, hd),
            norm_of(&wt.final_norm),
            (wt.head_w.ptr(), wt.head_b),
            wk.scratch.ptr(),
            wk.quality.ptr(),
        )
    }

    /// LPIPS's AlexNet on every view once, each tap's distance of every pair into `work.lpips`.
    fn lpips(&mut self, views: usize, w: usize, h: usize) -> Result<(), GpuError> {
        let (s, k, b, wt, wk) = (
            &self.stream,
            &self.kernels,
            &self.blas,
            &self.weights,
            &self.work,
        );
        let steps = lpips_steps(wt, views)?;
        k.lpips_input(
            s,
            wk.planes.ptr(),
            (w, h),
            views,
            LPIPS_SIZE,
            wk.lpips_in.ptr(),
        )?;
        let mut pooled = wk.pooled.iter();
        let mut source = wk.lpips_in.ptr();
        for (i, (st, conv)) in steps.iter().zip(&wt.convs).enumerate() {
            if let Some(from) = st.pooled_from {
                let dst = pooled
                    .next()
                    .ok_or(GpuError::Unavailable("LPIPS pool buffers"))?;
                k.max_pool(s, source, from, (st.input.h, st.input.w), dst.ptr())?;
                source = dst.ptr();
            }
            let out = &wk.feats[i];
            let (o, kk) = (st.output, st.input.c * conv.k * conv.k);
            k.im2col(
                s,
                source,
                st.input,
                (conv.k, conv.stride, conv.pad),
                (o.h, o.w),
                wk.cols.ptr(),
            )?;
            let rows = o.views * o.h * o.w;
            // SAFETY: cols holds rows × kk (sized for the largest conv), out rows × cout.
            unsafe { b.linear(rows, o.c, kk, wk.cols.ptr(), conv.w.ptr(), out.ptr()) }?;
            k.bias_relu(s, out.ptr(), conv.b.ptr(), rows, o.c)?;
            k.lpips_tap(s, out.ptr(), o, wt.lins[i].ptr(), wk.lpips.ptr())?;
            source = out.ptr();
        }
        Ok(())
    }
}

/// The first `len` elements of `buf`, for a host copy.
fn buf_slice_mut(buf: &mut Buf<u8>, len: usize) -> cudarc::driver::CudaViewMut<'_, u8> {
    buf.slice_mut().slice_mut(0..len)
}
