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

/// Sizes as the kernels' `unsigned` arguments, each named for the error when it does not fit.
pub(super) fn u32s<const N: usize>(
    sizes: [(&'static str, usize); N],
) -> Result<[u32; N], GpuError> {
    let mut out = [0; N];
    for (o, (what, v)) in out.iter_mut().zip(sizes) {
        *o = u32_of(what, v)?;
    }
    Ok(out)
}

/// `blocks` blocks of `threads` threads, no dynamic shared memory.
fn config(blocks: (u32, u32), threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks.0, blocks.1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One thread per element, 256 a block.
pub(super) fn linear(n: usize) -> Result<LaunchConfig, GpuError> {
    let blocks = u32_of("kernel grid", n.div_ceil(256).max(1))?;
    Ok(config((blocks, 1), 256))
}

/// One warp per row, [`ROWS_PER_BLOCK`] rows a block.
pub(super) fn rows(n: usize) -> Result<LaunchConfig, GpuError> {
    let blocks = u32_of("kernel grid", n.div_ceil(ROWS_PER_BLOCK).max(1))?;
    Ok(config((blocks, 1), ROW_THREADS))
}

/// Launches `$func` on `$stream` with `$cfg`, pushing the arguments by reference in the order
/// given (that of the kernel's signature); evaluates to `Result<(), GpuError>`. It calls the
/// unsafe `launch`, so it stands in the caller's `unsafe` block, under the caller's `SAFETY`
/// comment on why the arguments match the kernel.
macro_rules! launch {
    ($stream:expr, $func:expr, $cfg:expr; $($arg:expr),+ $(,)?) => {{
        let mut l = $stream.launch_builder(&$func);
        $(l.arg(&$arg);)+
        l.launch($cfg)?;
        Ok(())
    }};
}
pub(super) use launch;

/// A LayerNorm's weight, bias (addresses) and epsilon.
pub type NormArgs = (u64, u64, f32);

/// Launches one of the kernels of signature `(float* y, const float* bias, unsigned rows,
/// unsigned cols)` that apply `y = act(y + bias)` to a row-major `rows × cols` matrix
/// (`bias_gelu`, `bias_relu`; `alignment.cu`'s `bias_add`, `bias_quick_gelu`), a thread per
/// element.
///
/// # Safety
/// `func` must be such a kernel, `y` hold `rows·cols` floats and `bias` `cols`.
pub(super) unsafe fn bias_rows(
    s: &Arc<CudaStream>,
    func: &CudaFunction,
    y: u64,
    bias: u64,
    n_rows: usize,
    cols: usize,
) -> Result<(), GpuError> {
    let [r, c] = u32s([("rows", n_rows), ("cols", cols)])?;
    // SAFETY: the caller vouches for the kernel's signature and the buffers' sizes.
    unsafe { launch!(s, *func, linear(n_rows * cols)?; y, bias, r, c) }
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
        let [p, v] = u32s([("pixels", pixels), ("views", views)])?;
        // SAFETY: matches `planes_from_render`; image holds views·pixels float4, planes 3× that.
        unsafe { launch!(s, self.planes_from_render, linear(pixels * views)?; image, p, v, planes) }
    }

    pub fn planes_from_rgb8(
        &self,
        s: &Arc<CudaStream>,
        rgb8: u64,
        pixels: usize,
        views: usize,
        planes: u64,
    ) -> Result<(), GpuError> {
        let [p, v] = u32s([("pixels", pixels), ("views", views)])?;
        // SAFETY: matches `planes_from_rgb8`; rgb8 holds views·pixels·3 bytes.
        unsafe { launch!(s, self.planes_from_rgb8, linear(pixels * views)?; rgb8, p, v, planes) }
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
        let [w, h, v, size, patch] = u32s([
            ("width", w),
            ("height", h),
            ("views", views),
            ("size", size),
            ("patch", patch),
        ])?;
        // SAFETY: matches `iqa_patches`; cols holds views·grid²·3·patch² floats.
        unsafe { launch!(s, self.iqa_patches, linear(n)?; planes, w, h, v, size, patch, cols) }
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
        let [r, t, hd] = u32s([("rows", n_rows), ("tokens", tokens), ("hidden", hidden)])?;
        // SAFETY: matches `embed_finish`; x and xn hold rows·hidden floats.
        unsafe {
            launch!(s, self.embed_finish, rows(n_rows)?;
                x, cls, pos, bias, ln_w, ln_b, eps, r, t, hd, xn)
        }
    }

    /// `x += ls ⊙ (y + bias)`, then LayerNorm into `xn` when `norm` is given.
    #[allow(clippy::too_many_arguments)]
    pub fn residual_norm(
        &self,
        s: &Arc<CudaStream>,
        x: u64,
        y: u64,
        (bias, ls): (u64, u64),
        norm: Option<NormArgs>,
        (n_rows, hidden, x_stride): (usize, usize, usize),
        xn: u64,
    ) -> Result<(), GpuError> {
        let (ln_w, ln_b, eps) = norm.unwrap_or((0, 0, 0.0));
        let [r, hd, xs] = u32s([
            ("rows", n_rows),
            ("hidden", hidden),
            ("row stride", x_stride),
        ])?;
        // SAFETY: matches `residual_norm`; x holds rows·x_stride floats, y and xn
        // rows·hidden.
        unsafe {
            launch!(s, self.residual_norm, rows(n_rows)?;
                x, y, bias, ls, ln_w, ln_b, eps, r, hd, xs, xn)
        }
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
        let [vw, t, hd, he] = u32s([
            ("views", views),
            ("tokens", tokens),
            ("hidden", hidden),
            ("heads", heads),
        ])?;
        // SAFETY: matches `split_heads`; qkv holds 3·views·tokens·hidden floats, q, k, v a third each.
        unsafe { launch!(s, self.split_heads, linear(n)?; qkv, bias, vw, t, hd, he, q, k, v) }
    }

    pub fn softmax_rows(
        &self,
        s: &Arc<CudaStream>,
        scores: u64,
        n_rows: usize,
        n: usize,
    ) -> Result<(), GpuError> {
        let [r, n32] = u32s([("rows", n_rows), ("row length", n)])?;
        // SAFETY: matches `softmax_rows`; scores holds rows·n floats.
        unsafe { launch!(s, self.softmax_rows, rows(n_rows)?; scores, r, n32) }
    }

    pub fn bias_gelu(
        &self,
        s: &Arc<CudaStream>,
        y: u64,
        bias: u64,
        n_rows: usize,
        cols: usize,
    ) -> Result<(), GpuError> {
        // SAFETY: `bias_gelu` has `bias_rows`'s signature; the caller sizes y and bias.
        unsafe { bias_rows(s, &self.bias_gelu, y, bias, n_rows, cols) }
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
        let [v, t, hd] = u32s([("views", views), ("tokens", tokens), ("hidden", hidden)])?;
        // SAFETY: matches `quality_head`; scratch holds views·hidden floats, quality views.
        unsafe {
            launch!(s, self.quality_head, rows(views)?;
                x, v, t, hd, ln_w, ln_b, eps, head_w, head_b, scratch, quality)
        }
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
        let [w, h, v, sz] = u32s([
            ("width", w),
            ("height", h),
            ("views", views),
            ("size", size),
        ])?;
        // SAFETY: matches `lpips_input`; out holds views·size²·3 floats.
        unsafe { launch!(s, self.lpips_input, linear(n)?; planes, w, h, v, sz, out) }
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
        let [v, h, w, c, k, stride, pad, oh, ow] = u32s([
            ("views", shape.views),
            ("height", shape.h),
            ("width", shape.w),
            ("channels", shape.c),
            ("kernel", k),
            ("stride", stride),
            ("padding", pad),
            ("height", oh),
            ("width", ow),
        ])?;
        // SAFETY: matches `im2col_nhwc`; cols holds views·oh·ow·c·k² floats.
        unsafe {
            launch!(s, self.im2col_nhwc, linear(n)?;
                input, v, h, w, c, k, stride, pad, oh, ow, cols)
        }
    }

    pub fn bias_relu(
        &self,
        s: &Arc<CudaStream>,
        y: u64,
        bias: u64,
        n_rows: usize,
        cols: usize,
    ) -> Result<(), GpuError> {
        // SAFETY: `bias_relu` has `bias_rows`'s signature; the caller sizes y and bias.
        unsafe { bias_rows(s, &self.bias_relu, y, bias, n_rows, cols) }
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
        let [v, h, w, c, oh, ow] = u32s([
            ("views", shape.views),
            ("height", shape.h),
            ("width", shape.w),
            ("channels", shape.c),
            ("height", oh),
            ("width", ow),
        ])?;
        // SAFETY: matches `max_pool_nhwc`; out holds views·oh·ow·c floats.
        unsafe { launch!(s, self.max_pool_nhwc, linear(n)?; input, v, h, w, c, oh, ow, out) }
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
        let [v, p, c] = u32s([
            ("views", shape.views),
            ("positions", positions),
            ("channels", shape.c),
        ])?;
        let cfg = config((per_pair, v), LPIPS_THREADS);
        // SAFETY: matches `lpips_tap`; feat holds views·positions·c floats, acc views doubles.
        unsafe { launch!(s, self.lpips_tap, cfg; feat, v, p, c, lin, acc) }
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
        let [w, h, v, cols, rws] = u32s([
            ("width", w),
            ("height", h),
            ("views", views),
            ("SSIM blocks", cols),
            ("SSIM blocks", rws),
        ])?;
        let cfg = config((blocks, 1), SSIM_THREADS);
        // SAFETY: matches `ssim_validator` in metrics.cu; planes holds views·3·w·h floats.
        unsafe { launch!(s, self.ssim_validator, cfg; planes, w, h, v, cols, rws, ssim_sum) }
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
        // SAFETY: matches `pack_scores`; out holds 3·views doubles.
        unsafe {
            launch!(s, self.pack_scores, linear(views)?;
                quality, ssim_sum, lpips, v, ssim_count, out)
        }
    }
}
