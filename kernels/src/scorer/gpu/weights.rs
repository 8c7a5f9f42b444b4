//! The scorer's weights on the device, checked for consistency once, at upload: every later
//! launch trusts these shapes.

use std::sync::Arc;

use cudarc::driver::CudaStream;

use super::device::Buf;
use crate::{
    gpu::GpuError,
    scorer::model::{Conv2d, Dinov2Config, LayerNorm, Linear, ScorerModels},
};

#[derive(Debug)]
pub struct Norm {
    pub w: Buf<f32>,
    pub b: Buf<f32>,
    pub eps: f32,
}

#[derive(Debug)]
pub struct Layer {
    pub norm1: Norm,
    /// Q, K and V stacked: `[3·hidden, hidden]`, and their biases `[3·hidden]`.
    pub qkv_w: Buf<f32>,
    pub qkv_b: Buf<f32>,
    pub out_w: Buf<f32>,
    pub out_b: Buf<f32>,
    pub ls1: Buf<f32>,
    pub norm2: Norm,
    pub fc1_w: Buf<f32>,
    pub fc1_b: Buf<f32>,
    pub fc2_w: Buf<f32>,
    pub fc2_b: Buf<f32>,
    pub ls2: Buf<f32>,
}

#[derive(Debug)]
pub struct Conv {
    pub w: Buf<f32>,
    pub b: Buf<f32>,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv {
    /// Output side for an input side, `None` when the kernel does not fit.
    pub fn out(&self, side: usize) -> Option<usize> {
        (side + 2 * self.pad)
            .checked_sub(self.k)
            .map(|s| s / self.stride + 1)
    }
}

#[derive(Debug)]
pub struct Weights {
    pub config: Dinov2Config,
    pub cls: Buf<f32>,
    pub pos: Buf<f32>,
    pub patch: Conv,
    pub layers: Vec<Layer>,
    pub final_norm: Norm,
    pub head_w: Buf<f32>,
    pub head_b: f32,
    pub convs: Vec<Conv>,
    pub lins: Vec<Buf<f32>>,
}

pub(super) fn bad(msg: String) -> GpuError {
    GpuError::Model(msg)
}

pub(super) fn check_len(what: &str, got: usize, want: usize) -> Result<(), GpuError> {
    if got == want {
        Ok(())
    } else {
        Err(bad(format!("{what} has {got} values, expected {want}")))
    }
}

pub(super) fn norm(
    s: &Arc<CudaStream>,
    n: &LayerNorm,
    hidden: usize,
    what: &str,
) -> Result<Norm, GpuError> {
    check_len(&format!("{what}.weight"), n.weight.len(), hidden)?;
    check_len(&format!("{what}.bias"), n.bias.len(), hidden)?;
    Ok(Norm {
        w: Buf::upload(s, &n.weight)?,
        b: Buf::upload(s, &n.bias)?,
        eps: n.eps,
    })
}

/// A linear layer's weight `[out, in]` and bias (zeros when it has none), checked.
pub(super) fn linear_parts(
    l: &Linear,
    out: usize,
    inp: usize,
    what: &str,
) -> Result<(Vec<f32>, Vec<f32>), GpuError> {
    if l.weight.shape != [out, inp] || l.weight.data.len() != out * inp {
        return Err(bad(format!(
            "{what}.weight is {:?}, expected [{out}, {inp}]",
            l.weight.shape
        )));
    }
    let bias = l.bias.clone().unwrap_or_else(|| vec![0.0; out]);
    check_len(&format!("{what}.bias"), bias.len(), out)?;
    Ok((l.weight.data.clone(), bias))
}

/// Q, K and V `Linear`s (each `[hidden, hidden]`, checked under their names) stacked into
/// one `[3·hidden, hidden]` weight and `[3·hidden]` bias, in that order.
pub(super) fn stacked_qkv(
    parts: [(&Linear, String); 3],
    hidden: usize,
) -> Result<(Vec<f32>, Vec<f32>), GpuError> {
    let mut qkv_w = Vec::with_capacity(3 * hidden * hidden);
    let mut qkv_b = Vec::with_capacity(3 * hidden);
    for (lin, name) in parts {
        let (w, b) = linear_parts(lin, hidden, hidden, &name)?;
        qkv_w.extend(w);
        qkv_b.extend(b);
    }
    Ok((qkv_w, qkv_b))
}

fn conv(s: &Arc<CudaStream>, c: &Conv2d, cin: usize, what: &str) -> Result<Conv, GpuError> {
    let shape = &c.weight.shape;
    if shape.len() != 4 || shape[1] != cin || shape[2] != shape[3] || shape[2] == 0 {
        return Err(bad(format!(
            "{what}.weight is {shape:?}, expected [out, {cin}, k, k]"
        )));
    }
    let (cout, k) = (shape[0], shape[2]);
    check_len(
        &format!("{what}.weight"),
        c.weight.data.len(),
        cout * cin * k * k,
    )?;
    if c.stride == 0 {
        return Err(bad(format!("{what} has stride 0")));
    }
    let bias = c.bias.clone().unwrap_or_else(|| vec![0.0; cout]);
    check_len(&format!("{what}.bias"), bias.len(), cout)?;
    Ok(Conv {
        w: Buf::upload(s, &c.weight.data)?,
        b: Buf::upload(s, &bias)?,

        cout,
        k,
        stride: c.stride,
        pad: c.padding,
    })
}

impl Weights {
    pub fn upload(s: &Arc<CudaStream>, models: &ScorerModels) -> Result<Self, GpuError> {
        let q = &models.quality;
        let d = &q.backbone;
        let cfg = d.config;
        let h = cfg.hidden_size;
        if h == 0 || cfg.num_attention_heads == 0 || !h.is_multiple_of(cfg.num_attention_heads) {
            return Err(bad(format!(
                "hidden size {h} is not a multiple of {} heads",
                cfg.num_attention_heads
            )));
        }
        if cfg.patch_size == 0 || !cfg.image_size.is_multiple_of(cfg.patch_size) {
            return Err(bad(format!(
                "image size {} is not a multiple of the patch size {}",
                cfg.image_size, cfg.patch_size
            )));
        }
        if d.layers.len() != cfg.num_hidden_layers {
            return Err(bad(format!(
                "{} layers, the config says {}",
                d.layers.len(),
                cfg.num_hidden_layers
            )));
        }
        check_len("embeddings.cls_token", d.cls_token.len(), h)?;
        let tokens = cfg.tokens();
        if d.position_embeddings.len() != tokens * h {
            return Err(bad(format!(
                "embeddings.position_embeddings has {} values, the {}x{} grid at {} px needs \
                 {tokens} x {h} (interpolated position embeddings are not supported)",
                d.position_embeddings.len(),
                cfg.grid(),
                cfg.grid(),
                cfg.image_size
            )));
        }
        let patch = conv(
            s,
            &d.patch_embed,
            3,
            "embeddings.patch_embeddings.projection",
        )?;
        if patch.cout != h || patch.k != cfg.patch_size || patch.stride != cfg.patch_size {
            return Err(bad(format!(
                "the patch embedding is {}x{} stride {} to {} channels, expected {p}x{p} stride {p} to {h}",
                patch.k,
                patch.k,
                patch.stride,
                patch.cout,
                p = cfg.patch_size
            )));
        }
        if patch.pad != 0 {
            return Err(bad("the patch embedding is padded".into()));
        }
        let mut layers = Vec::with_capacity(d.layers.len());
        for (i, l) in d.layers.iter().enumerate() {
            let name = |part: &str| format!("encoder.layer.{i}.{part}");
            let (qkv_w, qkv_b) = stacked_qkv(
                [
                    (&l.query, name("attention.attention.query")),
                    (&l.key, name("attention.attention.key")),
                    (&l.value, name("attention.attention.value")),
                ],
                h,
            )?;
            let (out_w, out_b) = linear_parts(&l.output, h, h, &name("attention.output.dense"))?;
            let (fc1_w, fc1_b) = linear_parts(&l.fc1, cfg.mlp_hidden, h, &name("mlp.fc1"))?;
            let (fc2_w, fc2_b) = linear_parts(&l.fc2, h, cfg.mlp_hidden, &name("mlp.fc2"))?;
            check_len(&name("layer_scale1.lambda1"), l.layer_scale1.len(), h)?;
            check_len(&name("layer_scale2.lambda1"), l.layer_scale2.len(), h)?;
            layers.push(Layer {
                norm1: norm(s, &l.norm1, h, &name("norm1"))?,
                qkv_w: Buf::upload(s, &qkv_w)?,
                qkv_b: Buf::upload(s, &qkv_b)?,
                out_w: Buf::upload(s, &out_w)?,
                out_b: Buf::upload(s, &out_b)?,
                ls1: Buf::upload(s, &l.layer_scale1)?,
                norm2: norm(s, &l.norm2, h, &name("norm2"))?,
                fc1_w: Buf::upload(s, &fc1_w)?,
                fc1_b: Buf::upload(s, &fc1_b)?,
                fc2_w: Buf::upload(s, &fc2_w)?,
                fc2_b: Buf::upload(s, &fc2_b)?,
                ls2: Buf::upload(s, &l.layer_scale2)?,
            });
        }
        let (head_w, head_b) = linear_parts(&q.score_head, 1, h, "score_head")?;
        let lp = &models.lpips;
        let mut convs = Vec::with_capacity(5);
        let mut cin = 3;
        for (i, c) in lp.convs.iter().enumerate() {
            let c = conv(s, c, cin, &format!("lpips conv {i}"))?;
            cin = c.cout;
            convs.push(c);
        }
        let mut lins = Vec::with_capacity(5);
        for (i, (lin, c)) in lp.lins.iter().zip(&convs).enumerate() {
            check_len(&format!("lin{i}.model.1.weight"), lin.len(), c.cout)?;
            lins.push(Buf::upload(s, lin)?);
        }
        Ok(Self {
            config: cfg,
            cls: Buf::upload(s, &d.cls_token)?,
            pos: Buf::upload(s, &d.position_embeddings)?,
            patch,
            layers,
            final_norm: norm(s, &d.final_norm, h, "layernorm")?,
            head_w: Buf::upload(s, &head_w)?,
            head_b: head_b[0],
            convs,
            lins,
        })
    }
}
