//! SSIM as the service computes it: torchmetrics 1.5.1
//! `StructuralSimilarityIndexMeasure(data_range=1.0)` of two views `/255` at their own size
//! (three-gen-subnet 5fc61f1 `engine/metrics/similarity_scorer.py:24, 81-83`).
//!
//! torchmetrics v1.5.1 `src/torchmetrics/functional/image/ssim.py`, `_ssim_update`: Gaussian
//! kernel of side `int(3.5σ + 0.5)·2 + 1` = 11 (:125), reflect padding of 5 on each side
//! (:128-129, :141-142), a valid depthwise convolution of `x, y, x², y², xy` (:151-153), so
//! the SSIM map has the input's size; `σ²` clamped at 0 (:161-163); the mean over the
//! **whole** map, padded border included (:185 — 1.5.1 does not crop; the renderer's
//! [`crate::cpu`] SSIM follows the older cropped convention, so only the window and the
//! constants are shared with it). The Gaussian is applied separably here.
//!
//! Each view's blurred `x` and `x²` serve both pairs the view belongs to ([`prepare`]); only
//! `xy` is blurred per pair ([`ssim`]).

use super::{ops::gemm, ScoreError};
use crate::constants::{ssim_window, SSIM_C1, SSIM_C2, SSIM_WINDOW};

const PAD: usize = SSIM_WINDOW / 2;

/// One view's planes: `x = u8 / 255` and its blurred `μ = G∗x`, `E[x²] = G∗x²`, three
/// channels of `width × height` each, CHW.
#[derive(Debug, Clone, PartialEq)]
pub struct SsimView {
    pub width: usize,
    pub height: usize,
    pub x: Vec<f32>,
    pub mu: Vec<f32>,
    pub exx: Vec<f32>,
}

/// `F.pad(.., mode="reflect")` index: mirror about the edge samples, edge not repeated.
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let r = if i < 0 {
        -i
    } else if i >= n {
        2 * (n - 1) - i
    } else {
        i
    };
    r as usize
}

/// The reflect-padded Gaussian blur of one `w × h` plane, output `w × h`. Each pass is one
/// matrix product of overlapping windows (read through strides) with the 11 weights.
fn blur(plane: &[f32], w: usize, h: usize) -> Vec<f32> {
    let win = ssim_window();
    // Horizontal pass on reflect-padded rows of `wp` samples: output `i = y·wp + x` is
    // `Σ_t padded[i + t]·win[t]`; the last 2·PAD outputs of each row are discarded.
    let wp = w + 2 * PAD;
    let mut padded = vec![0f32; h * wp];
    for (src, dst) in plane.chunks_exact(w).zip(padded.chunks_exact_mut(wp)) {
        for (i, p) in dst.iter_mut().enumerate() {
            *p = src[reflect(i as isize - PAD as isize, w)];
        }
    }
    let m = h * wp - 2 * PAD;
    let mut wide = vec![0f32; m];
    gemm(
        (m, SSIM_WINDOW, 1),
        &padded,
        (1, 1),
        &win,
        (1, 1),
        0.0,
        &mut wide,
        (1, 1),
    );
    // Vertical pass on reflect-padded rows: output `i = y·w + x` is `Σ_t rows[i + t·w]·win[t]`.
    let mut rows = vec![0f32; (h + 2 * PAD) * w];
    for (r, dst) in rows.chunks_exact_mut(w).enumerate() {
        let y = reflect(r as isize - PAD as isize, h);
        dst.copy_from_slice(&wide[y * wp..][..w]);
    }
    let mut out = vec![0f32; w * h];
    gemm(
        (w * h, SSIM_WINDOW, 1),
        &rows,
        (1, w),
        &win,
        (1, 1),
        0.0,
        &mut out,
        (1, 1),
    );
    out
}

/// A view's planes. Reflect padding needs each side longer than the pad (torch raises
/// otherwise).
pub fn prepare(rgb8: &[u8], width: usize, height: usize) -> Result<SsimView, ScoreError> {
    if width <= PAD || height <= PAD {
        return Err(ScoreError::Image(format!(
            "SSIM needs views larger than {PAD} pixels a side (reflect padding), got {width}×{height}"
        )));
    }
    let n = width * height;
    let x = super::ops::FeatureMap::from_rgb8(rgb8, width, height).data;
    let sq: Vec<f32> = x.iter().map(|v| v * v).collect();
    let mut mu = Vec::with_capacity(3 * n);
    let mut exx = Vec::with_capacity(3 * n);
    for c in 0..3 {
        mu.extend(blur(&x[c * n..(c + 1) * n], width, height));
        exx.extend(blur(&sq[c * n..(c + 1) * n], width, height));
    }
    Ok(SsimView {
        width,
        height,
        x,
        mu,
        exx,
    })
}

/// SSIM of two views of the same size (`a` is `preds`, `b` is `target`; the formula is
/// symmetric): the mean of
/// `((2μaμb + C1)(2σab + C2)) / ((μa² + μb² + C1)(σa² + σb² + C2))` over channels and
/// pixels, reduced in `f64`.
pub fn ssim(a: &SsimView, b: &SsimView) -> f64 {
    let (w, h) = (a.width, a.height);
    let n = w * h;
    let mut total = 0f64;
    for c in 0..3 {
        let r = c * n..(c + 1) * n;
        let (xa, xb) = (&a.x[r.clone()], &b.x[r.clone()]);
        let xy: Vec<f32> = xa.iter().zip(xb).map(|(u, v)| u * v).collect();
        let exy = blur(&xy, w, h);
        let (mua, mub) = (&a.mu[r.clone()], &b.mu[r.clone()]);
        let (saa, sbb) = (&a.exx[r.clone()], &b.exx[r]);
        for i in 0..n {
            let (ma, mb) = (mua[i], mub[i]);
            let (ma2, mb2, mab) = (ma * ma, mb * mb, ma * mb);
            let sa = (saa[i] - ma2).max(0.0);
            let sb = (sbb[i] - mb2).max(0.0);
            let sab = exy[i] - mab;
            let upper = 2.0 * sab + SSIM_C2;
            let lower = sa + sb + SSIM_C2;
            let s = ((2.0 * mab + SSIM_C1) * upper) / ((ma2 + mb2 + SSIM_C1) * lower);
            total += f64::from(s);
        }
    }
    total / (3 * n) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorer::cpu::test_models::random_images;

    /// The 11×11 kernel applied directly on an explicitly reflect-padded image, in `f64`.
    fn direct_ssim(a: &[u8], b: &[u8], w: usize, h: usize) -> f64 {
        let win = ssim_window();
        let px = |img: &[u8], c: usize, y: isize, x: isize| {
            f64::from(img[(reflect(y, h) * w + reflect(x, w)) * 3 + c]) / 255.0
        };
        let mut total = 0.0;
        for c in 0..3 {
            for y in 0..h as isize {
                for x in 0..w as isize {
                    let mut m = [0f64; 5];
                    for (i, &wi) in win.iter().enumerate() {
                        for (j, &wj) in win.iter().enumerate() {
                            let k = f64::from(wi) * f64::from(wj);
                            let yy = y + i as isize - PAD as isize;
                            let xx = x + j as isize - PAD as isize;
                            let (u, v) = (px(a, c, yy, xx), px(b, c, yy, xx));
                            for (mq, q) in m.iter_mut().zip([u, v, u * u, v * v, u * v]) {
                                *mq += k * q;
                            }
                        }
                    }
                    let [ma, mb, saa, sbb, sab] = m;
                    let sa = (saa - ma * ma).max(0.0);
                    let sb = (sbb - mb * mb).max(0.0);
                    let (c1, c2) = (f64::from(SSIM_C1), f64::from(SSIM_C2));
                    total += ((2.0 * ma * mb + c1) * (2.0 * (sab - ma * mb) + c2))
                        / ((ma * ma + mb * mb + c1) * (sa + sb + c2));
                }
            }
        }
        total / (3 * w * h) as f64
    }

    #[test]
    fn matches_a_direct_padded_convolution_over_the_whole_map() {
        let (w, h) = (23, 17);
        let images = random_images(2, w as u32, h as u32, 40);
        let (a, b) = (images.view(0), images.view(1));
        let got = ssim(
            &prepare(a, w, h).expect("size"),
            &prepare(b, w, h).expect("size"),
        );
        let want = direct_ssim(a, b, w, h);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        assert!(got < 0.99);
    }

    #[test]
    fn identical_views_score_one_and_order_does_not_matter() {
        let images = random_images(2, 64, 40, 41);
        let a = prepare(images.view(0), 64, 40).expect("size");
        let b = prepare(images.view(1), 64, 40).expect("size");
        let same = ssim(&a, &a);
        assert!((same - 1.0).abs() < 1e-4, "{same}");
        assert_eq!(ssim(&a, &b), ssim(&b, &a));
        assert!(prepare(&[0; 5 * 8 * 3], 5, 8).is_err());
    }
}
