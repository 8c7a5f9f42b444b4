//! The element types the model files may hold and their conversion to `f32`: F32, F16, BF16
//! (and F64, narrowed), little-endian as both safetensors and torch (on x86/ARM) write them.

use half::{bf16, f16};

/// An element type the loader converts to `f32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    F32,
    F16,
    BF16,
    F64,
}

impl ElementType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::F64 => 8,
        }
    }

    /// `bytes` (exactly `numel × size` little-endian elements) as `f32`; `None` when the length
    /// does not match.
    pub fn decode(self, bytes: &[u8], numel: usize) -> Option<Vec<f32>> {
        if numel.checked_mul(self.size())? != bytes.len() {
            return None;
        }
        Some(match self {
            Self::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Self::F16 => bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Self::BF16 => bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Self::F64 => bytes
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
        })
    }
}
