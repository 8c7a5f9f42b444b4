//! The scorer's tensor operations in PyTorch's semantics, on `f32` storage: the matrix
//! product (through the `matrixmultiply` crate), `nn.Linear`, `nn.LayerNorm`, the exact-erf
//! `nn.GELU`, softmax, multi-head self-attention as HF ViT/DINOv2 splits its heads,
//! `nn.Conv2d` (im2col + matrix product), ReLU, `nn.MaxPool2d` and the sigmoid; and
//! [`FeatureMap`], the CHW maps they read and write. Every size here was checked upstream
//! ([`super::check`]); the asserts guard the unsafe matrix product, not inputs.

use crate::scorer::model::{Conv2d, LayerNorm, Linear};

/// A CHW image or feature map, row-major `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMap {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl FeatureMap {
    pub fn zeros(channels: usize, height: usize, width: usize) -> Self {
        Self {
            channels,
            height,
            width,
            data: vec![0.0; channels * height * width],
        }
    }

    /// An 8-bit HWC RGB image as the service reads it: `uint8 → float / 255 → CHW`
    /// (`img.permute(2, 0, 1).float() / 255.0`, an `f32` division).
    pub fn from_rgb8(rgb8: &[u8], width: usize, height: usize) -> Self {
        let n = width * height;
        let mut out = Self::zeros(3, height, width);
        for (p, px) in rgb8.chunks_exact(3).take(n).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                out.data[c * n + p] = f32::from(v) / 255.0;
            }
        }
        out
    }

    pub fn plane_len(&self) -> usize {
        self.height * self.width
    }

    /// Channel `c`'s plane.
    pub fn plane(&self, c: usize) -> &[f32] {
        let n = self.plane_len();
        &self.data[c * n..(c + 1) * n]
    }
}

/// Index one past the last element a `rows × cols` matrix with these strides reads.
fn extent(rows: usize, cols: usize, (rs, cs): (usize, usize)) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

fn stride(s: usize) -> isize {
    isize::try_from(s).expect("a stride within a slice fits in isize")
}

/// `C ← A·B + beta·C` with `A` `m × k`, `B` `k × n`, `C` `m × n`, each read through
/// (row, column) strides (`matrixmultiply::sgemm`; `beta = 0` leaves `C` unread).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    a_strides: (usize, usize),
    b: &[f32],
    b_strides: (usize, usize),
    beta: f32,
    c: &mut [f32],
    c_strides: (usize, usize),
) {
    assert!(extent(m, k, a_strides) <= a.len(), "gemm: A out of bounds");
    assert!(extent(k, n, b_strides) <= b.len(), "gemm: B out of bounds");
    assert!(extent(m, n, c_strides) <= c.len(), "gemm: C out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every element sgemm reads or writes inside the three
    // slices; `c` is a unique borrow, so it aliases neither `a` nor `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            stride(a_strides.0),
            stride(a_strides.1),
            b.as_ptr(),
            stride(b_strides.0),
            stride(b_strides.1),
            beta,
            c.as_mut_ptr(),
            stride(c_strides.0),
            stride(c_strides.1),
        );
    }
}

/// Row-major `A (m × k) · B (k × n)`.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0.0; m * n];
    gemm((m, k, n), a, (k, 1), b, (n, 1), 0.0, &mut c, (n, 1));
    c
}

/// `torch.nn.Linear` on `rows` row-major rows: `x Wᵀ + b` (`W` is `[out, in]`). As `addmm`,
/// the bias is added to the finished product.
pub fn linear(x: &[f32], rows: usize, layer: &Linear) -> Vec<f32> {
    let (inp, out) = (layer.in_features(), layer.out_features());
    let mut y = vec![0.0; rows * out];
    let beta = match &layer.bias {
        Some(b) => {
            for row in y.chunks_exact_mut(out) {
                row.copy_from_slice(b);
            }
            1.0
        }
        None => 0.0,
    };
    // Wᵀ is W read with swapped strides.
    gemm(
        (rows, inp, out),
        x,
        (inp, 1),
        &layer.weight.data,
        (1, inp),
        beta,
        &mut y,
        (out, 1),
    );
    y
}

/// `torch.nn.LayerNorm` over rows of `norm.weight.len()`: `(x − mean) / √(var + eps) · w + b`
/// with the biased variance. Mean and variance are accumulated in `f64` (the reference's
/// choice; torch accumulates in `f32`).
pub fn layer_norm(x: &[f32], norm: &LayerNorm) -> Vec<f32> {
    let d = norm.weight.len();
    let mut y = vec![0.0; x.len()];
    for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let mean = xr.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64;
        let var = xr
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / d as f64;
        let rstd = (1.0 / (var + f64::from(norm.eps)).sqrt()) as f32;
        let mean = mean as f32;
        for (((o, &v), &w), &b) in yr.iter_mut().zip(xr).zip(&norm.weight).zip(&norm.bias) {
            *o = (v - mean) * rstd * w + b;
        }
    }
    y
}

/// The exact GELU of `nn.GELU()` / HF `"gelu"`: `0.5·x·(1 + erf(x/√2))`, `x/√2` taken as
/// `x · M_SQRT1_2` as ATen's GeluKernel does.
pub fn gelu_scalar(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
}

pub fn gelu(x: &mut [f32]) {
    for v in x {
        *v = gelu_scalar(*v);
    }
}

pub fn relu(x: &mut [f32]) {
    for v in x {
        // torch.relu propagates NaN; `max` would not.
        if *v < 0.0 {
            *v = 0.0;
        }
    }
}

/// `torch.sigmoid` in `f32`.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Softmax of one row in place: `exp(x − max) / Σ exp(x − max)`.
pub fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    exp_normalise(row, max);
}

/// `x / divisor` then softmax, in one pass fewer (HF's eager attention divides the scores
/// before its softmax; the same operations, the same values).
pub fn softmax_divided(row: &mut [f32], divisor: f32) {
    let mut max = f32::NEG_INFINITY;
    for v in row.iter_mut() {
        *v /= divisor;
        max = max.max(*v);
    }
    exp_normalise(row, max);
}

fn exp_normalise(row: &mut [f32], max: f32) {
    let mut sum = 0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

/// Multi-head scaled dot-product self-attention (HF `Dinov2SelfAttention`, eager): for each
/// head `h` the columns `h·d..(h+1)·d` of the projected `q`, `k`, `v` (`d = hidden / heads`),
/// `softmax(q kᵀ / √d) v`, heads written back to the same columns. `q` has `rows_q` rows,
/// `k` and `v` `rows_kv` rows (the query rows may be a subset of the keys, as the last layer
/// of a CLS-only forward needs).
pub fn attention(
    q: &[f32],
    rows_q: usize,
    k: &[f32],
    v: &[f32],
    rows_kv: usize,
    hidden: usize,
    heads: usize,
) -> Vec<f32> {
    let d = hidden / heads;
    // transformers 4.44.2 modeling_dinov2.py, Dinov2SelfAttention.forward:
    // `attention_scores / math.sqrt(self.attention_head_size)`.
    let sqrt_d = (d as f32).sqrt();
    let mut out = vec![0.0; rows_q * hidden];
    let mut scores = vec![0.0; rows_q * rows_kv];
    for h in 0..heads {
        let off = h * d;
        // scores = Q_h · K_hᵀ; K_hᵀ is K_h read with swapped strides.
        gemm(
            (rows_q, d, rows_kv),
            &q[off..],
            (hidden, 1),
            &k[off..],
            (1, hidden),
            0.0,
            &mut scores,
            (rows_kv, 1),
        );
        for row in scores.chunks_exact_mut(rows_kv) {
            softmax_divided(row, sqrt_d);
        }
        gemm(
            (rows_q, rows_kv, d),
            &scores,
            (rows_kv, 1),
            &v[off..],
            (hidden, 1),
            0.0,
            &mut out[off..],
            (hidden, 1),
        );
    }
    out
}

/// Output side of a convolution or pooling window: `⌊(size + 2·pad − k) / stride⌋ + 1`, or
/// `None` when the window does not fit (torch raises).
pub fn conv_out(size: usize, kernel: usize, stride: usize, pad: usize) -> Option<usize> {
    let padded = size.checked_add(2 * pad)?;
    if stride == 0 || padded < kernel {
        return None;
    }
    Some((padded - kernel) / stride + 1)
}

/// `torch.nn.Conv2d` (square kernel, stride, zero padding, optional bias) by im2col and one
/// matrix product: `W [out, in·k·k] · cols [in·k·k, oh·ow]`.
pub fn conv2d(x: &FeatureMap, conv: &Conv2d) -> FeatureMap {
    let (k, s, p) = (conv.kernel(), conv.stride, conv.padding);
    let oh = conv_out(x.height, k, s, p).expect("conv2d: sizes were checked");
    let ow = conv_out(x.width, k, s, p).expect("conv2d: sizes were checked");
    let (cin, cout) = (x.channels, conv.out_channels());
    let (ckk, ohw) = (cin * k * k, oh * ow);
    let mut cols = vec![0f32; ckk * ohw];
    for c in 0..cin {
        let plane = x.plane(c);
        for ky in 0..k {
            for kx in 0..k {
                let row = &mut cols[((c * k + ky) * k + kx) * ohw..][..ohw];
                for oy in 0..oh {
                    // Source row oy·s + ky − p; zero padding outside.
                    let Some(iy) = (oy * s + ky).checked_sub(p).filter(|&iy| iy < x.height) else {
                        continue;
                    };
                    let src = &plane[iy * x.width..][..x.width];
                    let dst = &mut row[oy * ow..][..ow];
                    for (ox, o) in dst.iter_mut().enumerate() {
                        if let Some(&v) = (ox * s + kx).checked_sub(p).and_then(|ix| src.get(ix)) {
                            *o = v;
                        }
                    }
                }
            }
        }
    }
    let mut out = FeatureMap::zeros(cout, oh, ow);
    let beta = match &conv.bias {
        Some(b) => {
            for (plane, &bv) in out.data.chunks_exact_mut(ohw).zip(b) {
                plane.fill(bv);
            }
            1.0
        }
        None => 0.0,
    };
    gemm(
        (cout, ckk, ohw),
        &conv.weight.data,
        (ckk, 1),
        &cols,
        (ohw, 1),
        beta,
        &mut out.data,
        (ohw, 1),
    );
    out
}

/// `torch.nn.MaxPool2d(kernel_size, stride)`: no padding, floor mode, NaN propagates.
pub fn max_pool2d(x: &FeatureMap, kernel: usize, stride: usize) -> FeatureMap {
    let oh = conv_out(x.height, kernel, stride, 0).expect("max_pool2d: sizes were checked");
    let ow = conv_out(x.width, kernel, stride, 0).expect("max_pool2d: sizes were checked");
    let mut out = FeatureMap::zeros(x.channels, oh, ow);
    let n = oh * ow;
    for c in 0..x.channels {
        let plane = x.plane(c);
        let dst = &mut out.data[c * n..(c + 1) * n];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut m = f32::NEG_INFINITY;
                for ky in 0..kernel {
                    let row = &plane[(oy * stride + ky) * x.width + ox * stride..][..kernel];
                    for &v in row {
                        if v > m || v.is_nan() {
                            m = v;
                        }
                    }
                }
                dst[oy * ow + ox] = m;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use splatfleet_tests::sim::models::SimRng;

    use crate::scorer::cpu::test_models::Uniform;
    use crate::scorer::model::Tensor;

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn matmul_matches_a_naive_product_including_strided_views() {
        let mut rng = SimRng::new(1);
        let (m, k, n) = (5, 7, 3);
        let a = rng.vec(m * k, 1.0);
        let b = rng.vec(k * n, 1.0);
        let c = matmul(&a, &b, m, k, n);
        for i in 0..m {
            for j in 0..n {
                let e: f32 = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum();
                assert!(
                    close(c[i * n + j], e, 1e-5),
                    "{i},{j}: {} vs {e}",
                    c[i * n + j]
                );
            }
        }
        // Aᵀ read through strides equals the product with an explicit transpose.
        let at: Vec<f32> = (0..k * m).map(|t| a[(t % m) * k + t / m]).collect();
        let mut c2 = vec![0.0; m * n];
        gemm((m, k, n), &at, (1, m), &b, (n, 1), 0.0, &mut c2, (n, 1));
        assert_eq!(c, c2);
    }

    #[test]
    fn linear_adds_the_bias_to_x_times_w_transposed() {
        let layer = Linear {
            weight: Tensor {
                shape: vec![2, 3],
                data: vec![1.0, 2.0, 3.0, -1.0, 0.5, 0.0],
            },
            bias: Some(vec![10.0, -10.0]),
        };
        let y = linear(&[1.0, 1.0, 1.0, 2.0, 0.0, -1.0], 2, &layer);
        assert_eq!(y, vec![16.0, -10.5, 9.0, -12.0]);
    }

    #[test]
    fn layer_norm_gelu_softmax_against_hand_values() {
        let norm = LayerNorm {
            weight: vec![1.0, 2.0, 1.0, 1.0],
            bias: vec![0.0, 0.0, 1.0, 0.0],
            eps: 1e-5,
        };
        // x = [1,2,3,4]: mean 2.5, biased var 1.25.
        let y = layer_norm(&[1.0, 2.0, 3.0, 4.0], &norm);
        let r = 1.0 / (1.25f64 + 1e-5).sqrt();
        let e = [-1.5 * r, -0.5 * r * 2.0, 0.5 * r + 1.0, 1.5 * r];
        for (a, b) in y.iter().zip(e) {
            assert!(close(*a, b as f32, 1e-6), "{y:?} vs {e:?}");
        }
        // torch.nn.GELU()(torch.tensor([-3., -1., 0., 0.5, 1., 2.])), from erf by hand:
        // 0.5·x·(1 + erf(x/√2)).
        for (x, e) in [
            (-3.0f32, -0.004_049_694_f32),
            (-1.0, -0.158_655_25),
            (0.0, 0.0),
            (0.5, 0.345_731_23),
            (1.0, 0.841_344_8),
            (2.0, 1.954_499_7),
        ] {
            assert!(
                close(gelu_scalar(x), e, 1e-6),
                "gelu({x}) = {}",
                gelu_scalar(x)
            );
        }
        // softmax([1, 2, 3]) = [0.09003057, 0.24472847, 0.66524096]; shift-invariant.
        let mut s = [1.0f32, 2.0, 3.0];
        softmax(&mut s);
        let mut t = [1001.0f32, 1002.0, 1003.0];
        softmax(&mut t);
        for (a, e) in s.iter().zip([0.090_030_57, 0.244_728_47, 0.665_240_96]) {
            assert!(close(*a, e, 1e-6), "{s:?}");
        }
        assert_eq!(s, t);
        let mut a = [3.0f32, -1.0, 7.5, 0.25];
        let mut b = a.map(|v| v / 3.0);
        softmax_divided(&mut a, 3.0);
        softmax(&mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn attention_matches_a_naive_loop() {
        let mut rng = SimRng::new(2);
        let (t, hidden, heads) = (6, 8, 2);
        let d = hidden / heads;
        let q = rng.vec(t * hidden, 1.0);
        let k = rng.vec(t * hidden, 1.0);
        let v = rng.vec(t * hidden, 1.0);
        let out = attention(&q, t, &k, &v, t, hidden, heads);
        for h in 0..heads {
            for i in 0..t {
                let s: Vec<f64> = (0..t)
                    .map(|j| {
                        (0..d)
                            .map(|c| {
                                f64::from(q[i * hidden + h * d + c] * k[j * hidden + h * d + c])
                            })
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let mx = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|x| (x - mx).exp()).sum();
                for c in 0..d {
                    let e: f64 = (0..t)
                        .map(|j| (s[j] - mx).exp() / z * f64::from(v[j * hidden + h * d + c]))
                        .sum();
                    let got = out[i * hidden + h * d + c];
                    assert!(close(got, e as f32, 1e-5), "h{h} i{i} c{c}: {got} vs {e}");
                }
            }
        }
        // Query rows are independent: the first row alone gives the first row.
        let first = attention(&q[..hidden], 1, &k, &v, t, hidden, heads);
        for (a, b) in first.iter().zip(&out[..hidden]) {
            assert!(close(*a, *b, 1e-6));
        }
    }

    fn naive_conv(x: &FeatureMap, conv: &Conv2d) -> FeatureMap {
        let (k, s, p) = (conv.kernel(), conv.stride, conv.padding);
        let oh = (x.height + 2 * p - k) / s + 1;
        let ow = (x.width + 2 * p - k) / s + 1;
        let mut out = FeatureMap::zeros(conv.out_channels(), oh, ow);
        for o in 0..conv.out_channels() {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = conv.bias.as_ref().map_or(0.0, |b| f64::from(b[o]));
                    for c in 0..x.channels {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * s + ky) as isize - p as isize;
                                let ix = (ox * s + kx) as isize - p as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= x.height as isize
                                    || ix >= x.width as isize
                                {
                                    continue;
                                }
                                let w = conv.weight.data[((o * x.channels + c) * k + ky) * k + kx];
                                let v =
                                    x.data[(c * x.height + iy as usize) * x.width + ix as usize];
                                acc += f64::from(w) * f64::from(v);
                            }
                        }
                    }
                    out.data[(o * oh + oy) * ow + ox] = acc as f32;
                }
            }
        }
        out
    }

    #[test]
    fn conv2d_matches_a_direct_convolution() {
        let mut rng = SimRng::new(3);
        for (cin, cout, k, s, p, h, w, bias) in [
            (3, 4, 11, 4, 2, 23, 19, true),
            (2, 3, 5, 1, 2, 7, 9, false),
            (3, 5, 3, 3, 0, 9, 9, true),
        ] {
            let x = FeatureMap {
                channels: cin,
                height: h,
                width: w,
                data: rng.vec(cin * h * w, 1.0),
            };
            let conv = Conv2d {
                weight: Tensor {
                    shape: vec![cout, cin, k, k],
                    data: rng.vec(cout * cin * k * k, 0.3),
                },
                bias: bias.then(|| rng.vec(cout, 1.0)),
                stride: s,
                padding: p,
            };
            let got = conv2d(&x, &conv);
            let want = naive_conv(&x, &conv);
            assert_eq!(
                (got.channels, got.height, got.width),
                (cout, want.height, want.width)
            );
            for (a, b) in got.data.iter().zip(&want.data) {
                assert!(close(*a, *b, 1e-5), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn max_pool_is_floor_mode_without_padding() {
        // 5×5 ramp, k3 s2: output 2×2, the max of each window is its bottom-right corner.
        let x = FeatureMap {
            channels: 1,
            height: 5,
            width: 5,
            data: (0..25).map(|v| v as f32).collect(),
        };
        let y = max_pool2d(&x, 3, 2);
        assert_eq!((y.height, y.width), (2, 2));
        assert_eq!(y.data, vec![12.0, 14.0, 22.0, 24.0]);
        // 6×6 also gives 2×2 (floor), and a NaN wins its windows.
        let mut x6 = FeatureMap::zeros(1, 6, 6);
        x6.data[0] = f32::NAN;
        let y6 = max_pool2d(&x6, 3, 2);
        assert_eq!((y6.height, y6.width), (2, 2));
        assert!(y6.data[0].is_nan() && y6.data[3] == 0.0);
        let mut r = [-1.0f32, 2.0, f32::NAN];
        relu(&mut r);
        assert!(r[0] == 0.0 && r[1] == 2.0 && r[2].is_nan());
    }
}
