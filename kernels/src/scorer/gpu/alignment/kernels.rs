//! One typed launcher per kernel of `alignment.cu`: grid and block sizes, and arguments in
//! the order of the `.cu` signatures. Buffers are passed by address; the callers size them.
//! The program is `scorer.cu` followed by `alignment.cu`, so the new kernels call the
//! scorer's device helpers (LayerNorm of a warp's row, the bicubic tap) instead of copies.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, PushKernelArg};

use crate::gpu::{
    compile::{ptx_for, Source},
    GpuError,
};

pub use super::super::kernels::NormArgs;
use super::super::kernels::{bias_rows, launch, linear, rows, u32s};

/// The alignment towers' CUDA program: the scorer's source, then `alignment.cu`.
pub const ALIGNMENT: Source = Source {
    name: "alignment",
    code: concat!(
        include_str!("../scorer.cu"),
        "\n",
        include_str!("alignment.cu")
    ),
};

#[derive(Debug)]
pub struct AlignKernels {
    bicubic_patches: CudaFunction,
    layer_norm_rows: CudaFunction,
    bias_add: CudaFunction,
    bias_quick_gelu: CudaFunction,
    dwconv_norm: CudaFunction,
    mean_pool_nhwc: CudaFunction,
    text_embed: CudaFunction,
    causal_mask: CudaFunction,
    l2_normalise_rows: CudaFunction,
    f32_to_f16: CudaFunction,
}

impl AlignKernels {
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Self, GpuError> {
        let (major, minor) = ctx.compute_capability()?;
        let module = ctx.load_module(ptx_for(&ALIGNMENT, major, minor)?)?;
        let f = |name: &str| module.load_function(name);
        Ok(Self {
            bicubic_patches: f("bicubic_patches")?,
            layer_norm_rows: f("layer_norm_rows")?,
            bias_add: f("bias_add")?,
            bias_quick_gelu: f("bias_quick_gelu")?,
            dwconv_norm: f("dwconv_norm")?,
            mean_pool_nhwc: f("mean_pool_nhwc")?,
            text_embed: f("text_embed")?,
            causal_mask: f("causal_mask")?,
            l2_normalise_rows: f("l2_normalise_rows")?,
            f32_to_f16: f("f32_to_f16")?,
        })
    }

    /// `f32_to_f16` (`x`, `n`, `y`), for [`super::super::device::Blas::enable_half`].
    pub fn f32_to_f16(&self) -> CudaFunction {
        self.f32_to_f16.clone()
    }

    /// The im2col of a `patch`-stride convolution on the `planes` (`views × 3 × h × w`)
    /// resized bicubically to `size`² and normalised `(x − mean[c]) / std[c]`.
    #[allow(clippy::too_many_arguments)]
    pub fn bicubic_patches(
        &self,
        s: &Arc<CudaStream>,
        planes: u64,
        (w, h): (usize, usize),
        views: usize,
        (size, patch): (usize, usize),
        (mean, std): ([f32; 3], [f32; 3]),
        cols: u64,
    ) -> Result<(), GpuError> {
        let grid = size / patch.max(1);
        let n = views * grid * grid * 3 * patch * patch;
        let [w, h, v, size, patch] = u32s([
            ("width", w),
            ("height", h),
            ("views", views),
            ("size", size),
            ("patch", patch),
        ])?;
        let [m0, m1, m2] = mean;
        let [s0, s1, s2] = std;
        // SAFETY: matches `bicubic_patches`; planes holds views·3·w·h floats, cols
        // views·grid²·3·patch².
        unsafe {
            launch!(s, self.bicubic_patches, linear(n)?;
                planes, w, h, v, size, patch, m0, m1, m2, s0, s1, s2, cols)
        }
    }

    /// LayerNorm of `n_rows` rows of `n` values (`x_stride` apart; `bias` added to them in
    /// place first when given) into rows of `out` (`out_stride` apart; may be `x`).
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm_rows(
        &self,
        s: &Arc<CudaStream>,
        x: u64,
        bias: Option<u64>,
        (ln_w, ln_b, eps): NormArgs,
        (n_rows, n, x_stride): (usize, usize, usize),
        out: u64,
        out_stride: usize,
    ) -> Result<(), GpuError> {
        let bias = bias.unwrap_or(0);
        let [r, n, xs, os] = u32s([
            ("rows", n_rows),
            ("row length", n),
            ("row stride", x_stride),
            ("row stride", out_stride),
        ])?;
        // SAFETY: matches `layer_norm_rows`; x holds rows·x_stride floats, out rows·out_stride.
        unsafe {
            launch!(s, self.layer_norm_rows, rows(n_rows)?;
                x, bias, ln_w, ln_b, eps, r, n, xs, out, os)
        }
    }

    pub fn bias_add(
        &self,
        s: &Arc<CudaStream>,
        y: u64,
        bias: u64,
        n_rows: usize,
        cols: usize,
    ) -> Result<(), GpuError> {
        // SAFETY: `bias_add` has `bias_rows`'s signature; the caller sizes y and bias.
        unsafe { bias_rows(s, &self.bias_add, y, bias, n_rows, cols) }
    }

    pub fn bias_quick_gelu(
        &self,
        s: &Arc<CudaStream>,
        y: u64,
        bias: u64,
        n_rows: usize,
        cols: usize,
    ) -> Result<(), GpuError> {
        // SAFETY: `bias_quick_gelu` has `bias_rows`'s signature; the caller sizes y and bias.
        unsafe { bias_rows(s, &self.bias_quick_gelu, y, bias, n_rows, cols) }
    }

    /// Depthwise `k`×`k` convolution (weights `[k·k][c]`) of the NHWC map `x`, then the
    /// LayerNorm over channels, into `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn dwconv_norm(
        &self,
        s: &Arc<CudaStream>,
        x: u64,
        (w_t, bias): (u64, u64),
        norm: NormArgs,
        (views, h, w, c): (usize, usize, usize, usize),
        k: usize,
        out: u64,
    ) -> Result<(), GpuError> {
        let (ln_w, ln_b, eps) = norm;
        let [v, h32, w32, c32, k] = u32s([
            ("views", views),
            ("height", h),
            ("width", w),
            ("channels", c),
            ("kernel", k),
        ])?;
        // SAFETY: matches `dwconv_norm`; x and out hold views·h·w·c floats, w_t k²·c, bias c.
        unsafe {
            launch!(s, self.dwconv_norm, rows(views * h * w)?;
                x, w_t, bias, ln_w, ln_b, eps, v, h32, w32, c32, k, out)
        }
    }

    pub fn mean_pool(
        &self,
        s: &Arc<CudaStream>,
        x: u64,
        (views, pixels, c): (usize, usize, usize),
        out: u64,
    ) -> Result<(), GpuError> {
        let [v, p, c32] = u32s([("views", views), ("pixels", pixels), ("channels", c)])?;
        // SAFETY: matches `mean_pool_nhwc`; x holds views·pixels·c floats, out views·c.
        unsafe { launch!(s, self.mean_pool_nhwc, linear(views * c)?; x, v, p, c32, out) }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn text_embed(
        &self,
        s: &Arc<CudaStream>,
        ids: u64,
        (tok, pos): (u64, u64),
        n_rows: usize,
        width: usize,
        x: u64,
    ) -> Result<(), GpuError> {
        let [r, w] = u32s([("rows", n_rows), ("width", width)])?;
        // SAFETY: matches `text_embed`; ids holds rows ids inside the table, x rows·width.
        unsafe { launch!(s, self.text_embed, linear(n_rows * width)?; ids, tok, pos, r, w, x) }
    }

    pub fn causal_mask(
        &self,
        s: &Arc<CudaStream>,
        scores: u64,
        batches: usize,
        n: usize,
    ) -> Result<(), GpuError> {
        let [b, n32] = u32s([("batches", batches), ("tokens", n)])?;
        // SAFETY: matches `causal_mask`; scores holds batches·n² floats.
        unsafe { launch!(s, self.causal_mask, linear(batches * n * n)?; scores, b, n32) }
    }

    pub fn l2_normalise_rows(
        &self,
        s: &Arc<CudaStream>,
        x: u64,
        (n_rows, n, x_stride): (usize, usize, usize),
        out: u64,
    ) -> Result<(), GpuError> {
        let [r, n, xs] = u32s([
            ("rows", n_rows),
            ("row length", n),
            ("row stride", x_stride),
        ])?;
        // SAFETY: matches `l2_normalise_rows`; x holds rows·x_stride floats, out rows·n.
        unsafe { launch!(s, self.l2_normalise_rows, rows(n_rows)?; x, r, n, xs, out) }
    }
}

#[cfg(test)]
mod tests {
    use super::ALIGNMENT;

    #[test]
    fn every_loaded_kernel_is_defined_once_in_the_program() {
        for definition in [
            "void bicubic_patches(",
            "void layer_norm_rows(",
            "void bias_add(",
            "void bias_quick_gelu(",
            "void dwconv_norm(",
            "void mean_pool_nhwc(",
            "void text_embed(",
            "void causal_mask(",
            "void l2_normalise_rows(",
            "void f32_to_f16(",
            // scorer.cu's helpers the new kernels call.
            "float bicubic_at(",
            "void warp_layer_norm(",
        ] {
            let n = ALIGNMENT.code.matches(definition).count();
            assert_eq!(n, 1, "{definition} appears {n} times");
        }
    }
}
