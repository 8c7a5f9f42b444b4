//! The image task's prompt: base64 text → the 8-bit RGB pixels the validation service feeds
//! its alignment model (`validation/server/pipeline.py:102-108` at 5fc61f1):
//! `pybase64.b64decode(text)` (not strict), `PIL.Image.open`, `add_white_background` when the
//! image has exactly four bands (`gs_data_checker_utils.py:88-93`: `Image.alpha_composite`
//! of the image over opaque white), then `.convert("RGB")`, at its native size (the resize to
//! 336 happens later, on the tensor: [`super::vit::preprocess`]).
//!
//! Followed: pybase64 1.4.0 `_pybase64.c` (`decode_novalidate`) and Pillow 10.0.0
//! (`PngImagePlugin._MODES`, `libImaging/AlphaComposite.c`, `Convert.c` `i2rgb`, `la2rgb`,
//! `p2rgb`, `bit2rgb`, `Palette.c` `ImagingPaletteNew`, `Unpack.c`). What PIL does per PNG
//! kind, and so what this does:
//! - 1-bit grey (mode `1`): 0 or 255; 2/4/8-bit grey (`L`): the value scaled to 8 bits
//!   (×85, ×17, ×1); 16-bit grey (mode `I`): the value clipped to 0..=255 (not scaled: a
//!   16-bit grey PNG is mostly white after PIL's `convert("RGB")`).
//! - RGB 8/16-bit: 16-bit keeps the high byte. Palette: the PLTE colour; indices past the
//!   PLTE are PIL's grey ramp (i, i, i). `tRNS` is ignored (these modes have 1 or 3 bands).
//! - grey+alpha 8-bit (`LA`, two bands): the grey, alpha dropped, no compositing; grey+alpha
//!   16-bit (PIL makes it `RGBA`) and RGBA 8/16-bit (high bytes): composited over white.
//! - JPEG (zune-jpeg): RGB or grey; CMYK/YCCK JPEGs are refused (PIL would convert them
//!   through its own CMYK arithmetic). WebP (image-webp): RGB, or RGBA composited.
//! - Other formats PIL opens (GIF, BMP, TIFF, ...) are refused with a typed error.
//!
//! Pixel parity: PNG and the compositing are exact; lossless WebP is exact; JPEG and lossy
//! WebP go through different IDCT / colour-conversion code than libjpeg-turbo / libwebp and
//! may differ by a few levels per pixel.
//!
//! Bounds (bad input never panics and never allocates without limit): at most
//! [`MAX_PROMPT_BASE64_LEN`] characters of text and [`MAX_PROMPT_PIXELS`] pixels (PIL itself
//! refuses only above 2 × 89,478,485 pixels; prompt images are far smaller, and a larger one
//! gets a typed error here where the service would score it).

use std::io::Cursor;

/// The longest base64 text accepted (64 MiB; a 4096² RGBA PNG is at most ~85 MiB of base64
/// uncompressed, real prompts are a few hundred KiB).
pub const MAX_PROMPT_BASE64_LEN: usize = 64 << 20;
/// The most pixels accepted (4096 × 4096).
pub const MAX_PROMPT_PIXELS: u64 = 4096 * 4096;

/// Why a prompt image could not be read; the service scores all of these 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptImageError {
    #[error("prompt image: {len} characters of base64, more than the {max} accepted")]
    TooLong { len: usize, max: usize },
    #[error("prompt image: character {position} is not Latin-1 (pybase64 raises ValueError)")]
    NotAscii { position: usize },
    #[error("prompt image: base64 has incorrect padding (pybase64 raises binascii.Error)")]
    Base64Padding,
    #[error("prompt image: empty after base64 decoding")]
    Empty,
    #[error("prompt image: not an image PIL would open (first bytes {magic})")]
    NotAnImage { magic: String },
    #[error("prompt image: {format} is not supported here: {detail}")]
    Unsupported {
        format: &'static str,
        detail: String,
    },
    #[error("prompt image: corrupt {format}: {detail}")]
    Corrupt {
        format: &'static str,
        detail: String,
    },
    #[error("prompt image: zero size ({width}×{height})")]
    ZeroSize { width: u64, height: u64 },
    #[error("prompt image: {width}×{height} is more than the {max} pixels accepted")]
    TooManyPixels { width: u64, height: u64, max: u64 },
}

/// The prompt image as the service holds it before preprocessing: HWC 8-bit RGB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptImage {
    pub width: usize,
    pub height: usize,
    pub rgb8: Vec<u8>,
}

/// pybase64's decoding table: 0..=63 for the alphabet, [`PAD`] for `=`, [`SKIP`] otherwise.
const PAD: u8 = 254;
const SKIP: u8 = 255;

fn sextet(c: u8) -> u8 {
    match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        b'=' => PAD,
        _ => SKIP,
    }
}

/// `pybase64.b64decode(text)` with `validate=False`, as its `decode_novalidate` does:
/// characters outside the alphabet (whitespace, `-`, `_`, non-ASCII Latin-1) are skipped; a
/// `=` ends the data when it comes third in a quad followed (after skipped characters) by a
/// second `=`, or when it comes fourth; a `=` earlier in a quad is skipped; input ending
/// inside a quad (one, two or three data characters without their padding) is "Incorrect
/// padding". A `str` holding a character above U+00FF is a ValueError there
/// ([`PromptImageError::NotAscii`]).
pub fn pybase64_decode(text: &str) -> Result<Vec<u8>, PromptImageError> {
    if text.len() > MAX_PROMPT_BASE64_LEN {
        return Err(PromptImageError::TooLong {
            len: text.len(),
            max: MAX_PROMPT_BASE64_LEN,
        });
    }
    // CPython hands pybase64 a Latin-1 buffer when every character fits in a byte.
    let mut bytes = Vec::with_capacity(text.len());
    for (position, ch) in text.chars().enumerate() {
        let code = u32::from(ch);
        if code > 0xFF {
            return Err(PromptImageError::NotAscii { position });
        }
        bytes.push(code as u8);
    }
    let table: Vec<u8> = bytes.iter().map(|&c| sextet(c)).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 3);
    let mut i = 0;
    let n = table.len();
    // The next non-skipped table value from `from`, if any.
    let next_valid = |from: usize| table[from..].iter().copied().find(|&q| q != SKIP);
    'quads: while i < n {
        // First character of a quad: pads and junk are skipped.
        let q0 = table[i];
        i += 1;
        if q0 >= PAD {
            continue;
        }
        let mut carry = u32::from(q0) << 2;
        // Second.
        loop {
            let Some(&q) = table.get(i) else {
                return Err(PromptImageError::Base64Padding);
            };
            i += 1;
            if q >= PAD {
                continue;
            }
            // The C code keeps `carry` in a byte; the truncation at the push is the same.
            out.push((carry | u32::from(q >> 4)) as u8);
            carry = u32::from(q) << 4;
            break;
        }
        // Third: `==` ends the data.
        loop {
            let Some(&q) = table.get(i) else {
                return Err(PromptImageError::Base64Padding);
            };
            i += 1;
            if q >= PAD {
                if q == PAD && next_valid(i) == Some(PAD) {
                    break 'quads;
                }
                continue;
            }
            out.push((carry | u32::from(q >> 2)) as u8);
            carry = u32::from(q) << 6;
            break;
        }
        // Fourth: `=` ends the data.
        loop {
            let Some(&q) = table.get(i) else {
                return Err(PromptImageError::Base64Padding);
            };
            i += 1;
            if q >= PAD {
                if q == PAD {
                    break 'quads;
                }
                continue;
            }
            out.push((carry | u32::from(q)) as u8);
            break;
        }
    }
    Ok(out)
}

fn check_size(width: u64, height: u64) -> Result<(), PromptImageError> {
    if width == 0 || height == 0 {
        return Err(PromptImageError::ZeroSize { width, height });
    }
    if width.saturating_mul(height) > MAX_PROMPT_PIXELS {
        return Err(PromptImageError::TooManyPixels {
            width,
            height,
            max: MAX_PROMPT_PIXELS,
        });
    }
    Ok(())
}

/// One RGBA pixel over opaque white, as `Image.alpha_composite(white, im)` computes it
/// (AlphaComposite.c, integer arithmetic with 7 extra bits, rounded divisions by 255).
pub fn composite_over_white(rgba: [u8; 4]) -> [u8; 3] {
    const PRECISION_BITS: u32 = 7;
    let [r, g, b, a] = rgba.map(u32::from);
    if a == 0 {
        return [255; 3];
    }
    let (dst_c, dst_a) = (255u32, 255u32);
    let blend = dst_a * (255 - a);
    let outa255 = a * 255 + blend;
    let coef1 = a * 255 * 255 * (1 << PRECISION_BITS) / outa255;
    let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
    let shift_div255 = |v: u32| ((v >> 8) + v) >> 8;
    let channel = |c: u32| {
        let tmp = c * coef1 + dst_c * coef2;
        (shift_div255(tmp + (0x80 << PRECISION_BITS)) >> PRECISION_BITS) as u8
    };
    [channel(r), channel(g), channel(b)]
}

impl PromptImage {
    /// The service's pixels of a base64 prompt.
    pub fn from_base64(text: &str) -> Result<Self, PromptImageError> {
        Self::from_bytes(&pybase64_decode(text)?)
    }

    /// The service's pixels of an encoded image (PNG, JPEG or WebP).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PromptImageError> {
        if bytes.is_empty() {
            return Err(PromptImageError::Empty);
        }
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            decode_png(bytes)
        } else if bytes.starts_with(b"\xFF\xD8\xFF") {
            decode_jpeg(bytes)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            decode_webp(bytes)
        } else {
            let format = if bytes.starts_with(b"GIF8") {
                Some("GIF")
            } else if bytes.starts_with(b"BM") {
                Some("BMP")
            } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
                Some("TIFF")
            } else {
                None
            };
            match format {
                Some(format) => Err(PromptImageError::Unsupported {
                    format,
                    detail: "only PNG, JPEG and WebP prompt images are read".into(),
                }),
                None => Err(PromptImageError::NotAnImage {
                    magic: bytes.iter().take(8).map(|b| format!("{b:02x}")).collect(),
                }),
            }
        }
    }

    pub fn pixels(&self) -> usize {
        self.width * self.height
    }
}

fn corrupt_png(e: impl std::fmt::Display) -> PromptImageError {
    PromptImageError::Corrupt {
        format: "PNG",
        detail: e.to_string(),
    }
}

fn decode_png(bytes: &[u8]) -> Result<PromptImage, PromptImageError> {
    use png::{BitDepth, ColorType, Transformations};
    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        // The largest accepted frame: 4096² RGBA at 16 bits, plus slack for row filters.
        png::Limits {
            bytes: (MAX_PROMPT_PIXELS as usize) * 8 + (1 << 20),
        },
    );
    // Raw samples: palette indices, packed low bit depths and 16-bit big-endian values are
    // mapped here, as PIL maps them.
    decoder.set_transformations(Transformations::IDENTITY);
    let header = decoder.read_header_info().map_err(corrupt_png)?;
    check_size(u64::from(header.width), u64::from(header.height))?;
    let mut reader = decoder.read_info().map_err(corrupt_png)?;
    let palette: Vec<u8> = reader
        .info()
        .palette
        .as_ref()
        .map(|p| p.to_vec())
        .unwrap_or_default();
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).map_err(corrupt_png)?;
    let (w, h) = (frame.width as usize, frame.height as usize);
    let line = frame.line_size;
    let (color, depth) = (frame.color_type, frame.bit_depth);
    let bits = depth as usize;
    let mut rgb8 = Vec::with_capacity(w * h * 3);
    for row in buf.chunks(line).take(h) {
        // Sample `i` of this row (low bit depths packed most significant first).
        let packed = |i: usize| -> u8 {
            let per_byte = 8 / bits;
            let byte = row.get(i / per_byte).copied().unwrap_or(0);
            let shift = 8 - bits * (i % per_byte + 1);
            (byte >> shift) & ((1u16 << bits) - 1) as u8
        };
        let wide = |i: usize| -> u16 {
            u16::from_be_bytes([
                row.get(2 * i).copied().unwrap_or(0),
                row.get(2 * i + 1).copied().unwrap_or(0),
            ])
        };
        // 8-bit sample `i`, or the high byte of a 16-bit one (PIL's `;16B` unpackers).
        let high = |i: usize| -> u8 {
            match depth {
                BitDepth::Sixteen => row.get(2 * i).copied().unwrap_or(0),
                _ => row.get(i).copied().unwrap_or(0),
            }
        };
        for x in 0..w {
            let px: [u8; 3] = match color {
                ColorType::Grayscale => match depth {
                    BitDepth::One => [if packed(x) == 0 { 0 } else { 255 }; 3],
                    BitDepth::Two => [packed(x) * 0x55; 3],
                    BitDepth::Four => [packed(x) * 0x11; 3],
                    BitDepth::Eight => [high(x); 3],
                    // Mode "I", then `i2rgb`: clipped, not scaled.
                    BitDepth::Sixteen => [wide(x).min(255) as u8; 3],
                },
                ColorType::Rgb => [high(3 * x), high(3 * x + 1), high(3 * x + 2)],
                ColorType::Indexed => {
                    let index = if bits < 8 { packed(x) } else { high(x) };
                    let k = usize::from(index) * 3;
                    match palette.get(k..k + 3) {
                        Some(c) => [c[0], c[1], c[2]],
                        // Past the PLTE: PIL's palette starts as a grey ramp.
                        None => [index; 3],
                    }
                }
                ColorType::GrayscaleAlpha => match depth {
                    // PIL "LA": two bands, no compositing, `la2rgb` drops alpha.
                    BitDepth::Eight => [high(2 * x); 3],
                    // PIL reads it as "RGBA" (LA;16B): four bands, composited.
                    _ => {
                        let v = high(2 * x);
                        composite_over_white([v, v, v, high(2 * x + 1)])
                    }
                },
                ColorType::Rgba => composite_over_white([
                    high(4 * x),
                    high(4 * x + 1),
                    high(4 * x + 2),
                    high(4 * x + 3),
                ]),
            };
            rgb8.extend_from_slice(&px);
        }
    }
    if rgb8.len() != w * h * 3 {
        return Err(corrupt_png("image data shorter than its header says"));
    }
    Ok(PromptImage {
        width: w,
        height: h,
        rgb8,
    })
}

fn decode_jpeg(bytes: &[u8]) -> Result<PromptImage, PromptImageError> {
    use zune_core::{colorspace::ColorSpace, options::DecoderOptions};
    use zune_jpeg::JpegDecoder;
    let corrupt = |e: &dyn std::fmt::Debug| PromptImageError::Corrupt {
        format: "JPEG",
        detail: format!("{e:?}"),
    };
    let options = DecoderOptions::default()
        .set_max_width(1 << 16)
        .set_max_height(1 << 16);
    let mut decoder = JpegDecoder::new_with_options(bytes, options);
    decoder.decode_headers().map_err(|e| corrupt(&e))?;
    let info = decoder.info().ok_or_else(|| corrupt(&"no header"))?;
    check_size(u64::from(info.width), u64::from(info.height))?;
    let input = decoder
        .get_input_colorspace()
        .ok_or_else(|| corrupt(&"no colour space"))?;
    let out = match input {
        ColorSpace::Luma => ColorSpace::Luma,
        ColorSpace::RGB | ColorSpace::YCbCr => ColorSpace::RGB,
        other => {
            return Err(PromptImageError::Unsupported {
                format: "JPEG",
                detail: format!("{other:?} colour (PIL converts CMYK with its own arithmetic)"),
            })
        }
    };
    decoder.set_options(options.jpeg_set_out_colorspace(out));
    let pixels = decoder.decode().map_err(|e| corrupt(&e))?;
    let (w, h) = (usize::from(info.width), usize::from(info.height));
    let rgb8: Vec<u8> = match out {
        ColorSpace::Luma => pixels.iter().flat_map(|&v| [v; 3]).collect(),
        _ => pixels,
    };
    if rgb8.len() != w * h * 3 {
        return Err(corrupt(&"decoded size does not match the header"));
    }
    Ok(PromptImage {
        width: w,
        height: h,
        rgb8,
    })
}

fn decode_webp(bytes: &[u8]) -> Result<PromptImage, PromptImageError> {
    let corrupt = |e: image_webp::DecodingError| PromptImageError::Corrupt {
        format: "WebP",
        detail: e.to_string(),
    };
    let mut decoder = image_webp::WebPDecoder::new(Cursor::new(bytes)).map_err(corrupt)?;
    let (w, h) = decoder.dimensions();
    check_size(u64::from(w), u64::from(h))?;
    let size = decoder
        .output_buffer_size()
        .ok_or_else(|| PromptImageError::Corrupt {
            format: "WebP",
            detail: "image size overflows".into(),
        })?;
    let mut buf = vec![0u8; size];
    // The first frame of an animation, as PIL's `open` shows it.
    decoder.read_image(&mut buf).map_err(corrupt)?;
    let (w, h) = (w as usize, h as usize);
    let rgb8: Vec<u8> = if decoder.has_alpha() {
        buf.chunks_exact(4)
            .flat_map(|p| composite_over_white([p[0], p[1], p[2], p[3]]))
            .collect()
    } else {
        buf
    };
    if rgb8.len() != w * h * 3 {
        return Err(PromptImageError::Corrupt {
            format: "WebP",
            detail: "decoded size does not match the header".into(),
        });
    }
    Ok(PromptImage {
        width: w,
        height: h,
        rgb8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(data: &[u8]) -> String {
        // Plain RFC 4648 with padding (the test's own encoder).
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in data.chunks(3) {
            let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for k in 0..4 {
                if k <= c.len() {
                    s.push(A[((n >> (18 - 6 * k)) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }

    #[test]
    fn base64_matches_pybase64_non_strict() {
        assert_eq!(pybase64_decode("QUJD").expect("full quad"), b"ABC");
        assert_eq!(pybase64_decode("QQ==").expect("=="), b"A");
        assert_eq!(pybase64_decode("QUI=").expect("="), b"AB");
        // Junk and whitespace are skipped, data after the closing padding is ignored.
        assert_eq!(pybase64_decode("Q U\nJ\tD").expect("spaces"), b"ABC");
        assert_eq!(pybase64_decode("QUI=QUJD").expect("after pad"), b"AB");
        assert_eq!(pybase64_decode("QQ==QUJD").expect("after =="), b"A");
        // A lone `=` early in a quad is skipped.
        assert_eq!(pybase64_decode("=QUJD").expect("leading pad"), b"ABC");
        assert_eq!(pybase64_decode("QQ=Q=").expect("= then data"), b"A\x04");
        // Missing padding is an error, as is a dangling character.
        for bad in ["QQ", "QUI", "Q", "QUJDQ"] {
            assert_eq!(
                pybase64_decode(bad),
                Err(PromptImageError::Base64Padding),
                "{bad}"
            );
        }
        // Latin-1 characters are skipped, anything wider is a ValueError.
        assert_eq!(pybase64_decode("QU\u{e9}JD").expect("latin-1"), b"ABC");
        assert_eq!(
            pybase64_decode("QU\u{20ac}JD"),
            Err(PromptImageError::NotAscii { position: 2 })
        );
        assert_eq!(pybase64_decode("").expect("empty"), b"");
        let data: Vec<u8> = (0..=255u8).collect();
        assert_eq!(pybase64_decode(&encode(&data)).expect("round trip"), data);
    }

    #[test]
    fn compositing_over_white_matches_pillow_s_integer_arithmetic() {
        assert_eq!(composite_over_white([10, 20, 30, 0]), [255, 255, 255]);
        assert_eq!(composite_over_white([10, 20, 30, 255]), [10, 20, 30]);
        // a = 128: coef1 = 16384, coef2 = 16256; r = 0: (255·16256 + 16384) → 127.
        assert_eq!(composite_over_white([0, 255, 100, 128]), [127, 255, 177]);
        for a in 0..=255u8 {
            for c in [0u8, 1, 77, 128, 254, 255] {
                let got = composite_over_white([c, c, c, a])[0];
                let exact = (f64::from(c) * f64::from(a) + 255.0 * (255.0 - f64::from(a))) / 255.0;
                assert!(
                    (f64::from(got) - exact).abs() <= 1.0,
                    "c {c} a {a}: {got} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn not_an_image_and_empty_are_typed() {
        assert_eq!(PromptImage::from_bytes(b""), Err(PromptImageError::Empty));
        assert!(matches!(
            PromptImage::from_bytes(b"hello world"),
            Err(PromptImageError::NotAnImage { .. })
        ));
        assert!(matches!(
            PromptImage::from_bytes(b"GIF89a...."),
            Err(PromptImageError::Unsupported { format: "GIF", .. })
        ));
        assert!(matches!(
            PromptImage::from_bytes(b"\x89PNG\r\n\x1a\nrest"),
            Err(PromptImageError::Corrupt { format: "PNG", .. })
        ));
        assert!(matches!(
            PromptImage::from_bytes(b"\xFF\xD8\xFF\xE0garbage"),
            Err(PromptImageError::Corrupt { format: "JPEG", .. })
        ));
        assert!(matches!(
            PromptImage::from_bytes(b"RIFF\x10\0\0\0WEBPVP8 xxxx"),
            Err(PromptImageError::Corrupt { format: "WebP", .. })
        ));
    }

    /// A PNG of `color`/`depth` with raw (already packed) rows, and an optional palette.
    fn png_bytes(
        w: u32,
        h: u32,
        color: png::ColorType,
        depth: png::BitDepth,
        palette: Option<&[u8]>,
        trns: Option<&[u8]>,
        data: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut e = png::Encoder::new(&mut out, w, h);
            e.set_color(color);
            e.set_depth(depth);
            if let Some(p) = palette {
                e.set_palette(p.to_vec());
            }
            if let Some(t) = trns {
                e.set_trns(t.to_vec());
            }
            let mut wr = e.write_header().expect("header");
            wr.write_image_data(data).expect("data");
        }
        out
    }

    fn decode(bytes: &[u8]) -> PromptImage {
        PromptImage::from_base64(&encode(bytes)).expect("decodes")
    }

    #[test]
    fn rgba_png_is_composited_over_white_and_16_bit_keeps_the_high_byte() {
        use png::{BitDepth::*, ColorType::*};
        let px = [0u8, 255, 100, 128, 10, 20, 30, 0];
        let img = decode(&png_bytes(2, 1, Rgba, Eight, None, None, &px));
        assert_eq!((img.width, img.height), (2, 1));
        assert_eq!(img.rgb8, [127, 255, 177, 255, 255, 255]);
        let px16 = [0u8, 9, 255, 9, 100, 9, 128, 9];
        let img = decode(&png_bytes(1, 1, Rgba, Sixteen, None, None, &px16));
        assert_eq!(img.rgb8, [127, 255, 177]);
        // Grey + alpha: 8-bit is PIL "LA" (alpha dropped), 16-bit is PIL "RGBA" (composited).
        let img = decode(&png_bytes(
            1,
            1,
            GrayscaleAlpha,
            Eight,
            None,
            None,
            &[40, 0],
        ));
        assert_eq!(img.rgb8, [40, 40, 40]);
        let la16 = [40u8, 1, 0, 1];
        let img = decode(&png_bytes(1, 1, GrayscaleAlpha, Sixteen, None, None, &la16));
        assert_eq!(img.rgb8, [255, 255, 255]);
    }

    #[test]
    fn palette_png_reads_the_plte_and_ignores_trns() {
        use png::{BitDepth::*, ColorType::*};
        let plte = [10u8, 20, 30, 200, 100, 50];
        // 2-bit indices 0, 1, 3 (3 is past the PLTE: PIL's grey ramp).
        let row = [0b0001_1100u8];
        let img = decode(&png_bytes(
            3,
            1,
            Indexed,
            Two,
            Some(&plte),
            Some(&[0, 0]),
            &row,
        ));
        assert_eq!(img.rgb8, [10, 20, 30, 200, 100, 50, 3, 3, 3]);
        let img = decode(&png_bytes(2, 1, Indexed, Eight, Some(&plte), None, &[1, 0]));
        assert_eq!(img.rgb8, [200, 100, 50, 10, 20, 30]);
    }

    #[test]
    fn grayscale_png_scales_low_depths_and_clips_16_bit() {
        use png::{BitDepth::*, ColorType::*};
        let img = decode(&png_bytes(2, 1, Grayscale, One, None, None, &[0b0100_0000]));
        assert_eq!(img.rgb8, [0, 0, 0, 255, 255, 255]);
        let img = decode(&png_bytes(2, 1, Grayscale, Four, None, None, &[0x3f]));
        assert_eq!(img.rgb8, [51, 51, 51, 255, 255, 255]);
        let img = decode(&png_bytes(2, 1, Grayscale, Eight, None, None, &[7, 250]));
        assert_eq!(img.rgb8, [7, 7, 7, 250, 250, 250]);
        // Mode "I" then i2rgb: 200 stays 200, 256 and above are 255.
        let img = decode(&png_bytes(
            2,
            1,
            Grayscale,
            Sixteen,
            None,
            None,
            &[0, 200, 1, 0],
        ));
        assert_eq!(img.rgb8, [200, 200, 200, 255, 255, 255]);
        let rgb16 = [1u8, 2, 3, 4, 5, 6];
        let img = decode(&png_bytes(1, 1, Rgb, Sixteen, None, None, &rgb16));
        assert_eq!(img.rgb8, [1, 3, 5]);
    }

    #[test]
    fn oversize_and_corrupt_png_are_typed() {
        let mut out = Vec::new();
        {
            let e = png::Encoder::new(&mut out, 5000, 4000);
            // Header only: the size check comes before any pixel data is read.
            let _ = e.write_header().expect("header");
        }
        assert_eq!(
            PromptImage::from_bytes(&out),
            Err(PromptImageError::TooManyPixels {
                width: 5000,
                height: 4000,
                max: MAX_PROMPT_PIXELS
            })
        );
        let good = png_bytes(
            2,
            2,
            png::ColorType::Rgb,
            png::BitDepth::Eight,
            None,
            None,
            &[9; 12],
        );
        let truncated = &good[..good.len() - 20];
        assert!(matches!(
            PromptImage::from_bytes(truncated),
            Err(PromptImageError::Corrupt { format: "PNG", .. })
        ));
        assert_eq!(
            PromptImage::from_base64("not base64!"),
            Err(PromptImageError::Base64Padding)
        );
    }

    #[test]
    fn lossless_webp_with_alpha_is_composited() {
        let rgba = [0u8, 255, 100, 128, 1, 2, 3, 255];
        let mut out = Vec::new();
        image_webp::WebPEncoder::new(&mut out)
            .encode(&rgba, 2, 1, image_webp::ColorType::Rgba8)
            .expect("encode");
        let img = decode(&out);
        assert_eq!(img.rgb8, [127, 255, 177, 1, 2, 3]);
        let mut out = Vec::new();
        image_webp::WebPEncoder::new(&mut out)
            .encode(&[5, 6, 7], 1, 1, image_webp::ColorType::Rgb8)
            .expect("encode");
        assert_eq!(decode(&out).rgb8, [5, 6, 7]);
    }
}
