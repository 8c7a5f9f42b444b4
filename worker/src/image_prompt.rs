//! The image-prompt check: before any GPU time is spent on an image task, its prompt must be
//! base64 of a PNG, JPEG or WebP of sane size. A broken prompt ends the task as an empty
//! result with the [`ImagePromptError`] as its reason.

use base64::Engine as _;

/// Largest decoded image accepted, bytes.
pub const MAX_IMAGE_BYTES: usize = 16 * 1024 * 1024;
/// Smallest plausible image file, bytes.
pub const MIN_IMAGE_BYTES: usize = 64;

/// Why an image prompt is not worth generating from.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImagePromptError {
    #[error("image prompt is {chars} characters of base64, over the {limit}-byte image limit")]
    TooLarge { chars: usize, limit: usize },
    #[error("image prompt is not valid base64: {0}")]
    NotBase64(String),
    #[error("image prompt decodes to {bytes} bytes, too small to be an image")]
    TooSmall { bytes: usize },
    #[error("image prompt is not a PNG, JPEG or WebP (starts with {magic})")]
    UnknownFormat { magic: String },
}

/// An image format the generation services accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Webp,
}

/// Checks that `prompt` is base64 of a PNG, JPEG or WebP between the size bounds.
pub fn check_image_prompt(prompt: &str) -> Result<ImageFormat, ImagePromptError> {
    let trimmed = prompt.trim();
    // Base64 is 4 characters per 3 bytes; refuse before decoding anything huge.
    if trimmed.len() / 4 * 3 > MAX_IMAGE_BYTES + 3 {
        return Err(ImagePromptError::TooLarge {
            chars: trimmed.len(),
            limit: MAX_IMAGE_BYTES,
        });
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(trimmed)
        .map_err(|e| ImagePromptError::NotBase64(e.to_string()))?;
    if bytes.len() < MIN_IMAGE_BYTES {
        return Err(ImagePromptError::TooSmall { bytes: bytes.len() });
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Ok(ImageFormat::Png)
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Ok(ImageFormat::Jpeg)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Ok(ImageFormat::Webp)
    } else {
        let magic = bytes[..8.min(bytes.len())]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        Err(ImagePromptError::UnknownFormat { magic })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn png_jpeg_and_webp_pass() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.resize(100, 0);
        assert_eq!(check_image_prompt(&b64(&png)), Ok(ImageFormat::Png));
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0];
        jpeg.resize(100, 0);
        assert_eq!(check_image_prompt(&b64(&jpeg)), Ok(ImageFormat::Jpeg));
        let mut webp = b"RIFF\0\0\0\0WEBPVP8 ".to_vec();
        webp.resize(100, 0);
        assert_eq!(check_image_prompt(&b64(&webp)), Ok(ImageFormat::Webp));
    }

    #[test]
    fn broken_prompts_are_named() {
        assert!(matches!(
            check_image_prompt("not base64 !!"),
            Err(ImagePromptError::NotBase64(_))
        ));
        assert!(matches!(
            check_image_prompt(&b64(b"tiny")),
            Err(ImagePromptError::TooSmall { bytes: 4 })
        ));
        assert!(matches!(
            check_image_prompt(&b64(&[7u8; 200])),
            Err(ImagePromptError::UnknownFormat { .. })
        ));
    }
}
