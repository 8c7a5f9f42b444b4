//! What the gate reads off the rendered views: per-view silhouette coverage and bounding box,
//! sharpness inside the silhouette, colour statistics, SSIM between adjacent views, and the
//! model's floater fraction. Both backends fill the same struct.

/// Measurements of one view.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ViewMetrics {
    /// Fraction of pixels whose alpha reaches `SILHOUETTE_ALPHA`.
    pub coverage: f32,
    /// Silhouette bounding box in pixels `(x0, y0, x1, y1)`, inclusive; all −1 when empty.
    pub bbox: [i32; 4],
    /// Variance of the 4-neighbour Laplacian of luminance over interior silhouette pixels.
    pub sharpness: f32,
    /// Mean RGB inside the silhouette.
    pub mean_rgb: [f32; 3],
    /// Mean HSV saturation inside the silhouette.
    pub saturation: f32,
}

impl ViewMetrics {
    /// Silhouette pixels over bounding-box pixels for a `width`×`height` view: near 1 for a
    /// solid object, low for a model with holes (sparse, wiry); 0 for an empty view.
    pub fn fill(&self, width: u32, height: u32) -> f32 {
        let [x0, y0, x1, y1] = self.bbox;
        if x0 < 0 || y0 < 0 || x1 < x0 || y1 < y0 {
            return 0.0;
        }
        let box_pixels = (f64::from(x1 - x0) + 1.0) * (f64::from(y1 - y0) + 1.0);
        let silhouette = f64::from(self.coverage) * f64::from(width) * f64::from(height);
        (silhouette / box_pixels).clamp(0.0, 1.0) as f32
    }
}

/// Measurements of a whole render.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metrics {
    pub views: Vec<ViewMetrics>,
    /// SSIM of view `i` against view `i + 1` (torchmetrics conventions on RGB).
    pub adjacent_ssim: Vec<f32>,
    /// Fraction of gaussians far outside the main mass.
    pub floater_fraction: f32,
}

impl Metrics {
    pub fn mean_coverage(&self) -> f32 {
        mean(self.views.iter().map(|v| v.coverage))
    }

    /// Mean [`ViewMetrics::fill`] over the views.
    pub fn mean_fill(&self, width: u32, height: u32) -> f32 {
        mean(self.views.iter().map(|v| v.fill(width, height)))
    }

    pub fn mean_sharpness(&self) -> f32 {
        mean(self.views.iter().map(|v| v.sharpness))
    }

    pub fn mean_adjacent_ssim(&self) -> f32 {
        mean(self.adjacent_ssim.iter().copied())
    }

    /// Every number as `(name, value)`, for records and for comparing backends.
    pub fn flatten(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for (i, v) in self.views.iter().enumerate() {
            out.push((format!("view{i}.coverage"), f64::from(v.coverage)));
            for (k, b) in v.bbox.iter().enumerate() {
                out.push((format!("view{i}.bbox{k}"), f64::from(*b)));
            }
            out.push((format!("view{i}.sharpness"), f64::from(v.sharpness)));
            for (k, c) in v.mean_rgb.iter().enumerate() {
                out.push((format!("view{i}.mean_rgb{k}"), f64::from(*c)));
            }
            out.push((format!("view{i}.saturation"), f64::from(v.saturation)));
        }
        for (i, s) in self.adjacent_ssim.iter().enumerate() {
            out.push((format!("ssim{i}"), f64::from(*s)));
        }
        out.push(("floater_fraction".into(), f64::from(self.floater_fraction)));
        out
    }
}

fn mean(values: impl Iterator<Item = f32>) -> f32 {
    let (sum, n) = values.fold((0f64, 0usize), |(s, n), v| (s + f64::from(v), n + 1));
    if n == 0 {
        0.0
    } else {
        (sum / n as f64) as f32
    }
}
