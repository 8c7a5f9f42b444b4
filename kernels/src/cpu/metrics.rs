//! CPU reference of the metrics kernels. Sums run in f64, as the kernels' accumulators do.

use rayon::prelude::*;

use crate::{
    constants::{ssim_window, SILHOUETTE_ALPHA, SSIM_C1, SSIM_C2, SSIM_WINDOW},
    metrics::{Metrics, ViewMetrics},
    views::Views,
};

/// Measures every view and adjacent pair; `floater_fraction` comes from the model.
pub fn measure(views: &Views, floater_fraction: f32) -> Metrics {
    let per_view = (0..views.views)
        .into_par_iter()
        .map(|v| view_metrics(views, v))
        .collect();
    let adjacent_ssim = (0..views.views.saturating_sub(1))
        .into_par_iter()
        .map(|v| ssim(views, v, v + 1))
        .collect();
    Metrics {
        views: per_view,
        adjacent_ssim,
        floater_fraction,
    }
}

pub(crate) fn luminance(p: &[f32; 4]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

pub(crate) fn saturation(p: &[f32; 4]) -> f32 {
    let max = p[0].max(p[1]).max(p[2]);
    let min = p[0].min(p[1]).min(p[2]);
    if max > 0.0 {
        (max - min) / max
    } else {
        0.0
    }
}

fn view_metrics(views: &Views, v: usize) -> ViewMetrics {
    let (w, h) = (views.width as usize, views.height as usize);
    let px = views.view(v);
    let mut inside = 0u64;
    let mut bbox = [i32::MAX, i32::MAX, -1, -1];
    let mut rgb = [0f64; 3];
    let mut sat = 0f64;
    let (mut lap_n, mut lap_sum, mut lap_sq) = (0u64, 0f64, 0f64);
    for y in 0..h {
        for x in 0..w {
            let p = &px[y * w + x];
            if p[3] < SILHOUETTE_ALPHA {
                continue;
            }
            inside += 1;
            bbox = [
                bbox[0].min(x as i32),
                bbox[1].min(y as i32),
                bbox[2].max(x as i32),
                bbox[3].max(y as i32),
            ];
            for c in 0..3 {
                rgb[c] += f64::from(p[c]);
            }
            sat += f64::from(saturation(p));
            if x > 0 && y > 0 && x + 1 < w && y + 1 < h {
                let l = luminance(&px[(y - 1) * w + x])
                    + luminance(&px[(y + 1) * w + x])
                    + luminance(&px[y * w + x - 1])
                    + luminance(&px[y * w + x + 1])
                    - 4.0 * luminance(p);
                lap_n += 1;
                lap_sum += f64::from(l);
                lap_sq += f64::from(l) * f64::from(l);
            }
        }
    }
    if inside == 0 {
        return ViewMetrics {
            bbox: [-1; 4],
            ..ViewMetrics::default()
        };
    }
    let n = inside as f64;
    let sharpness = if lap_n > 0 {
        let m = lap_sum / lap_n as f64;
        (lap_sq / lap_n as f64 - m * m).max(0.0)
    } else {
        0.0
    };
    ViewMetrics {
        coverage: (n / (w * h) as f64) as f32,
        bbox,
        sharpness: sharpness as f32,
        mean_rgb: [
            (rgb[0] / n) as f32,
            (rgb[1] / n) as f32,
            (rgb[2] / n) as f32,
        ],
        saturation: (sat / n) as f32,
    }
}

/// SSIM of two views as torchmetrics computes it with an 11×11 Gaussian window (σ 1.5) and
/// data range 1: reflect-padded, then cropped back, so only windows wholly inside the image
/// count; mean over channels and positions. The window is applied separably, horizontal
/// then vertical, as the kernel does.
// Index loops mirror the kernel's indexing, which keeps the two easy to compare.
#[allow(clippy::needless_range_loop)]
fn ssim(views: &Views, a: usize, b: usize) -> f32 {
    let (w, h) = (views.width as usize, views.height as usize);
    let r = SSIM_WINDOW / 2;
    if w <= 2 * r || h <= 2 * r {
        return 1.0;
    }
    let win = ssim_window();
    let (pa, pb) = (views.view(a), views.view(b));
    let ow = w - 2 * r;
    let mut total = 0f64;
    for c in 0..3 {
        // Horizontal pass: five windowed sums per row, for output columns r..w-r.
        let rows: Vec<[Vec<f32>; 5]> = (0..h)
            .into_par_iter()
            .map(|y| {
                let mut out: [Vec<f32>; 5] = std::array::from_fn(|_| vec![0f32; ow]);
                for x in 0..ow {
                    let (mut m1, mut m2, mut s11, mut s22, mut s12) =
                        (0f32, 0f32, 0f32, 0f32, 0f32);
                    for (t, wt) in win.iter().enumerate() {
                        let k = y * w + x + t;
                        let (u, v) = (pa[k][c], pb[k][c]);
                        m1 += wt * u;
                        m2 += wt * v;
                        s11 += wt * u * u;
                        s22 += wt * v * v;
                        s12 += wt * u * v;
                    }
                    out[0][x] = m1;
                    out[1][x] = m2;
                    out[2][x] = s11;
                    out[3][x] = s22;
                    out[4][x] = s12;
                }
                out
            })
            .collect();
        // Vertical pass and the SSIM formula.
        total += (r..h - r)
            .into_par_iter()
            .map(|y| {
                let mut sum = 0f64;
                for x in 0..ow {
                    let mut q = [0f32; 5];
                    for (t, wt) in win.iter().enumerate() {
                        let row = &rows[y - r + t];
                        for (k, qk) in q.iter_mut().enumerate() {
                            *qk += wt * row[k][x];
                        }
                    }
                    let [m1, m2, s11, s22, s12] = q;
                    let (sx, sy, sxy) = (s11 - m1 * m1, s22 - m2 * m2, s12 - m1 * m2);
                    let s = ((2.0 * m1 * m2 + SSIM_C1) * (2.0 * sxy + SSIM_C2))
                        / ((m1 * m1 + m2 * m2 + SSIM_C1) * (sx + sy + SSIM_C2));
                    sum += f64::from(s);
                }
                sum
            })
            .sum::<f64>();
    }
    (total / (ow * (h - 2 * r) * 3) as f64) as f32
}
