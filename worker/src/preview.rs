//! The contact sheet people look at: the gate's views tiled into a grid (4×4 for the
//! validator's 16) and encoded as an 8-bit RGB PNG.

use splatfleet_kernels::Views;

/// Why a preview could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("no views to tile")]
    NoViews,
    #[error("PNG encoding failed: {0}")]
    Png(#[from] png::EncodingError),
}

/// Tiles `views` into a square-ish grid and encodes it as PNG.
pub fn contact_sheet_png(views: &Views) -> Result<Vec<u8>, PreviewError> {
    if views.views == 0 || views.width == 0 || views.height == 0 {
        return Err(PreviewError::NoViews);
    }
    let columns = (views.views as f64).sqrt().ceil() as usize;
    let rows = views.views.div_ceil(columns);
    let (w, h) = (views.width as usize, views.height as usize);
    let sheet_width = columns * w;
    // White where no view falls, as the validator's background.
    let mut sheet = vec![255u8; sheet_width * rows * h * 3];
    for v in 0..views.views {
        let rgb = views.rgb8(v);
        let (x0, y0) = ((v % columns) * w, (v / columns) * h);
        for y in 0..h {
            let src = &rgb[y * w * 3..(y + 1) * w * 3];
            let start = ((y0 + y) * sheet_width + x0) * 3;
            sheet[start..start + w * 3].copy_from_slice(src);
        }
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, sheet_width as u32, (rows * h) as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&sheet)?;
    }
    Ok(out)
}
