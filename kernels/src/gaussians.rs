//! Decode and normalise: a [`Splat`]'s stored values turned into what the validator renders
//! (three-gen-subnet 5fc61f1). Activations as `validation/engine/io/ply/loader.py` does them
//! (sigmoid opacity, exp scale, `F.normalize`d quaternion, DC colour `0.5 + C0·f_dc`), then
//! `gs_utils.transform_gs_data`: positions minus the *scalar* mean of every coordinate (a
//! quirk: not the per-axis centroid), times `1.5 / largest bbox side`; scales times the same
//! factor; opacities divided by it (`volume_scale = np.prod(scaling)` of a scalar) and clipped
//! to [0, 1]. This is the CPU reference of the GPU decode kernel.

use rayon::prelude::*;
use splatfleet_common::splat::Splat;

use crate::constants::{QUAT_NORM_EPS, REF_BBOX_SIZE, SH_C0};

/// Activated, normalised gaussians, struct-of-arrays.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Gaussians {
    pub means: Vec<[f32; 3]>,
    /// Unit quaternions `w, x, y, z`.
    pub quats: Vec<[f32; 4]>,
    pub scales: Vec<[f32; 3]>,
    pub opacities: Vec<f32>,
    /// RGB, not clamped (the validator clamps the rendered image, not the colours).
    pub colors: Vec<[f32; 3]>,
}

/// The transform applied to positions: `p' = (p - mean) · scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalisation {
    /// The scalar mean of all coordinates.
    pub mean: f32,
    pub scale: f32,
    /// Raw bounding box, `[min, max]` per axis.
    pub bbox_min: [f32; 3],
    pub bbox_max: [f32; 3],
}

/// Why a model cannot be normalised.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NormaliseError {
    #[error("the model has no gaussians")]
    Empty,
    #[error("the model has {count} gaussians, more than the {max} the renderer accepts")]
    TooMany { count: usize, max: usize },
    #[error("splat arrays disagree: {0}")]
    Shape(String),
    #[error("the model's bounding box has no extent (largest side {0}), so it cannot be scaled")]
    DegenerateExtent(f32),
    #[error("the model has non-finite positions")]
    NonFinite,
}

pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Scalar mean and bounding box of the raw positions, in f64 for a stable sum.
pub fn normalisation_of(splat: &Splat) -> Result<Normalisation, NormaliseError> {
    let n = splat.len();
    if n == 0 {
        return Err(NormaliseError::Empty);
    }
    if n > crate::constants::MAX_GAUSSIANS {
        return Err(NormaliseError::TooMany {
            count: n,
            max: crate::constants::MAX_GAUSSIANS,
        });
    }
    splat
        .check_shape()
        .map_err(|e| NormaliseError::Shape(e.to_string()))?;
    let (sum, lo, hi) = splat
        .positions
        .par_iter()
        .fold(
            || (0f64, [f32::INFINITY; 3], [f32::NEG_INFINITY; 3]),
            |(sum, mut lo, mut hi), p| {
                for a in 0..3 {
                    lo[a] = lo[a].min(p[a]);
                    hi[a] = hi[a].max(p[a]);
                }
                (
                    sum + f64::from(p[0]) + f64::from(p[1]) + f64::from(p[2]),
                    lo,
                    hi,
                )
            },
        )
        .reduce(
            || (0f64, [f32::INFINITY; 3], [f32::NEG_INFINITY; 3]),
            |a, b| {
                let mut lo = a.1;
                let mut hi = a.2;
                for i in 0..3 {
                    lo[i] = lo[i].min(b.1[i]);
                    hi[i] = hi[i].max(b.2[i]);
                }
                (a.0 + b.0, lo, hi)
            },
        );
    let extent = checked_extent(sum, &lo, &hi)?;
    Ok(Normalisation {
        mean: (sum / (3.0 * n as f64)) as f32,
        scale: (f64::from(REF_BBOX_SIZE) / extent) as f32,
        bbox_min: lo,
        bbox_max: hi,
    })
}

/// The largest side of the model's bounding box, or why the model cannot be normalised:
/// a coordinate that is not finite (`sum` is the sum of every coordinate), or no extent.
/// The GPU path checks its device-side statistics with this too.
pub(crate) fn checked_extent(
    sum: f64,
    lo: &[f32; 3],
    hi: &[f32; 3],
) -> Result<f64, NormaliseError> {
    if !sum.is_finite() || lo.iter().chain(hi).any(|v| !v.is_finite()) {
        return Err(NormaliseError::NonFinite);
    }
    let extent = (0..3)
        .map(|a| f64::from(hi[a]) - f64::from(lo[a]))
        .fold(0f64, f64::max);
    if extent <= 0.0 {
        return Err(NormaliseError::DegenerateExtent(extent as f32));
    }
    Ok(extent)
}

/// Activates and normalises every gaussian (the CPU reference of `decode_normalise`).
pub fn decode_normalise(splat: &Splat) -> Result<(Gaussians, Normalisation), NormaliseError> {
    let norm = normalisation_of(splat)?;
    let n = splat.len();
    let inv_scale = 1.0 / norm.scale;
    let mut g = Gaussians {
        means: vec![[0.0; 3]; n],
        quats: vec![[0.0; 4]; n],
        scales: vec![[0.0; 3]; n],
        opacities: vec![0.0; n],
        colors: vec![[0.0; 3]; n],
    };
    g.means
        .par_iter_mut()
        .zip(&splat.positions)
        .for_each(|(out, p)| {
            *out = [
                (p[0] - norm.mean) * norm.scale,
                (p[1] - norm.mean) * norm.scale,
                (p[2] - norm.mean) * norm.scale,
            ];
        });
    g.quats
        .par_iter_mut()
        .zip(&splat.rotations)
        .for_each(|(out, q)| {
            let len = (q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
                .sqrt()
                .max(QUAT_NORM_EPS);
            *out = [q[0] / len, q[1] / len, q[2] / len, q[3] / len];
        });
    g.scales
        .par_iter_mut()
        .zip(&splat.log_scales)
        .for_each(|(out, s)| {
            *out = [
                s[0].exp() * norm.scale,
                s[1].exp() * norm.scale,
                s[2].exp() * norm.scale,
            ];
        });
    g.opacities
        .par_iter_mut()
        .zip(&splat.opacities)
        .for_each(|(out, o)| {
            *out = (sigmoid(*o) * inv_scale).clamp(0.0, 1.0);
        });
    g.colors
        .par_iter_mut()
        .zip(&splat.sh_dc)
        .for_each(|(out, c)| {
            *out = [0.5 + SH_C0 * c[0], 0.5 + SH_C0 * c[1], 0.5 + SH_C0 * c[2]];
        });
    Ok((g, norm))
}

/// Fraction of gaussians farther from the opacity-weighted centre than
/// `FLOATER_RMS_FACTOR` opacity-weighted RMS radii, on raw positions weighted by the sigmoid
/// opacity (the ratio is the same after normalisation, which only shifts and scales).
pub fn floater_fraction(splat: &Splat) -> f32 {
    let n = splat.len();
    if n == 0 {
        return 0.0;
    }
    let zero = || (0f64, [0f64; 3], 0f64);
    let (w_sum, wp, wpp) = splat
        .positions
        .par_iter()
        .zip(&splat.opacities)
        .fold(zero, |(ws, mut wp, wpp), (p, o)| {
            let w = f64::from(sigmoid(*o));
            let mut sq = 0.0;
            for a in 0..3 {
                let v = f64::from(p[a]);
                wp[a] += w * v;
                sq += v * v;
            }
            (ws + w, wp, wpp + w * sq)
        })
        .reduce(zero, |a, b| {
            (
                a.0 + b.0,
                [a.1[0] + b.1[0], a.1[1] + b.1[1], a.1[2] + b.1[2]],
                a.2 + b.2,
            )
        });
    if w_sum <= 0.0 {
        return 0.0;
    }
    let mu = [wp[0] / w_sum, wp[1] / w_sum, wp[2] / w_sum];
    let rms2 = (wpp / w_sum - (mu[0] * mu[0] + mu[1] * mu[1] + mu[2] * mu[2])).max(0.0);
    let limit = f64::from(crate::constants::FLOATER_RMS_FACTOR).powi(2) * rms2;
    let far = splat
        .positions
        .par_iter()
        .filter(|p| {
            let d: f64 = (0..3).map(|a| (f64::from(p[a]) - mu[a]).powi(2)).sum();
            d > limit
        })
        .count();
    far as f32 / n as f32
}
