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

/// Longest side of one view in the sheet: the validator's 518 px views are halved (a 4×4 sheet
/// of 1036 px). A sheet is for people; at full size its PNG encode cost the worker 60–200 ms
/// a task on the H200 bench (ops/BENCH.md), for detail nobody needs at a glance.
pub const PREVIEW_VIEW_MAX_PX: usize = 260;

/// Tiles `views` into a square-ish grid, each view box-filtered down by a whole factor to at
/// most [`PREVIEW_VIEW_MAX_PX`] a side, and encodes it as PNG.
pub fn contact_sheet_png(views: &Views) -> Result<Vec<u8>, PreviewError> {
    if views.views == 0 || views.width == 0 || views.height == 0 {
        return Err(PreviewError::NoViews);
    }
    let (full_w, full_h) = (views.width as usize, views.height as usize);
    let factor = full_w.max(full_h).div_ceil(PREVIEW_VIEW_MAX_PX).max(1);
    let (w, h) = ((full_w / factor).max(1), (full_h / factor).max(1));
    let columns = (views.views as f64).sqrt().ceil() as usize;
    let rows = views.views.div_ceil(columns);
    let sheet_width = columns * w;
    // White where no view falls, as the validator's background.
    let mut sheet = vec![255u8; sheet_width * rows * h * 3];
    let block = (factor * factor) as f32;
    for v in 0..views.views {
        let pixels = views.view(v);
        let (x0, y0) = ((v % columns) * w, (v / columns) * h);
        for y in 0..h {
            for x in 0..w {
                let mut sum = [0f32; 3];
                for dy in 0..factor {
                    let row = &pixels[(y * factor + dy) * full_w + x * factor..][..factor];
                    for p in row {
                        for c in 0..3 {
                            sum[c] += p[c];
                        }
                    }
                }
                let at = ((y0 + y) * sheet_width + x0 + x) * 3;
                for c in 0..3 {
                    // As `Views::rgb8` converts: scaled and truncated.
                    sheet[at + c] = ((sum[c] / block) * 255.0) as u8;
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn views(count: usize, side: u32, colour: impl Fn(usize, usize, usize) -> [f32; 4]) -> Views {
        let side_px = side as usize;
        let mut pixels = Vec::new();
        for v in 0..count {
            for y in 0..side_px {
                for x in 0..side_px {
                    pixels.push(colour(v, x, y));
                }
            }
        }
        Views {
            views: count,
            width: side,
            height: side,
            pixels,
        }
    }

    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("a frame");
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn the_validators_sixteen_views_of_518_make_a_4x4_sheet_of_259_px_views() {
        // Each view one flat grey, darker with its index: every tile keeps its own colour.
        let sheet = views(16, 518, |v, _, _| {
            let g = 1.0 - v as f32 / 20.0;
            [g, g, g, 1.0]
        });
        let (w, h, rgb) = decode(&contact_sheet_png(&sheet).expect("sheet"));
        assert_eq!((w, h), (4 * 259, 4 * 259));
        for v in 0..16 {
            let (x, y) = ((v % 4) * 259 + 100, (v / 4) * 259 + 100);
            let at = (y * w as usize + x) * 3;
            let want = ((1.0 - v as f32 / 20.0) * 255.0) as u8;
            assert!(
                rgb[at].abs_diff(want) <= 1,
                "view {v}: {} vs {want}",
                rgb[at]
            );
        }
    }

    #[test]
    fn a_view_is_box_filtered_and_a_small_one_is_kept_as_is() {
        // A 2-px checkerboard of black and white averages to mid grey when halved.
        let checker = views(1, 520, |_, x, y| {
            let on = ((x + y) % 2) as f32;
            [on, on, on, 1.0]
        });
        let (w, h, rgb) = decode(&contact_sheet_png(&checker).expect("sheet"));
        assert_eq!((w, h), (260, 260));
        assert!(rgb.iter().all(|&c| c == 127), "not averaged");
        // Views already small enough are tiled at their own size, pixel for pixel.
        let small = views(4, 64, |_, x, _| {
            let g = x as f32 / 64.0;
            [g, g, g, 1.0]
        });
        let (w, h, rgb) = decode(&contact_sheet_png(&small).expect("sheet"));
        assert_eq!((w, h), (128, 128));
        assert_eq!(rgb[3 * 10], ((10.0 / 64.0) * 255.0) as u8);
        assert!(contact_sheet_png(&views(0, 64, |_, _, _| [0.0; 4])).is_err());
    }
}
