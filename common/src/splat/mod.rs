//! Gaussian-splat models in memory and on the wire: the [`Splat`] struct-of-arrays, the
//! strict PLY reader and the reference-order PLY writer, SN17's SPZ (zstd-wrapped version 2)
//! plus Niantic's gzip-wrapped SPZ versions 2 and 3, and the one-pass [`ValidityReport`]
//! that mirrors the validator's hard-zero rules.
//!
//! Every byte that reaches this module is untrusted: sizes are checked before anything is
//! allocated, and every rejection is a typed error whose message names the offending field.

mod ply_read;
mod ply_write;
mod sn17;
mod spz;
mod stats;

#[cfg(test)]
mod tests;

pub use ply_read::{read_ply, read_ply_file, read_ply_into, PlyDecoded, PlyError, PlyLimits};
pub use ply_write::{write_ply, write_ply_into};
pub use sn17::{sn17_strict_check, Sn17PlyReport, Sn17Problem, SN17_PLY_MAX_VERTICES};
pub use spz::{
    decode_spz, encode_spz, encode_spz_with_level, spz_payload, SpzContainer, SpzDecoded, SpzError,
    SpzLimits, SN17_SPZ_MAX_POINTS,
};
pub use stats::{HardZero, NonFinite, ValidityReport, MIN_GAUSSIANS, ZERO_OPACITY_EPSILON};

/// Number of higher-order SH coefficients per colour channel for an SH degree
/// (0 → 0, 1 → 3, 2 → 8, 3 → 15). `None` for degrees above 3.
pub const fn sh_rest_coeffs(degree: u8) -> Option<usize> {
    match degree {
        0 => Some(0),
        1 => Some(3),
        2 => Some(8),
        3 => Some(15),
        _ => None,
    }
}

/// A Gaussian-splat model as struct-of-arrays, in the PLY's own (pre-activation) units:
/// opacity logits, log scales and unnormalised `w, x, y, z` quaternions.
///
/// Higher SH coefficients are stored coefficient-major: for gaussian `i`, coefficient `k`
/// (0-based, `k < sh_rest_coeffs(sh_degree)`) and channel `c` (0 = R, 1 = G, 2 = B) the value
/// is `sh_rest[(i * K + k) * 3 + c]`. PLY files store them channel-major
/// (`f_rest_{c * K + k}`); the reader and writer convert.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Splat {
    /// SH degree, 0..=3.
    pub sh_degree: u8,
    /// Centres `x, y, z`.
    pub positions: Vec<[f32; 3]>,
    /// PLY `nx, ny, nz` when the source had them (kept so a rewrite is byte-identical).
    pub normals: Option<Vec<[f32; 3]>>,
    /// DC colour coefficients `f_dc_0..2`.
    pub sh_dc: Vec<[f32; 3]>,
    /// Higher SH coefficients, coefficient-major (see the type's documentation).
    pub sh_rest: Vec<f32>,
    /// Opacity logits (before the sigmoid).
    pub opacities: Vec<f32>,
    /// Log scales `scale_0..2`.
    pub log_scales: Vec<[f32; 3]>,
    /// Rotation quaternions `w, x, y, z` (`rot_0..3`), not necessarily normalised.
    pub rotations: Vec<[f32; 4]>,
}

/// Why a [`Splat`]'s arrays do not describe one consistent model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplatShapeError {
    /// `sh_degree` is above 3.
    #[error("sh_degree {0} is not supported (0..=3)")]
    ShDegree(u8),
    /// An array's length does not match the number of positions.
    #[error("splat field `{field}` has {actual} entries, expected {expected}")]
    Length {
        /// Name of the field.
        field: &'static str,
        /// Entries the field should have.
        expected: usize,
        /// Entries it has.
        actual: usize,
    },
}

impl Splat {
    /// A zero-filled model of `n` gaussians at `sh_degree` (clamped to 3), with or without
    /// normals.
    pub fn zeroed(n: usize, sh_degree: u8, with_normals: bool) -> Self {
        let sh_degree = sh_degree.min(3);
        let k = sh_rest_coeffs(sh_degree).unwrap_or(0);
        Splat {
            sh_degree,
            positions: vec![[0.0; 3]; n],
            normals: with_normals.then(|| vec![[0.0; 3]; n]),
            sh_dc: vec![[0.0; 3]; n],
            sh_rest: vec![0.0; n * k * 3],
            opacities: vec![0.0; n],
            log_scales: vec![[0.0; 3]; n],
            rotations: vec![[0.0; 4]; n],
        }
    }

    /// Number of gaussians.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// True when there are no gaussians.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Higher SH coefficients per channel for this model's degree.
    pub fn rest_coeffs(&self) -> usize {
        sh_rest_coeffs(self.sh_degree).unwrap_or(0)
    }

    /// Checks that every array has the length `len()` implies.
    pub fn check_shape(&self) -> Result<(), SplatShapeError> {
        let k = sh_rest_coeffs(self.sh_degree).ok_or(SplatShapeError::ShDegree(self.sh_degree))?;
        let n = self.positions.len();
        let check = |field: &'static str, actual: usize, expected: usize| {
            if actual == expected {
                Ok(())
            } else {
                Err(SplatShapeError::Length {
                    field,
                    expected,
                    actual,
                })
            }
        };
        if let Some(normals) = &self.normals {
            check("normals", normals.len(), n)?;
        }
        check("sh_dc", self.sh_dc.len(), n)?;
        check("sh_rest", self.sh_rest.len(), n * k * 3)?;
        check("opacities", self.opacities.len(), n)?;
        check("log_scales", self.log_scales.len(), n)?;
        check("rotations", self.rotations.len(), n)?;
        Ok(())
    }

    /// Computes the validity statistics in one pass over the arrays.
    pub fn validity(&self) -> ValidityReport {
        ValidityReport::of(self)
    }

    /// Gaussian `i`'s higher SH coefficients in PLY (channel-major) order:
    /// `out[c * K + k] = sh_rest[(i * K + k) * 3 + c]`. `out` must hold `3 * K` values.
    pub fn rest_channel_major(&self, i: usize, out: &mut [f32]) {
        let k = self.rest_coeffs();
        let src = &self.sh_rest[i * k * 3..(i + 1) * k * 3];
        coeff_major_to_channel_major(src, out, k);
    }
}

/// Converts one gaussian's SH rest block from coefficient-major (`[k][c]`) to PLY
/// channel-major (`[c][k]`). Both slices hold `3 * k` values.
pub fn coeff_major_to_channel_major(src: &[f32], dst: &mut [f32], k: usize) {
    for kk in 0..k {
        for c in 0..3 {
            dst[c * k + kk] = src[kk * 3 + c];
        }
    }
}

/// Converts one gaussian's SH rest block from PLY channel-major (`[c][k]`) to
/// coefficient-major (`[k][c]`). Both slices hold `3 * k` values.
pub fn channel_major_to_coeff_major(src: &[f32], dst: &mut [f32], k: usize) {
    for kk in 0..k {
        for c in 0..3 {
            dst[kk * 3 + c] = src[c * k + kk];
        }
    }
}
