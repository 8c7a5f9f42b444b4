//! open_clip `convnext_large_d` on CUDA: the ConvNeXt image tower on every view at once
//! (channels-last rows `views × pixels`, one GEMM per stem / downsample / MLP layer over all
//! views) and the causal text transformer on the prompt's tokens up to the EOT (the last
//! layer for the EOT row alone). CPU reference: `scorer::convnext_clip::forward`.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream};

use super::{
    super::{
        device::{Buf, Mat},
        encoder::{Encoder, LayerBufs, MlpHalf},
        kernels::Nhwc,
        weights::{bad, check_len},
    },
    AlignmentMemory, AlignmentPrecision, Alloc, Lin, Norm, Runtime, ViewEncoder, ViewSource,
    INITIAL_VIEWS,
};
use crate::{
    gpu::GpuError,
    scorer::{
        convnext_clip::{
            forward::{CLIP_INPUT_SIZE, CLIP_MEAN, CLIP_NORM_FACTOR, CLIP_STD},
            model::{ConvnextTower, TextTower},
            ConvnextClip,
        },
        images::ScoreImages,
    },
};

#[derive(Debug)]
struct Block {
    /// `conv_dw.weight` transposed to `[k·k][C]`.
    dw_w_t: Buf<f32>,
    dw_b: Buf<f32>,
    norm: Norm,
    fc1: Lin,
    fc2: Lin,
    gamma: Buf<f32>,
    mlp: usize,
}

#[derive(Debug)]
struct Stage {
    /// LayerNorm2d, then the k = s convolution as `[out, in·k·k]`.
    down: Option<(Norm, Lin)>,
    blocks: Vec<Block>,
    dim: usize,
}

#[derive(Debug)]
struct ImageTower {
    stem: Lin,
    stem_norm: Norm,
    stages: Vec<Stage>,
    head_norm: Norm,
    fc1: Lin,
    fc2: Lin,
    stem_patch: usize,
    kernel: usize,
    downsample: usize,
    head_hidden: usize,
    embed: usize,
}

#[derive(Debug)]
struct TextLayer {
    ln_1: Norm,
    in_proj: Lin,
    out_proj: Lin,
    ln_2: Norm,
    c_fc: Lin,
    c_proj: Lin,
}

#[derive(Debug)]
struct Text {
    token_embedding: Buf<f32>,
    positional_embedding: Buf<f32>,
    layers: Vec<TextLayer>,
    ln_final: Norm,
    /// `[width, embed]`, applied as `x @ projection`.
    projection: Buf<f32>,
    /// Ones (`width`): the residual kernel's layer scale, which open_clip's blocks lack.
    ones: Buf<f32>,
    width: usize,
    heads: usize,
    mlp: usize,
    context: usize,
    vocab: usize,
    embed: usize,
}

fn upload_image_tower(
    a: &mut Alloc<'_>,
    t: &ConvnextTower,
    (kernel, stem_patch, downsample): (usize, usize, usize),
) -> Result<ImageTower, GpuError> {
    if stem_patch == 0 || kernel == 0 || downsample == 0 {
        return Err(bad(format!(
            "convnext: stem patch {stem_patch}, kernel {kernel}, downsample {downsample}"
        )));
    }
    let c0 = t.stem.out_features();
    let stem = Lin::upload(
        a,
        &t.stem,
        c0,
        3 * stem_patch * stem_patch,
        "visual.trunk.stem.0",
    )?;
    let stem_norm = Norm::upload(a, &t.stem_norm, c0, "visual.trunk.stem.1")?;
    let mut stages = Vec::with_capacity(t.stages.len());
    let mut c = c0;
    for (si, st) in t.stages.iter().enumerate() {
        let name = |p: &str| format!("visual.trunk.stages.{si}.{p}");
        let down = match &st.downsample {
            Some((norm, conv)) => {
                let out = conv.out_features();
                let n = Norm::upload(a, norm, c, &name("downsample.0"))?;
                let l = Lin::upload(
                    a,
                    conv,
                    out,
                    c * downsample * downsample,
                    &name("downsample.1"),
                )?;
                c = out;
                Some((n, l))
            }
            None => None,
        };
        let mut blocks = Vec::with_capacity(st.blocks.len());
        for (bi, b) in st.blocks.iter().enumerate() {
            let bn = |p: &str| name(&format!("blocks.{bi}.{p}"));
            let kk = kernel * kernel;
            check_len(&bn("conv_dw.weight"), b.dw_weight.len(), c * kk)?;
            check_len(&bn("conv_dw.bias"), b.dw_bias.len(), c)?;
            check_len(&bn("gamma"), b.gamma.len(), c)?;
            let mut t_w = vec![0f32; c * kk];
            for ch in 0..c {
                for tap in 0..kk {
                    t_w[tap * c + ch] = b.dw_weight[ch * kk + tap];
                }
            }
            let mlp = b.fc1.out_features();
            blocks.push(Block {
                dw_w_t: a.upload(&t_w)?,
                dw_b: a.upload(&b.dw_bias)?,
                norm: Norm::upload(a, &b.norm, c, &bn("norm"))?,
                fc1: Lin::upload(a, &b.fc1, mlp, c, &bn("mlp.fc1"))?,
                fc2: Lin::upload(a, &b.fc2, c, mlp, &bn("mlp.fc2"))?,
                gamma: a.upload(&b.gamma)?,
                mlp,
            });
        }
        stages.push(Stage {
            down,
            blocks,
            dim: c,
        });
    }
    let head_hidden = t.proj_fc1.out_features();
    let embed = t.proj_fc2.out_features();
    Ok(ImageTower {
        stem,
        stem_norm,
        stages,
        head_norm: Norm::upload(a, &t.head_norm, c, "visual.trunk.head.norm")?,
        fc1: Lin::upload(a, &t.proj_fc1, head_hidden, c, "visual.head.mlp.fc1")?,
        fc2: Lin::upload(a, &t.proj_fc2, embed, head_hidden, "visual.head.mlp.fc2")?,
        stem_patch,
        kernel,
        downsample,
        head_hidden,
        embed,
    })
}

fn upload_text(a: &mut Alloc<'_>, t: &TextTower) -> Result<Text, GpuError> {
    let [vocab, width] = t.token_embedding.shape[..] else {
        return Err(bad(format!(
            "token_embedding.weight is {:?}",
            t.token_embedding.shape
        )));
    };
    let [context, pw] = t.positional_embedding.shape[..] else {
        return Err(bad(format!(
            "positional_embedding is {:?}",
            t.positional_embedding.shape
        )));
    };
    let [prw, embed] = t.projection.shape[..] else {
        return Err(bad(format!("text_projection is {:?}", t.projection.shape)));
    };
    if pw != width || prw != width || t.heads == 0 || !width.is_multiple_of(t.heads) {
        return Err(bad(format!(
            "text widths {width}, {pw}, {prw} with {} heads",
            t.heads
        )));
    }
    check_len(
        "token_embedding.weight",
        t.token_embedding.data.len(),
        vocab * width,
    )?;
    check_len(
        "positional_embedding",
        t.positional_embedding.data.len(),
        context * width,
    )?;
    check_len("text_projection", t.projection.data.len(), width * embed)?;
    if t.layers.is_empty() {
        return Err(bad("the text tower has no layers".into()));
    }
    let mlp = t.layers[0].c_fc.out_features();
    let mut layers = Vec::with_capacity(t.layers.len());
    for (i, l) in t.layers.iter().enumerate() {
        let name = |p: &str| format!("transformer.resblocks.{i}.{p}");
        layers.push(TextLayer {
            ln_1: Norm::upload(a, &l.ln_1, width, &name("ln_1"))?,
            in_proj: Lin::upload(a, &l.in_proj, 3 * width, width, &name("attn.in_proj"))?,
            out_proj: Lin::upload(a, &l.out_proj, width, width, &name("attn.out_proj"))?,
            ln_2: Norm::upload(a, &l.ln_2, width, &name("ln_2"))?,
            c_fc: Lin::upload(a, &l.c_fc, mlp, width, &name("mlp.c_fc"))?,
            c_proj: Lin::upload(a, &l.c_proj, width, mlp, &name("mlp.c_proj"))?,
        });
    }
    Ok(Text {
        token_embedding: a.upload(&t.token_embedding.data)?,
        positional_embedding: a.upload(&t.positional_embedding.data)?,
        layers,
        ln_final: Norm::upload(a, &t.ln_final, width, "ln_final")?,
        projection: a.upload_gemm(&t.projection.data)?,
        ones: a.upload(&vec![1.0; width])?,
        width,
        heads: t.heads,
        mlp,
        context,
        vocab,
        embed,
    })
}

/// The map side after the stem and after each stage, for the tower's 224² input.
fn sides(t: &ImageTower) -> Result<Vec<usize>, GpuError> {
    let mut side = CLIP_INPUT_SIZE / t.stem_patch;
    let mut out = Vec::with_capacity(t.stages.len());
    for st in &t.stages {
        if st.down.is_some() {
            side /= t.downsample;
        }
        if side == 0 {
            return Err(bad("the ConvNeXt maps shrink to nothing at 224 px".into()));
        }
        out.push(side);
    }
    Ok(out)
}

/// The image tower's work buffers for `views` views.
#[derive(Debug)]
struct ImageWork {
    views: usize,
    cols: Buf<f32>,
    x: Buf<f32>,
    t: Buf<f32>,
    y: Buf<f32>,
    wide: Buf<f32>,
    pooled: Buf<f32>,
    hidden: Buf<f32>,
    emb: Buf<f32>,
    out: Buf<f32>,
    bytes: usize,
}

impl ImageWork {
    fn new(s: &Arc<CudaStream>, t: &ImageTower, views: usize) -> Result<Self, GpuError> {
        let sides = sides(t)?;
        let side0 = CLIP_INPUT_SIZE / t.stem_patch;
        let c0 = t.stem.b.len();
        let mut cols = views * side0 * side0 * 3 * t.stem_patch * t.stem_patch;
        let mut maps = views * side0 * side0 * c0;
        let mut wide = 0;
        let mut prev_c = c0;
        let mut prev_side = side0;
        for (st, &side) in t.stages.iter().zip(&sides) {
            let px = views * side * side;
            if st.down.is_some() {
                cols = cols.max(px * prev_c * t.downsample * t.downsample);
            }
            maps = maps
                .max(px * st.dim)
                .max(views * prev_side * prev_side * prev_c);
            for b in &st.blocks {
                wide = wide.max(px * b.mlp);
            }
            prev_c = st.dim;
            prev_side = side;
        }
        let mut a = Alloc::new(s);
        Ok(Self {
            views,
            cols: a.zeros(cols)?,
            x: a.zeros(maps)?,
            t: a.zeros(maps)?,
            y: a.zeros(maps)?,
            wide: a.zeros(wide)?,
            pooled: a.zeros(views * prev_c)?,
            hidden: a.zeros(views * t.head_hidden)?,
            emb: a.zeros(views * t.embed)?,
            out: a.zeros(views * t.embed)?,
            bytes: a.bytes,
        })
    }
}

/// The text tower's work buffers (one context).
#[derive(Debug)]
struct TextWork {
    ids: Buf<u32>,
    x: Buf<f32>,
    xn: Buf<f32>,
    y: Buf<f32>,
    qkv: Buf<f32>,
    heads: Buf<f32>,
    scores: Buf<f32>,
    ctx: Buf<f32>,
    wide: Buf<f32>,
    emb: Buf<f32>,
    out: Buf<f32>,
    bytes: usize,
}

impl TextWork {
    fn new(s: &Arc<CudaStream>, t: &Text) -> Result<Self, GpuError> {
        let (n, w) = (t.context, t.width);
        let mut a = Alloc::new(s);
        let ids = Buf::<u32>::zeros(s, n)?;
        a.bytes += ids.len() * 4;
        Ok(Self {
            ids,
            x: a.zeros(n * w)?,
            xn: a.zeros(n * w)?,
            y: a.zeros(n * w)?,
            qkv: a.zeros(3 * n * w)?,
            heads: a.zeros(3 * n * w)?,
            scores: a.zeros(t.heads * n * n)?,
            ctx: a.zeros(n * w)?,
            wide: a.zeros(n * t.mlp)?,
            emb: a.zeros(t.embed)?,
            out: a.zeros(t.embed)?,
            bytes: a.bytes,
        })
    }
}

/// The text task's alignment model on one device: both towers' weights, work buffers for
/// up to 16 views (growing on demand) and one text context.
#[derive(Debug)]
pub struct GpuTextAlignment {
    rt: Runtime,
    image: ImageTower,
    text: Text,
    image_work: ImageWork,
    text_work: TextWork,
    weight_bytes: usize,
}

impl GpuTextAlignment {
    /// Uploads `model` to the device of `ctx`, compiles the kernels, and works on `stream`.
    pub fn new(
        ctx: &Arc<CudaContext>,
        stream: &Arc<CudaStream>,
        model: &ConvnextClip,
    ) -> Result<Self, GpuError> {
        let mut rt = Runtime::new(ctx, stream)?;
        let c = &model.config;
        let mut a = Alloc::new(stream);
        let image = upload_image_tower(
            &mut a,
            &model.visual,
            (c.kernel, c.stem_patch, c.downsample),
        )?;
        let text = upload_text(&mut a, &model.text)?;
        if image.embed != text.embed {
            return Err(bad(format!(
                "image embedding {} and text embedding {} differ",
                image.embed, text.embed
            )));
        }
        let weight_bytes = a.bytes;
        rt.gemm_weights = a.gemm_weights;
        let image_work = ImageWork::new(stream, &image, INITIAL_VIEWS)?;
        let text_work = TextWork::new(stream, &text)?;
        Ok(Self {
            rt,
            image,
            text,
            image_work,
            text_work,
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
            work: self.image_work.bytes + self.text_work.bytes + self.rt.input_bytes(),
        }
    }

    /// The normalised image embedding of each view of the renderer's image buffer
    /// (`views × height × width` RGBA `f32`, view-major), truncated to 8 bits as the
    /// validator truncates.
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

    /// The normalised image embedding of each 8-bit view.
    pub fn encode_views(&mut self, images: &ScoreImages) -> Result<Vec<Vec<f32>>, GpuError> {
        self.encode_source(&ViewSource::Images(images))
    }
}

impl ViewEncoder for GpuTextAlignment {
    fn runtime(&mut self) -> &mut Runtime {
        &mut self.rt
    }

    fn encode_planes(
        &mut self,
        views: usize,
        (w, h): (usize, usize),
    ) -> Result<Vec<Vec<f32>>, GpuError> {
        if views > self.image_work.views {
            self.image_work = ImageWork::new(&self.rt.stream, &self.image, 1)?;
            self.image_work = ImageWork::new(&self.rt.stream, &self.image, views)?;
        }
        self.rt.set_math()?;
        let (rt, t, wk) = (&self.rt, &self.image, &self.image_work);
        let (s, k, al, b) = (&rt.stream, &rt.kernels, &rt.align, &rt.blas);
        let p = t.stem_patch;
        let side0 = CLIP_INPUT_SIZE / p;
        let c0 = t.stem.b.len();
        let mean = CLIP_MEAN.map(|m| m * CLIP_NORM_FACTOR);
        let std = CLIP_STD.map(|m| m * CLIP_NORM_FACTOR);
        al.bicubic_patches(
            s,
            rt.planes.ptr(),
            (w, h),
            views,
            (CLIP_INPUT_SIZE, p),
            (mean, std),
            wk.cols.ptr(),
        )?;
        let rows0 = views * side0 * side0;
        // SAFETY (every GEMM below): the operands lie inside buffers `ImageWork::new` sized
        // for at least `views` views, and the weights' shapes were checked at upload.
        unsafe {
            b.linear(
                rows0,
                c0,
                3 * p * p,
                wk.cols.ptr(),
                t.stem.w.ptr(),
                wk.x.ptr(),
            )?;
        }
        al.layer_norm_rows(
            s,
            wk.x.ptr(),
            Some(t.stem.b.ptr()),
            t.stem_norm.args(),
            (rows0, c0, c0),
            wk.x.ptr(),
            c0,
        )?;
        let (mut side, mut c) = (side0, c0);
        for st in &t.stages {
            if let Some((norm, conv)) = &st.down {
                let rows = views * side * side;
                al.layer_norm_rows(
                    s,
                    wk.x.ptr(),
                    None,
                    norm.args(),
                    (rows, c, c),
                    wk.t.ptr(),
                    c,
                )?;
                let d = t.downsample;
                let next = side / d;
                let input = Nhwc {
                    views,
                    h: side,
                    w: side,
                    c,
                };
                k.im2col(s, wk.t.ptr(), input, (d, d, 0), (next, next), wk.cols.ptr())?;
                let rows = views * next * next;
                unsafe {
                    b.linear(
                        rows,
                        st.dim,
                        c * d * d,
                        wk.cols.ptr(),
                        conv.w.ptr(),
                        wk.x.ptr(),
                    )?;
                }
                al.bias_add(s, wk.x.ptr(), conv.b.ptr(), rows, st.dim)?;
                side = next;
                c = st.dim;
            }
            let rows = views * side * side;
            for blk in &st.blocks {
                al.dwconv_norm(
                    s,
                    wk.x.ptr(),
                    (blk.dw_w_t.ptr(), blk.dw_b.ptr()),
                    blk.norm.args(),
                    (views, side, side, c),
                    t.kernel,
                    wk.t.ptr(),
                )?;
                unsafe {
                    b.linear(rows, blk.mlp, c, wk.t.ptr(), blk.fc1.w.ptr(), wk.wide.ptr())?;
                }
                k.bias_gelu(s, wk.wide.ptr(), blk.fc1.b.ptr(), rows, blk.mlp)?;
                unsafe {
                    b.linear(rows, c, blk.mlp, wk.wide.ptr(), blk.fc2.w.ptr(), wk.y.ptr())?;
                }
                k.residual_norm(
                    s,
                    wk.x.ptr(),
                    wk.y.ptr(),
                    (blk.fc2.b.ptr(), blk.gamma.ptr()),
                    None,
                    (rows, c, c),
                    0,
                )?;
            }
        }
        // adaptive_avg_pool2d, the head's LayerNorm2d, its MLP projection, L2 normalisation.
        al.mean_pool(s, wk.x.ptr(), (views, side * side, c), wk.pooled.ptr())?;
        al.layer_norm_rows(
            s,
            wk.pooled.ptr(),
            None,
            t.head_norm.args(),
            (views, c, c),
            wk.pooled.ptr(),
            c,
        )?;
        let (hh, e) = (t.head_hidden, t.embed);
        unsafe {
            b.linear(
                views,
                hh,
                c,
                wk.pooled.ptr(),
                t.fc1.w.ptr(),
                wk.hidden.ptr(),
            )?;
        }
        k.bias_gelu(s, wk.hidden.ptr(), t.fc1.b.ptr(), views, hh)?;
        unsafe {
            b.linear(views, e, hh, wk.hidden.ptr(), t.fc2.w.ptr(), wk.emb.ptr())?;
        }
        al.bias_add(s, wk.emb.ptr(), t.fc2.b.ptr(), views, e)?;
        al.l2_normalise_rows(s, wk.emb.ptr(), (views, e, e), wk.out.ptr())?;
        rt.download(&wk.out, views, e)
    }
}

impl GpuTextAlignment {
    /// The normalised text embedding of a tokenized prompt (a full context, as
    /// `ClipTokenizer::tokenize` gives it): the feature at the first largest id (the EOT).
    pub fn encode_text(&mut self, ids: &[u32]) -> Result<Vec<f32>, GpuError> {
        let t = &self.text;
        if ids.len() != t.context {
            return Err(GpuError::Input(format!(
                "{} token ids, the model's context is {}",
                ids.len(),
                t.context
            )));
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= t.vocab) {
            return Err(GpuError::Input(format!(
                "token id {id} is outside the vocabulary of {}",
                t.vocab
            )));
        }
        // `text.argmax(dim=-1)`: the first position of the largest id.
        let eot = ids
            .iter()
            .enumerate()
            .fold(
                (0, 0u32),
                |best, (i, &id)| if id > best.1 { (i, id) } else { best },
            )
            .0;
        let n = eot + 1;
        self.rt.set_math()?;
        let (rt, wk) = (&self.rt, &mut self.text_work);
        let s = &rt.stream;
        s.memcpy_htod(&ids[..n], &mut wk.ids.slice_mut().slice_mut(0..n))?;
        let (k, al, b) = (&rt.kernels, &rt.align, &rt.blas);
        let (w, heads, mlp) = (t.width, t.heads, t.mlp);
        let dim = w / heads;
        al.text_embed(
            s,
            wk.ids.ptr(),
            (t.token_embedding.ptr(), t.positional_embedding.ptr()),
            n,
            w,
            wk.x.ptr(),
        )?;
        al.layer_norm_rows(
            s,
            wk.x.ptr(),
            None,
            t.layers[0].ln_1.args(),
            (n, w, w),
            wk.xn.ptr(),
            w,
        )?;
        let cap = t.context * w;
        let (q, kb, v) = (wk.heads.ptr(), wk.heads.at(cap), wk.heads.at(2 * cap));
        let scale = 1.0 / (dim as f32).sqrt();
        let enc = Encoder { s, k, b };
        let bufs = LayerBufs {
            ctx: wk.ctx.ptr(),
            y: wk.y.ptr(),
            xn: wk.xn.ptr(),
            wide: wk.wide.ptr(),
        };
        let gelu = |y, bias, r, c| k.bias_gelu(s, y, bias, r, c);
        for (i, layer) in t.layers.iter().enumerate() {
            let last = i + 1 == t.layers.len();
            // SAFETY (every GEMM below): the operands lie inside `TextWork`'s buffers, sized
            // for a full context, and the weights' shapes were checked at upload.
            let qkv = (layer.in_proj.w.ptr(), layer.in_proj.b.ptr());
            let shape = (1, n, w, heads);
            unsafe { enc.qkv_heads(wk.xn.ptr(), qkv, shape, wk.qkv.ptr(), (q, kb, v)) }?;
            let (rows, x_row) = if last {
                // Only the EOT row's output is read: its query against every key (all of
                // them precede it), its context row alone.
                let qkv = (wk.heads.at(eot * dim), kb, v);
                let out = (wk.scores.ptr(), wk.ctx.ptr());
                unsafe { enc.single_query_attention(qkv, (heads, n, dim), scale, out) }?;
                (1, wk.x.at(eot * w))
            } else {
                unsafe {
                    b.gemm(
                        (n, n, dim),
                        scale,
                        Mat::strided(q, dim, n * dim),
                        Mat::strided(kb, dim, n * dim),
                        true,
                        0.0,
                        Mat::strided(wk.scores.ptr(), n, n * n),
                        heads,
                    )?;
                }
                al.causal_mask(s, wk.scores.ptr(), heads, n)?;
                k.softmax_rows(s, wk.scores.ptr(), heads * n, n)?;
                // Each head's context into its columns of the rows.
                unsafe {
                    b.gemm(
                        (n, dim, n),
                        1.0,
                        Mat::strided(wk.scores.ptr(), n, n * n),
                        Mat::strided(v, dim, n * dim),
                        false,
                        0.0,
                        Mat::strided(wk.ctx.ptr(), w, dim),
                        heads,
                    )?;
                }
                (n, wk.x.ptr())
            };
            let half = MlpHalf {
                out: (layer.out_proj.w.ptr(), layer.out_proj.b.ptr()),
                ls1: t.ones.ptr(),
                norm2: layer.ln_2.args(),
                fc1: (layer.c_fc.w.ptr(), layer.c_fc.b.ptr()),
                fc2: (layer.c_proj.w.ptr(), layer.c_proj.b.ptr()),
                ls2: t.ones.ptr(),
            };
            // The next layer's ln_1, or ln_final after the last (the EOT row only).
            let next = t.layers.get(i + 1).map_or(&t.ln_final, |l| &l.ln_1);
            let x = (x_row, rows, w);
            unsafe { enc.mlp_half(&half, gelu, x, (w, mlp), &bufs, Some(next.args())) }?;
        }
        // xn's row 0 is ln_final of the EOT row: `x @ text_projection`, then L2.
        let e = t.embed;
        unsafe {
            b.gemm(
                (1, e, w),
                1.0,
                Mat::new(wk.xn.ptr(), w),
                Mat::new(t.projection.ptr(), e),
                false,
                0.0,
                Mat::new(wk.emb.ptr(), e),
                1,
            )?;
        }
        al.l2_normalise_rows(s, wk.emb.ptr(), (1, e, e), wk.out.ptr())?;
        let mut out = rt.download(&wk.out, 1, e)?;
        out.pop().ok_or(GpuError::Unavailable("the text embedding"))
    }
}
