//! Rendered images: per view, per pixel, RGB composited over the white background and
//! clipped to [0, 1] as the validator clips them, plus the accumulated alpha.

/// `views × height × width` pixels, each `[r, g, b, alpha]`, view-major then row-major.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Views {
    pub views: usize,
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<[f32; 4]>,
}

impl Views {
    pub fn pixels_per_view(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// One view's pixels.
    pub fn view(&self, v: usize) -> &[[f32; 4]] {
        let n = self.pixels_per_view();
        &self.pixels[v * n..(v + 1) * n]
    }

    /// PSNR (dB) of view `v` against the same view of `other`, over RGB and alpha, peak 1.
    pub fn psnr(&self, other: &Views, v: usize) -> f64 {
        let (a, b) = (self.view(v), other.view(v));
        let mse: f64 = a
            .iter()
            .zip(b)
            .map(|(p, q)| {
                (0..4)
                    .map(|c| (f64::from(p[c]) - f64::from(q[c])).powi(2))
                    .sum::<f64>()
            })
            .sum::<f64>()
            / (a.len() as f64 * 4.0);
        if mse == 0.0 {
            f64::INFINITY
        } else {
            -10.0 * mse.log10()
        }
    }

    /// View `v` as 8-bit RGB, truncated as the validator's `(img * 255).to(torch.uint8)`.
    pub fn rgb8(&self, v: usize) -> Vec<u8> {
        self.view(v)
            .iter()
            .flat_map(|p| [p[0], p[1], p[2]].map(|c| (c * 255.0) as u8))
            .collect()
    }
}
