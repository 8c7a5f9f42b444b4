//! The images the scorer reads: each view as 8-bit RGB, height × width × 3, truncated from
//! the render as the validator's `(img * 255).to(torch.uint8)` truncates (`VALIDATOR_SCORING.md` §3).

use crate::views::Views;

/// `views` images of `width × height` pixels, HWC `u8`, view-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreImages {
    pub views: usize,
    pub width: u32,
    pub height: u32,
    pub rgb8: Vec<u8>,
}

impl ScoreImages {
    /// The validator's 8-bit images of a render.
    pub fn from_views(views: &Views) -> Self {
        let rgb8 = (0..views.views).flat_map(|v| views.rgb8(v)).collect();
        Self {
            views: views.views,
            width: views.width,
            height: views.height,
            rgb8,
        }
    }

    pub fn pixels_per_view(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// View `v`, HWC.
    pub fn view(&self, v: usize) -> &[u8] {
        let n = self.pixels_per_view() * 3;
        &self.rgb8[v * n..(v + 1) * n]
    }
}
