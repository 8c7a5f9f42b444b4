//! `torch.nn.functional.interpolate` of a CHW map to a new size with `align_corners=False`,
//! `antialias=False` and no scale factor: `mode="bilinear"` (the quality model's resize to
//! 518) and `mode="bicubic"` (LPIPS's resize to 256). Followed: PyTorch
//! `aten/src/ATen/native/UpSample.h` (`area_pixel_compute_scale`,
//! `area_pixel_compute_source_index`, `cubic_convolution1/2`,
//! `get_cubic_upsample_coefficients`, `upsample_get_value_bounded`) and the CUDA kernels the
//! service runs, `native/cuda/UpSampleBilinear2d.cu` (`upsample_bilinear2d_out_frame`) and
//! `native/cuda/UpSampleBicubic2d.cu` (`upsample_bicubic2d_out_frame`), in their `f32`
//! arithmetic and operation order.

use super::ops::FeatureMap;
use crate::constants::BICUBIC_A as CUBIC_A;

/// `area_pixel_compute_scale` without align_corners or a given scale: `in / out` in `f32`.
fn scale(input: usize, output: usize) -> f32 {
    input as f32 / output as f32
}

/// `area_pixel_compute_source_index(scale, dst, align_corners=false, cubic)`:
/// `scale·(dst + 0.5) − 0.5`, bounded below by 0 for the linear modes only.
fn source_index(scale: f32, dst: usize, cubic: bool) -> f32 {
    let src = scale * (dst as f32 + 0.5) - 0.5;
    if !cubic && src < 0.0 {
        0.0
    } else {
        src
    }
}

/// The taps of one output coordinate along one axis and their weights.
#[derive(Debug, Clone, Copy)]
struct Tap<const N: usize> {
    idx: [usize; N],
    w: [f32; N],
}

impl<const N: usize> Tap<N> {
    /// `w[0]·v(0) + w[1]·v(1) + …`, summed left to right as the kernels do, where `v(j)` is
    /// the value at tap `j`.
    fn apply(&self, v: impl Fn(usize) -> f32) -> f32 {
        (1..N).fold(self.w[0] * v(0), |acc, j| acc + self.w[j] * v(j))
    }
}

/// The two taps and weights of one output coordinate (UpSampleBilinear2d.cu: `h1 = (int)h1r`,
/// `h1p = h1 < in − 1`, `h1lambda = h1r − h1`, `h0lambda = 1 − h1lambda`).
fn linear_taps(input: usize, output: usize) -> Vec<Tap<2>> {
    let s = scale(input, output);
    (0..output)
        .map(|dst| {
            let r = source_index(s, dst, false);
            // r ≥ 0 here, so truncation is the floor; bound it as the CPU kernel does.
            let i0 = (r as usize).min(input - 1);
            let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
            let l1 = r - i0 as f32;
            Tap {
                idx: [i0, i1],
                w: [1.0 - l1, l1],
            }
        })
        .collect()
}

/// `cubic_convolution1`: `((A + 2)·x − (A + 3))·x·x + 1`, for `|x| ≤ 1`.
fn cubic1(x: f32) -> f32 {
    ((CUBIC_A + 2.0) * x - (CUBIC_A + 3.0)) * x * x + 1.0
}

/// `cubic_convolution2`: `((A·x − 5A)·x + 8A)·x − 4A`, for `1 < |x| < 2`.
fn cubic2(x: f32) -> f32 {
    ((CUBIC_A * x - 5.0 * CUBIC_A) * x + 8.0 * CUBIC_A) * x - 4.0 * CUBIC_A
}

/// The four taps (clamped to the border as `upsample_get_value_bounded` reads them) and the
/// weights of `get_cubic_upsample_coefficients(t)` of one output coordinate.
fn cubic_taps(input: usize, output: usize) -> Vec<Tap<4>> {
    let s = scale(input, output);
    let last = input as i64 - 1;
    (0..output)
        .map(|dst| {
            let r = source_index(s, dst, true);
            let i = r.floor();
            let t = r - i;
            let i = i as i64;
            let idx = std::array::from_fn(|j| (i - 1 + j as i64).clamp(0, last) as usize);
            let w = [cubic2(t + 1.0), cubic1(t), cubic1(1.0 - t), cubic2(2.0 - t)];
            Tap { idx, w }
        })
        .collect()
}

/// A separable resize with the taps `taps(input, output)` along each axis: along x first,
/// then along y, as both CUDA kernels order their arithmetic. The x-interpolation of an
/// input row does not depend on the output row, so it is computed once per input row (the
/// same values). The same size returns the input unchanged.
fn separable<const N: usize>(
    x: &FeatureMap,
    out_h: usize,
    out_w: usize,
    taps: fn(usize, usize) -> Vec<Tap<N>>,
) -> FeatureMap {
    if (out_h, out_w) == (x.height, x.width) {
        return x.clone();
    }
    let ty = taps(x.height, out_h);
    let tx = taps(x.width, out_w);
    let mut out = FeatureMap::zeros(x.channels, out_h, out_w);
    let n = out_h * out_w;
    let mut horiz = vec![0f32; x.height * out_w];
    for c in 0..x.channels {
        for (src, h) in x
            .plane(c)
            .chunks_exact(x.width)
            .zip(horiz.chunks_exact_mut(out_w))
        {
            for (o, b) in h.iter_mut().zip(&tx) {
                *o = b.apply(|j| src[b.idx[j]]);
            }
        }
        let dst = &mut out.data[c * n..(c + 1) * n];
        for (row, a) in dst.chunks_exact_mut(out_w).zip(&ty) {
            let r: [&[f32]; N] = std::array::from_fn(|j| &horiz[a.idx[j] * out_w..][..out_w]);
            for (ox, o) in row.iter_mut().enumerate() {
                *o = a.apply(|j| r[j][ox]);
            }
        }
    }
    out
}

/// `interpolate(x, (out_h, out_w), mode="bilinear", align_corners=False, antialias=False)`:
/// `h0lambda·(w0lambda·a + w1lambda·b) + h1lambda·(w0lambda·c + w1lambda·d)`. The same size
/// returns the input unchanged (the weights are then exactly 1 and 0).
pub fn bilinear(x: &FeatureMap, out_h: usize, out_w: usize) -> FeatureMap {
    separable(x, out_h, out_w, linear_taps)
}

/// `interpolate(x, (out_h, out_w), mode="bicubic", align_corners=False, antialias=False)`:
/// four interpolations along x (one per tap row), then one along y, as
/// `upsample_bicubic2d_out_frame` orders them. No clamping of the result (the caller clips
/// where the service does). The same size returns the input unchanged (the CUDA kernel's
/// copy special case).
pub fn bicubic(x: &FeatureMap, out_h: usize, out_w: usize) -> FeatureMap {
    separable(x, out_h, out_w, cubic_taps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use splatfleet_tests::sim::models::SimRng;

    use crate::scorer::cpu::test_models::Uniform;

    fn map(h: usize, w: usize, data: Vec<f32>) -> FeatureMap {
        FeatureMap {
            channels: 1,
            height: h,
            width: w,
            data,
        }
    }

    fn assert_close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(want) {
            assert!((f64::from(*a) - b).abs() < 1e-5, "{got:?}\nvs {want:?}");
        }
    }

    // Expected values from a plain-python transcription of the PyTorch formulas (f64):
    // src = (in/out)·(dst + 0.5) − 0.5; bilinear bounds src ≥ 0 and the second tap at the
    // border; bicubic A = −0.75 with border-clamped taps.
    #[test]
    fn two_by_two_to_four_by_four() {
        let x = map(2, 2, vec![0.0, 1.0, 4.0, 9.0]);
        assert_close(
            &bilinear(&x, 4, 4).data,
            &[
                0.0, 0.25, 0.75, 1.0, 1.0, 1.5, 2.5, 3.0, 3.0, 4.0, 6.0, 7.0, 4.0, 5.25, 7.75, 9.0,
            ],
        );
        assert_close(
            &bicubic(&x, 4, 4).data,
            &[
                -0.482_849_1,
                -0.290_893_6,
                0.025_268_6,
                0.217_224_1,
                0.705_200_2,
                1.338_134_8,
                2.380_615_2,
                3.013_549_8,
                2.661_987_3,
                4.021_240_2,
                6.260_009_8,
                7.619_262_7,
                3.850_036_6,
                5.650_268_6,
                8.615_356_4,
                10.415_588_4,
            ],
        );
    }

    #[test]
    fn downscale_six_by_five_to_three_by_two() {
        let data = (0..6)
            .flat_map(|i| (0..5).map(move |j| ((i * 7 + j * 3) % 11) as f32))
            .collect();
        let x = map(6, 5, data);
        assert_close(
            &bilinear(&x, 3, 2).data,
            &[5.75, 6.375, 4.625, 3.875, 6.25, 2.75],
        );
        assert_close(
            &bicubic(&x, 3, 2).data,
            &[
                6.567_749,
                7.233_764_6,
                3.234_863_3,
                3.327_514_6,
                7.115_356_4,
                2.274_658_2,
            ],
        );
    }

    #[test]
    fn identity_size_is_identical_and_channels_are_independent() {
        let mut rng = SimRng::new(4);
        let x = FeatureMap {
            channels: 3,
            height: 7,
            width: 5,
            data: rng.vec(105, 1.0),
        };
        assert_eq!(bilinear(&x, 7, 5), x);
        assert_eq!(bicubic(&x, 7, 5), x);
        // At t = 0 the cubic weights are exactly (0, 1, 0, 0), so integer-aligned samples
        // are copies even without the same-size shortcut.
        assert_eq!(
            [cubic2(1.0), cubic1(0.0), cubic1(1.0), cubic2(2.0)],
            [0.0, 1.0, 0.0, 0.0]
        );
        // A 3-channel resize is three one-channel resizes.
        let y = bicubic(&x, 3, 9);
        for c in 0..3 {
            let one = map(7, 5, x.plane(c).to_vec());
            assert_eq!(bicubic(&one, 3, 9).data, y.plane(c));
        }
    }
}
