//! The pre-norm transformer layer's steps that the scorer's DINOv2 and the alignment towers
//! (CLIP ViT, open_clip's text transformer) share, each one sequence of launches on the
//! stream: the QKV projection and head split, attention (all queries, or one query row per
//! (batch, head) pair for a last layer read at one row), and the rest of the layer after
//! attention (output projection, residual + LayerNorm, MLP, residual + the next LayerNorm).
//! Every buffer is an address; the callers size them.

use std::sync::Arc;

use cudarc::driver::CudaStream;

use super::{
    device::{Blas, Mat},
    kernels::{Kernels, NormArgs},
};
use crate::gpu::GpuError;

/// The stream, the scorer's kernels and the cuBLAS handle a forward pass queues on.
#[derive(Clone, Copy)]
pub(super) struct Encoder<'a> {
    pub s: &'a Arc<CudaStream>,
    pub k: &'a Kernels,
    pub b: &'a Blas,
}

/// A pre-norm layer's weights after attention, as addresses: the output projection and its
/// layer scale, the second LayerNorm, the MLP's two `Linear`s and their layer scale (ones
/// where the model has none). Each `Linear` is `(weight [out, in], bias)`.
pub(super) struct MlpHalf {
    pub out: (u64, u64),
    pub ls1: u64,
    pub norm2: NormArgs,
    pub fc1: (u64, u64),
    pub fc2: (u64, u64),
    pub ls2: u64,
}

/// The compact work rows of the layer after attention: the attention context, the
/// projections' output, the normalised rows and the MLP's hidden rows.
pub(super) struct LayerBufs {
    pub ctx: u64,
    pub y: u64,
    pub xn: u64,
    pub wide: u64,
}

/// One layer of a [`Stack`]: its QKV `Linear` (`[3·hidden, hidden]` and `[3·hidden]`), the
/// rest after attention, and the LayerNorm that follows it (the next layer's first, or the
/// final one; none where a head normalises).
pub(super) struct StackLayer {
    pub qkv: (u64, u64),
    pub half: MlpHalf,
    pub next: Option<NormArgs>,
}

/// A ViT encoder's shapes and work addresses for `batch` sequences of `tokens` tokens: the
/// residual stream `x` (`batch·tokens` rows of `hidden`; `xn` holds the first layer's
/// LayerNorm of it), the QKV projection's buffer (`bufs.wide`), the per-head Q, K, V
/// blocks, the P·V address arrays and the scores (`chunk` pairs' worth) of
/// [`Encoder::attention`].
pub(super) struct Stack {
    pub batch: usize,
    pub tokens: usize,
    pub hidden: usize,
    pub heads: usize,
    pub mlp: usize,
    pub chunk: usize,
    pub x: u64,
    pub qkv: (u64, u64, u64),
    pub pv_ptrs: (u64, u64, u64),
    pub scores: u64,
    pub bufs: LayerBufs,
}

impl Encoder<'_> {
    /// The encoder's `n_layers` layers (`layer(i)` gives layer i), every token through all
    /// but the last; the last one's outputs are read only at each sequence's first row (the
    /// class token), so after its attention (all keys and values, the class queries alone)
    /// it runs on those rows only. Afterwards `xn` holds the last layer's `next` of them
    /// (`batch` compact rows) and `x` the residual stream.
    ///
    /// # Safety
    /// Every address of `st` must hold what [`Encoder::qkv_heads`], [`Encoder::attention`],
    /// [`Encoder::single_query_attention`] and [`Encoder::mlp_half`] ask of it for `batch`
    /// sequences, and each layer's weights their shapes.
    pub unsafe fn class_token_stack(
        &self,
        st: &Stack,
        n_layers: usize,
        layer: impl Fn(usize) -> StackLayer,
        act: impl Fn(u64, u64, usize, usize) -> Result<(), GpuError>,
    ) -> Result<(), GpuError> {
        let (t, hd) = (st.tokens, st.hidden);
        let (m, dim, pairs) = (st.batch * t, hd / st.heads, st.batch * st.heads);
        let (q, k, v) = st.qkv;
        let scale = 1.0 / (dim as f32).sqrt();
        for i in 0..n_layers {
            let last = i + 1 == n_layers;
            let l = layer(i);
            let shape = (st.batch, t, hd, st.heads);
            // SAFETY (every call below): the caller vouches for the operands.
            unsafe { self.qkv_heads(st.bufs.xn, l.qkv, shape, st.bufs.wide, st.qkv) }?;
            if last {
                // The class query of every (sequence, head) against all keys: one score row
                // per pair, and its context row into ctx as [batch, hidden] (pair i =
                // sequence·heads + head lands at i·head_dim).
                let out = (st.scores, st.bufs.ctx);
                unsafe { self.single_query_attention((q, k, v), (pairs, t, dim), scale, out) }?;
            } else {
                // Each head's O into its columns of the sequence's context rows.
                unsafe {
                    self.attention(
                        (q, k),
                        st.pv_ptrs,
                        (pairs, t, dim, hd),
                        st.chunk,
                        scale,
                        st.scores,
                    )
                }?;
            }
            // `rows` rows of x, `x_stride` floats apart; y, xn, wide compact.
            let (rows, x_stride) = if last { (st.batch, t * hd) } else { (m, hd) };
            let x = (st.x, rows, x_stride);
            unsafe { self.mlp_half(&l.half, &act, x, (hd, st.mlp), &st.bufs, l.next) }?;
        }
        Ok(())
    }

    /// `qkv = xn · wᵀ` (`rows × 3·hidden`), then its bias and the split into per-head Q, K
    /// and V (`(batch, head)`-major blocks of `tokens × hidden/heads`).
    ///
    /// # Safety
    /// `xn` must hold `batch·tokens·hidden` floats, `w` `3·hidden·hidden`, `b` `3·hidden`,
    /// `qkv` `3·batch·tokens·hidden`, and q, k, v a third of that each.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn qkv_heads(
        &self,
        xn: u64,
        (w, b): (u64, u64),
        (batch, tokens, hidden, heads): (usize, usize, usize, usize),
        qkv: u64,
        (q, k, v): (u64, u64, u64),
    ) -> Result<(), GpuError> {
        // SAFETY: the caller vouches for the operands.
        unsafe {
            self.b
                .linear(batch * tokens, 3 * hidden, hidden, xn, w, qkv)
        }?;
        self.k
            .split_heads(self.s, qkv, b, (batch, tokens, hidden, heads), (q, k, v))
    }

    /// Attention of one query row per (batch, head) pair against all `t` keys: the scores
    /// `scale · q·kᵀ` (a row of `t` per pair, into `scores`), their softmax, and each pair's
    /// context row (`dim` floats, pair after pair) into `ctx`. q, k and v hold a `t × dim`
    /// block per pair, `t·dim` apart; q's query row is at the head of its block.
    ///
    /// # Safety
    /// q, k and v must hold `pairs` such blocks, `scores` `pairs·t` floats, `ctx`
    /// `pairs·dim`.
    pub unsafe fn single_query_attention(
        &self,
        (q, k, v): (u64, u64, u64),
        (pairs, t, dim): (usize, usize, usize),
        scale: f32,
        (scores, ctx): (u64, u64),
    ) -> Result<(), GpuError> {
        // SAFETY: the caller vouches for the operands.
        unsafe {
            self.b.gemm(
                (1, t, dim),
                scale,
                Mat::strided(q, dim, t * dim),
                Mat::strided(k, dim, t * dim),
                true,
                0.0,
                Mat::strided(scores, t, t),
                pairs,
            )?;
        }
        self.k.softmax_rows(self.s, scores, pairs, t)?;
        // SAFETY: as above.
        unsafe {
            self.b.gemm(
                (1, dim, t),
                1.0,
                Mat::strided(scores, t, t),
                Mat::strided(v, dim, t * dim),
                false,
                0.0,
                Mat::strided(ctx, dim, dim),
                pairs,
            )
        }
    }

    /// Attention of every query of every (batch, head) pair (no mask): scores, softmax and
    /// `O = P·V`, `chunk` pairs at a time so each chunk's score matrices (`t × t` a pair, in
    /// `scores`) stay in L2 between the three steps. q and k hold a `t × dim` block per
    /// pair, `t·dim` apart; P·V goes through the device address arrays `(p, v, o)` (one
    /// address per pair each: its score matrix, its V block, and where its O lands, rows
    /// `hidden` apart so the heads of a batch sit side by side).
    ///
    /// # Safety
    /// q and k must hold `pairs` such blocks, `scores` `chunk·t·t` floats, and the address
    /// arrays `pairs` addresses of buffers that large.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn attention(
        &self,
        (q, k): (u64, u64),
        (p_ptrs, v_ptrs, o_ptrs): (u64, u64, u64),
        (pairs, t, dim, hidden): (usize, usize, usize, usize),
        chunk: usize,
        scale: f32,
        scores: u64,
    ) -> Result<(), GpuError> {
        let chunk = chunk.max(1);
        for c0 in (0..pairs).step_by(chunk) {
            let nb = chunk.min(pairs - c0);
            let qk_offset = (c0 * t * dim * 4) as u64;
            let ptr_offset = (c0 * 8) as u64;
            // SAFETY: the caller vouches for the operands.
            unsafe {
                self.b.gemm(
                    (t, t, dim),
                    scale,
                    Mat::strided(q + qk_offset, dim, t * dim),
                    Mat::strided(k + qk_offset, dim, t * dim),
                    true,
                    0.0,
                    Mat::strided(scores, t, t * t),
                    nb,
                )?;
            }
            self.k.softmax_rows(self.s, scores, nb * t, t)?;
            // SAFETY: as above.
            unsafe {
                self.b.gemm_arrays(
                    (t, dim, t),
                    1.0,
                    (p_ptrs + ptr_offset, t),
                    (v_ptrs + ptr_offset, dim),
                    false,
                    0.0,
                    (o_ptrs + ptr_offset, hidden),
                    nb,
                )?;
            }
        }
        Ok(())
    }

    /// The layer after attention on `rows` rows of the residual stream `x` (`x_stride`
    /// floats apart; the buffers' rows compact): `x += ls1 ⊙ (ctx·outᵀ + out_b)`,
    /// `xn = norm2(x)`, `x += ls2 ⊙ (act(xn·fc1ᵀ + fc1_b)·fc2ᵀ + fc2_b)`, then `xn =
    /// next(x)` when `next` is given. `act(y, bias, rows, cols)` applies the MLP's bias and
    /// activation in place.
    ///
    /// # Safety
    /// `x` must hold `rows` rows of `hidden` floats `x_stride` apart, `ctx`, `y` and `xn`
    /// `rows·hidden` floats, `wide` `rows·mlp`, and the weights their `Linear` shapes.
    pub unsafe fn mlp_half(
        &self,
        l: &MlpHalf,
        act: impl Fn(u64, u64, usize, usize) -> Result<(), GpuError>,
        (x, rows, x_stride): (u64, usize, usize),
        (hidden, mlp): (usize, usize),
        w: &LayerBufs,
        next: Option<NormArgs>,
    ) -> Result<(), GpuError> {
        let (s, k, b) = (self.s, self.k, self.b);
        // SAFETY (every GEMM below): the caller vouches for the operands.
        unsafe { b.linear(rows, hidden, hidden, w.ctx, l.out.0, w.y) }?;
        k.residual_norm(
            s,
            x,
            w.y,
            (l.out.1, l.ls1),
            Some(l.norm2),
            (rows, hidden, x_stride),
            w.xn,
        )?;
        unsafe { b.linear(rows, mlp, hidden, w.xn, l.fc1.0, w.wide) }?;
        act(w.wide, l.fc1.1, rows, mlp)?;
        unsafe { b.linear(rows, hidden, mlp, w.wide, l.fc2.0, w.y) }?;
        k.residual_norm(
            s,
            x,
            w.y,
            (l.fc2.1, l.ls2),
            next,
            (rows, hidden, x_stride),
            w.xn,
        )
    }
}
