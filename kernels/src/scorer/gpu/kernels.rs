//! One typed launcher per kernel of `scorer.cu` (and the validator's SSIM in `metrics.cu`):
//! grid and block sizes, and arguments in the order of the `.cu` signatures. Buffers are
//! passed by address ([`super::device::Buf`]); the callers size them.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg};

use crate::gpu::{
    compile::{ptx_for, Source, METRICS},
    layout::{SSIM_COLS, SSIM_ROWS, SSIM_THREADS},
    GpuError,
};

/// The scorer's CUDA source.
pub const SCORER: Source = Source {
    name: "scorer",
    code: include_str!("scorer.cu"),
};

/// Threads per block of the warp-per-row kernels, and rows per such block.
const ROW_THREADS: u32 = 256;
const ROWS_PER_BLOCK: usize = (ROW_THREADS / 32) as usize;
/// Blocks per pair of `lpips_tap` (`LPIPS_THREADS` threads each).
const LPIPS_THREADS: u32 = 256;

fn u32_of(what: &'static str, v: usize) -> Result<u32, GpuError> {
    u32::try_from(v).map_err(|_| GpuError::TooLarge {
        what,
        needed: v,
        limit: u32::MAX as usize,
    })
}

fn linear(n: usize) -> Result<LaunchConfig, GpuError> {
    let blocks = u32_of("kernel grid", n.div_ceil(256).max(1))?;
    Ok(LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    })
}

fn rows(n: usize) -> Result<LaunchConfig, GpuError> {
    let blocks = u32_of("kernel grid", n.div_ceil(ROWS_PER_BLOCK).max(1))?;
    Ok(LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (ROW_THREADS, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// Shape of an NHWC map: views, height, width, channels.
#[derive(Debug, Clone, Copy)]
pub struct Nhwc {
    pub views: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

#[derive(Debug)]
pub struct Kernels {
    planes_from_render: CudaFunction,
    planes_from_rgb8: CudaFunction,
    iqa_patches: CudaFunction,
    embed_finish: CudaFunction,
    residual_norm: CudaFunction,
    split_heads: CudaFunction,
    softmax_rows: CudaFunction,
    bias_gelu: CudaFunction,
    quality_head: CudaFunction,
    lpips_input: CudaFunction,
    im2col_nhwc: CudaFunction,
    bias_relu: CudaFunction,
    max_pool_nhwc: CudaFunction,
    lpips_tap: CudaFunction,
    pack_scores: CudaFunction,
    ssim_validator: CudaFunction,
}

impl Kernels {
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Self, GpuError> {
        let (major, minor) = ctx.compute_capability()?;
        let scorer = ctx.load_module(ptx_for(&SCORER, major, minor)?)?;
        let metrics = ctx.load_module(ptx_for(&METRICS, major, minor)?)?;
        let f = |name: &str| scorer.load_function(name);
        Ok(Self {
            planes_from_render: f("planes_from_render")?,
            planes_from_rgb8: f("planes_from_rgb8")?,
            iqa_patches: f("iqa_patches")?,
            embed_finish: f("embed_finish")?,
            residual_norm: f("residual_norm")?,
            split_heads: f("split_heads")?,
            softmax_rows: f("softmax_rows")?,
            bias_gelu: f("bias_gelu")?,
            quality_head: f("quality_head")?,
            lpips_input: f("lpips_input")?,
            im2col_nhwc: f("im2col_nhwc")?,
            bias_relu: f("bias_relu")?,
            max_pool_nhwc: f("max_pool_nhwc")?,
            lpips_tap: f("lpips_tap")?,
            pack_scores: f("pack_scores")?,
            ssim_validator: metrics.load_function("ssim_validator")?,
        })
    }

    /// `planes[views][3][pixels]` = the 8-bit truncation of the RGBA float `image`, / 255.
    pub fn planes_from_render(
        &self,
        s: &Arc<CudaStream>,
        image: u64,
        pixels: usize,
        views: usize,
        planes: u64,
    ) -> Result<(), GpuError> {
        let (p, v) = (u32_of("pixels", pixels)?, u32_of("views", views)?);
        let mut l = s.launch_builder(&self.planes_from_render);
        l.arg(&image).arg(&p).arg(&v).arg(&planes);
        // SAFETY: matches `planes_from_render`; image holds views·pixels float4, planes 3× that.
        unsafe { l.launch(linear(pixels * views)?) }?;
        Ok(())
    }

    pub fn planes_from_rgb8(
        &self,
        s: &Arc<CudaStream>,
        rgb8: u64,
        pixels: usize,
        views: usize,
        planes: u64,
    ) -> Result<(), GpuError> {
        let (p, v) = (u32_of("pixels", pixels)?, u32_of("views", views)?);
        let mut l = s.launch_builder(&self.planes_from_rgb8);
        l.arg(&rgb8).arg(&p).arg(&v).arg(&planes);
        // SAFETY: matches `planes_from_rgb8`; rgb8 holds views·pixels·3 bytes.
        unsafe { l.launch(linear(pixels * views)?) }?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn iqa_patches(
        &self,
        s: &Arc<CudaStream>,
        planes: u64,
        (w, h): (usize, usize),
        views: usize,
        size: usize,
        patch: usize,
        cols: u64,
    ) -> Result<(), GpuError> {
        let grid = size / patch;
        let n = views * grid * grid * 3 * patch * patch;
        let (w, h, v) = (
            u32_of("width", w)?,
            u32_of("height", h)?,
            u32_of("views", views)?,
        );
        let (size, patch) = (u32_of("size", size)?, u32_of("patch", patch)?);
        let mut l = s.launch_builder(&self.iqa_patches);
        l.arg(&planes)
            .arg(&w)
            .arg(&h)
            .arg(&v)
            .arg(&size)
            .arg(&patch)
            .arg(&cols);
        // SAFETY: matches `iqa_patches`; cols holds views·grid²·3·patch² floats.
        unsafe { l.launch(linear(n)?) }?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn embed_finish(
        &self,
        s: &Arc<CudaStream>,
        x: u64,
        (cls, pos, bias): (u64, u64, u64),
        (ln_w, ln_b, eps): (u64, u64, f32),
        n_rows: usize,
        tokens: usize,
        hidden: usize,
        xn: u64,
    ) -> Result<(), GpuError> {
        let (r, t, hd) = (
            u32_of("rows", n_rows)?,
            u32_of("tokens", tokens)?,
            u32_of("hidden", hidden)?,
        );
        let mut l = s.launch_builder(&self.embed_finish);
        l.arg(&x)
            .arg(&cls)
            .arg(&pos)
            .arg(&bias)
            .arg(&ln_w)
            .arg(&ln_b)
            .arg(&eps)
            .arg(&r)
            .arg(&t)
            .arg(&hd)
            .arg(&xn);
        // SAFETY: matches `embed_finish`; x and xn hold rows·hidden floats.
        unsafe { l.launch(rows(n_rows)?) }?;
        Ok(())
    }

    /// `x += ls ⊙ (y + bias)`, then LayerNorm into `xn` when `norm` is given.
    #[allow(clippy::too_many_arguments)]
    pub fn residual_norm(
        &self,
        s: &Arc<CudaStream>,
        x: u64,
        y: u64,
        (bias, ls): (u64, u64),
        norm: Option<(u64, u64, f32)>,
        (n_rows, hidden, x_stride): (usize, usize, usize),
        xn: u64,
    ) -> Result<(), GpuError> {
        let (ln_w, ln_b, eps) = norm.unwrap_or((0, 0, 0.0));
        let (r, hd) = (u32_of("rows", n_rows)?, u32_of("hidden", hidden)?);
        let xs = u32_of("row stride", x_stride)?;
        let mut l = s.launch_builder(&self.residual_norm);
        l.arg(&x)
            .arg(&y)
            .arg(&bias)
            .arg(&ls)
            .arg(&ln_w)
            .arg(&ln_b)
            .arg(&eps)
            .arg(&r)
            .arg(&hd)
            .arg(&xs)
            .arg(&xn);
        // SAFETY: matches `residual_norm`; x holds rows·x_stride floats, y and xn
        // rows·hidden.
        unsafe { l.launch(rows(n_rows)?) }?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn split_heads(
        &self,
        s: &Arc<CudaStream>,
        qkv: u64,
        bias: u64,
        (views, tokens, hidden, heads): (usize, usize, usize, usize),
        (q, k, v): (u64, u64, u64),
    ) -> Result<(), GpuError> {
        let n = 3 * views * tokens * hidden;
        let (vw, t, hd, he) = (
            u32_of("views", views)?,
            u32_of("tokens", tokens)?,
            u32_of("hidden", hidden)?,
            u32_of("heads", heads)?,
        );
        let mut l = s.launch_builder(&self.split_heads);
        l.arg(&qkv)
            .arg(&bias)
            .arg(&vw)
            .arg(&t)
            .arg(&hd)
            .arg(&he)
            .arg(&q)
            .arg(&k)
            .arg(&v);
        // SAFETY: matches `split_heads`; qkv holds 3·views·tokens·hidden floats, q, k, v a third each.
        unsafe { l.launch(linear(n)?) }?;
        Ok(())
    }

    pub fn softmax_rows(
        &self,
        s: &Arc<CudaStream>,
        scores: u64,
        n_rows: usize,
        n: usize,
    ) -> Result<(), GpuError> {
        let (r, n32) = (u32_of("rows", n_rows)?, u32_of("row length", n)?);
        let mut l = s.launch_builder(&self.softmax_rows);
        l.arg(&scores).arg(&r).arg(&n32);
        // SAFETY: matches `softmax_rows`; scores holds rows·n floats.
        unsafe { l.launch(rows(n_rows)?) }?;
        Ok(())
    }

    pub fn bias_gelu(
        &self,
        s: &Arc<CudaStream>,
        y: u64,
        bias: u64,
        n_rows: usize,
        cols: usize,
    ) -> Result<(), GpuError> {
        let (r, c) = (u32_of("rows", n_rows)?, u32_of("cols", cols)?);
        let mut l = s.launch_builder(&self.bias_gelu);
        l.arg(&y).arg(&bias).arg(&r).arg(&c);
        // SAFETY: matches `bias_gelu`; y holds rows·cols floats, bias cols.
        unsafe { l.launch(linear(n_rows * cols)?) }?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn quality_head(
        &self,
        s: &Arc<CudaStream>,
        x: u64,
        (views, tokens, hidden): (usize, usize, usize),
        (ln_w, ln_b, eps): (u64, u64, f32),
        (head_w, head_b): (u64, f32),
        scratch: u64,
        quality: u64,
    ) -> Result<(), GpuError> {
        let (v, t, hd) = (
            u32_of("views", views)?,
            u32_of("tokens", tokens)?,
            u32_of("hidden", hidden)?,
        );
        let mut l = s.launch_builder(&self.quality_head);
        l.arg(&x)
            .arg(&v)
            .arg(&t)
            .arg(&hd)
            .arg(&ln_w)
            .arg(&ln_b)
            .arg(&eps)
            .arg(&head_w)
            .arg(&head_b)
            .arg(&scratch)
            .arg(&quality);
        // SAFETY: matches `quality_head`; scratch holds views·hidden floats, quality views.
        unsafe { l.launch(rows(views)?) }?;
        Ok(())
    }

    pub fn lpips_input(
        &self,
        s: &Arc<CudaStream>,
        planes: u64,
        (w, h): (usize, usize),
        views: usize,
        size: usize,
        out: u64,
    ) -> Result<(), GpuError> {
        let n = views * size * size * 3;
        let (w, h, v, sz) = (
            u32_of("width", w)?,
            u32_of("height", h)?,
            u32_of("views", views)?,
            u32_of("size", size)?,
        );
        let mut l = s.launch_builder(&self.lpips_input);
        l.arg(&planes).arg(&w).arg(&h).arg(&v).arg(&sz).arg(&out);
        // SAFETY: matches `lpips_input`; out holds views·size²·3 floats.
        unsafe { l.launch(linear(n)?) }?;
        Ok(())
    }

    /// im2col of `input` for a `k`×`k` convolution with `stride` and `pad`, to an `oh`×`ow` output.
    #[allow(clippy::too_many_arguments)]
    pub fn im2col(
        &self,
        s: &Arc<CudaStream>,
        input: u64,
        shape: Nhwc,
        (k, stride, pad): (usize, usize, usize),
        (oh, ow): (usize, usize),
        cols: u64,
    ) -> Result<(), GpuError> {
        let n = shape.views * oh * ow * shape.c * k * k;
        let a = [
            u32_of("views", shape.views)?,
            u32_of("height", shape.h)?,
            u32_of("width", shape.w)?,
            u32_of("channels", shape.c)?,
            u32_of("kernel", k)?,
            u32_of("stride", stride)?,
            u32_of("padding", pad)?,
            u32_of("height", oh)?,
            u32_of("width", ow)?,
        ];
        let mut l = s.launch_builder(&self.im2col_nhwc);
        l.arg(&input);
        for v in &a {
            l.arg(v);
        }
        l.arg(&cols);
        // SAFETY: matches `im2col_nhwc`; cols holds views·oh·ow·c·k² floats.
        unsafe { l.launch(linear(n)?) }?;
        Ok(())
    }

    pub fn bias_relu(
        &self,
        s: &Arc<CudaStream>,
        y: u64,
        bias: u64,
        n_rows: usize,
        cols: usize,
    ) -> Result<(), GpuError> {
        let (r, c) = (u32_of("rows", n_rows)?, u32_of("cols", cols)?);
        let mut l = s.launch_builder(&self.bias_relu);
        l.arg(&y).arg(&bias).arg(&r).arg(&c);
        // SAFETY: matches `bias_relu`; y holds rows·cols floats, bias cols.
        unsafe { l.launch(linear(n_rows * cols)?) }?;
        Ok(())
    }

    pub fn max_pool(
        &self,
        s: &Arc<CudaStream>,
        input: u64,
        shape: Nhwc,
        (oh, ow): (usize, usize),
        out: u64,
    ) -> Result<(), GpuError> {
        let n = shape.views * oh * ow * shape.c;
        let a = [
            u32_of("views", shape.views)?,
            u32_of("height", shape.h)?,
            u32_of("width", shape.w)?,
            u32_of("channels", shape.c)?,
            u32_of("height", oh)?,
            u32_of("width", ow)?,
        ];
        let mut l = s.launch_builder(&self.max_pool_nhwc);
        l.arg(&input);
        for v in &a {
            l.arg(v);
        }
        l.arg(&out);
        // SAFETY: matches `max_pool_nhwc`; out holds views·oh·ow·c floats.
        unsafe { l.launch(linear(n)?) }?;
        Ok(())
    }

    /// Adds one tap's LPIPS term of every pair (p, (p + 1) mod views) to `acc[p]`.
    pub fn lpips_tap(
        &self,
        s: &Arc<CudaStream>,
        feat: u64,
        shape: Nhwc,
        lin: u64,
        acc: u64,
    ) -> Result<(), GpuError> {
        let positions = shape.h * shape.w;
        let warps = (LPIPS_THREADS / 32) as usize;
        // About four positions per warp; enough blocks to fill the device at 16 pairs.
        let per_pair = u32_of("blocks", positions.div_ceil(4 * warps).clamp(1, 64))?;
        let (v, p, c) = (
            u32_of("views", shape.views)?,
            u32_of("positions", positions)?,
            u32_of("channels", shape.c)?,
        );
        let cfg = LaunchConfig {
            grid_dim: (per_pair, v, 1),
            block_dim: (LPIPS_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut l = s.launch_builder(&self.lpips_tap);
        l.arg(&feat).arg(&v).arg(&p).arg(&c).arg(&lin).arg(&acc);
        // SAFETY: matches `lpips_tap`; feat holds views·positions·c floats, acc views doubles.
        unsafe { l.launch(cfg) }?;
        Ok(())
    }

    /// The validator's SSIM of every pair (p, (p + 1) mod views), summed into `ssim_sum[p]`.
    pub fn ssim_validator(
        &self,
        s: &Arc<CudaStream>,
        planes: u64,
        (w, h): (usize, usize),
        views: usize,
        ssim_sum: u64,
    ) -> Result<(), GpuError> {
        let (cols, rws) = (
            w.div_ceil(SSIM_COLS as usize),
            h.div_ceil(SSIM_ROWS as usize),
        );
        let blocks = u32_of("SSIM blocks", cols * rws * views)?;
        let a = [
            u32_of("width", w)?,
            u32_of("height", h)?,
            u32_of("views", views)?,
            u32_of("SSIM blocks", cols)?,
            u32_of("SSIM blocks", rws)?,
        ];
        let cfg = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (SSIM_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut l = s.launch_builder(&self.ssim_validator);
        l.arg(&planes);
        for v in &a {
            l.arg(v);
        }
        l.arg(&ssim_sum);
        // SAFETY: matches `ssim_validator` in metrics.cu; planes holds views·3·w·h floats.
        unsafe { l.launch(cfg) }?;
        Ok(())
    }

    pub fn pack_scores(
        &self,
        s: &Arc<CudaStream>,
        (quality, ssim_sum, lpips): (u64, u64, u64),
        views: usize,
        ssim_count: f64,
        out: u64,
    ) -> Result<(), GpuError> {
        let v = u32_of("views", views)?;
        let mut l = s.launch_builder(&self.pack_scores);
        l.arg(&quality)
            .arg(&ssim_sum)
            .arg(&lpips)
            .arg(&v)
            .arg(&ssim_count)
            .arg(&out);
        // SAFETY: matches `pack_scores`; out holds 3·views doubles.
        unsafe { l.launch(linear(views)?) }?;
        Ok(())
    }
}
