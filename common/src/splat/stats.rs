//! One-pass validity statistics of a splat: counts, non-finite values, the validator's
//! hard-zero rules (three-gen-subnet 5fc61f1,
//! `validation/engine/utils/gs_data_checker_utils.py::is_input_data_valid`), bounding box and
//! how many coordinates fall outside SPZ's 24-bit fixed-point range.

use std::sync::OnceLock;

use super::Splat;

/// The validator scores zero below this many gaussians (`gs_data_checker_utils.py` line 57).
pub const MIN_GAUSSIANS: usize = 7000;
/// An activated opacity under this counts as "zero" (`gs_data_checker_utils.py` line 66).
pub const ZERO_OPACITY_EPSILON: f32 = 1e-3;
/// The validator scores zero when more than this percentage of opacities are "zero"
/// (`gs_data_checker_utils.py` lines 67-71: `100 * zero / total > 80`).
pub const MAX_ZERO_OPACITY_PERCENT: f64 = 80.0;

/// Non-finite (NaN or ±inf) values per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NonFinite {
    /// In `x, y, z`.
    pub position: u64,
    /// In `nx, ny, nz`.
    pub normal: u64,
    /// In `f_dc_*`.
    pub sh_dc: u64,
    /// In `f_rest_*`.
    pub sh_rest: u64,
    /// In `opacity`.
    pub opacity: u64,
    /// In `scale_*`.
    pub scale: u64,
    /// In `rot_*`.
    pub rotation: u64,
}

impl NonFinite {
    /// All non-finite values together.
    pub fn total(&self) -> u64 {
        self.position
            + self.normal
            + self.sh_dc
            + self.sh_rest
            + self.opacity
            + self.scale
            + self.rotation
    }
}

/// Smallest centre coordinate that no longer fits SPZ: `8388607.5 / 4096` rounds (half away
/// from zero) to `2^23`, one past the largest 24-bit signed value.
const SPZ_MAX_COORD: f32 = 8_388_607.5 / 4096.0;

/// A reason the validator would score the model zero before rendering it.
#[derive(Debug, Clone, PartialEq)]
pub enum HardZero {
    /// Fewer than [`MIN_GAUSSIANS`] gaussians.
    TooFewGaussians {
        /// Gaussians in the model.
        count: usize,
    },
    /// More than 80 % of activated opacities under [`ZERO_OPACITY_EPSILON`].
    MostlyTransparent {
        /// Fraction (0..=1) of opacities under the epsilon.
        fraction: f64,
    },
    /// Every normalised rotation is `allclose` to the identity `(1, 0, 0, 0)`.
    AllRotationsIdentity,
    /// One of the first three centres is `allclose` to `(1, 1, 1)`. This mirrors a quirk of the
    /// validator's centroid check (`gs_data_checker_utils.py` lines 60-64 compare
    /// `points[i]` for `i < 3` against a broadcast tensor of ones).
    PointAtOnes {
        /// Index (0..3) of the point.
        index: usize,
    },
}

/// Statistics of a splat, computed in one pass while parsing (or by [`ValidityReport::of`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidityReport {
    /// Number of gaussians.
    pub count: usize,
    /// SH degree (0..=3).
    pub sh_degree: u8,
    /// Non-finite values per field.
    pub non_finite: NonFinite,
    /// Gaussians whose `sigmoid(opacity)` (float32) is under [`ZERO_OPACITY_EPSILON`].
    pub low_opacity: usize,
    /// Every rotation, normalised, is `torch.allclose` to `(1, 0, 0, 0)`.
    pub all_rotations_identity: bool,
    /// Index of the first of the first three centres that is `allclose` to `(1, 1, 1)`.
    pub point_at_ones: Option<usize>,
    /// Per-axis minimum of the centres (NaN ignored; `+inf` when there is none).
    pub bbox_min: [f32; 3],
    /// Per-axis maximum of the centres (NaN ignored; `-inf` when there is none).
    pub bbox_max: [f32; 3],
    /// Coordinates that do not fit SPZ's 24-bit fixed point with 12 fractional bits
    /// (outside `[-2048, 2048 - 2^-13)`, or NaN); SPZ would wrap them around.
    pub outside_spz_range: u64,
}

impl ValidityReport {
    /// Computes the report from a model's arrays in one pass.
    pub fn of(splat: &Splat) -> Self {
        let mut acc = StatsAcc::new(splat.sh_degree);
        let n = splat.len();
        for i in 0..n {
            let p = splat.positions[i];
            acc.position(i, p);
            if let Some(nrm) = splat.normals.as_ref().and_then(|v| v.get(i)) {
                acc.normal(*nrm);
            }
            if let Some(dc) = splat.sh_dc.get(i) {
                acc.sh_dc(*dc);
            }
            if let Some(o) = splat.opacities.get(i) {
                acc.opacity(*o);
            }
            if let Some(s) = splat.log_scales.get(i) {
                acc.scale(*s);
            }
            if let Some(r) = splat.rotations.get(i) {
                acc.rotation(*r);
            }
        }
        acc.sh_rest(&splat.sh_rest);
        acc.finish(n)
    }

    /// Fraction (0..=1) of gaussians whose activated opacity is under the epsilon.
    pub fn low_opacity_fraction(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.low_opacity as f64 / self.count as f64
        }
    }

    /// The validator's hard-zero rules this model breaks (alignment, which needs rendering,
    /// is not among them). Empty when none applies.
    pub fn hard_zero(&self) -> Vec<HardZero> {
        let mut out = Vec::new();
        if self.count < MIN_GAUSSIANS {
            out.push(HardZero::TooFewGaussians { count: self.count });
        }
        // Same arithmetic as the validator: `100 * zero_count / total_count > 80`.
        if self.count > 0
            && 100.0 * self.low_opacity as f64 / self.count as f64 > MAX_ZERO_OPACITY_PERCENT
        {
            out.push(HardZero::MostlyTransparent {
                fraction: self.low_opacity_fraction(),
            });
        }
        if self.count > 0 && self.all_rotations_identity {
            out.push(HardZero::AllRotationsIdentity);
        }
        if let Some(index) = self.point_at_ones {
            out.push(HardZero::PointAtOnes { index });
        }
        out
    }

    /// No hard-zero rule applies, every value is finite and every centre fits SPZ.
    pub fn is_clean(&self) -> bool {
        self.hard_zero().is_empty() && self.non_finite.total() == 0 && self.outside_spz_range == 0
    }
}

/// Largest finite float32 `t` such that `sigmoid(x) < 1e-3` exactly when `x < t`, found by
/// bisection over float32 values with the same float32 sigmoid the SPZ code uses, so the
/// per-gaussian test is one comparison instead of an `exp`.
pub(crate) fn low_opacity_logit_threshold() -> f32 {
    static T: OnceLock<f32> = OnceLock::new();
    *T.get_or_init(|| {
        let low = |x: f32| super::spz::sigmoid(x) < ZERO_OPACITY_EPSILON;
        // Monotone i32 key of a float's bit pattern (an involution).
        let key = |x: f32| {
            let b = x.to_bits() as i32;
            b ^ ((((b >> 31) as u32) >> 1) as i32)
        };
        let from_key = |k: i32| f32::from_bits((k ^ ((((k >> 31) as u32) >> 1) as i32)) as u32);
        let (mut lo, mut hi) = (key(-20.0), key(0.0));
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if low(from_key(mid)) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        from_key(hi)
    })
}

/// `torch.allclose(a, b)` for one value: `|a - b| <= 1e-8 + 1e-5 * |b|`, false for NaN.
#[inline(always)]
fn allclose(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-8 + 1e-5 * b.abs()
}

/// Accumulates the report's statistics gaussian by gaussian; the PLY reader feeds it from
/// its parsing loop so the statistics cost no second pass.
#[derive(Debug)]
pub(crate) struct StatsAcc {
    sh_degree: u8,
    non_finite: NonFinite,
    low_opacity: usize,
    opacity_threshold: f32,
    all_identity: bool,
    point_at_ones: Option<usize>,
    min: [f32; 3],
    max: [f32; 3],
    outside_spz: u64,
}

#[inline(always)]
fn nf(v: f32) -> u64 {
    u64::from(!v.is_finite())
}

impl StatsAcc {
    pub(crate) fn new(sh_degree: u8) -> Self {
        StatsAcc {
            sh_degree,
            non_finite: NonFinite::default(),
            low_opacity: 0,
            opacity_threshold: low_opacity_logit_threshold(),
            all_identity: true,
            point_at_ones: None,
            min: [f32::INFINITY; 3],
            max: [f32::NEG_INFINITY; 3],
            outside_spz: 0,
        }
    }

    #[inline(always)]
    pub(crate) fn position(&mut self, i: usize, p: [f32; 3]) {
        for (a, &v) in p.iter().enumerate() {
            self.non_finite.position += nf(v);
            self.min[a] = self.min[a].min(v);
            self.max[a] = self.max[a].max(v);
            // round(v * 4096) must land in [-2^23, 2^23 - 1]; `v * 4096` is exact, and
            // rounding half away from zero gives the bounds below (NaN fails both).
            self.outside_spz += u64::from(!(-2048.0..SPZ_MAX_COORD).contains(&v));
        }
        if i < 3 && self.point_at_ones.is_none() && p.iter().all(|&v| allclose(v, 1.0)) {
            self.point_at_ones = Some(i);
        }
    }

    #[inline(always)]
    pub(crate) fn normal(&mut self, n: [f32; 3]) {
        self.non_finite.normal += nf(n[0]) + nf(n[1]) + nf(n[2]);
    }

    #[inline(always)]
    pub(crate) fn sh_dc(&mut self, c: [f32; 3]) {
        self.non_finite.sh_dc += nf(c[0]) + nf(c[1]) + nf(c[2]);
    }

    #[inline(always)]
    pub(crate) fn sh_rest(&mut self, rest: &[f32]) {
        self.non_finite.sh_rest += rest.iter().map(|&v| nf(v)).sum::<u64>();
    }

    #[inline(always)]
    pub(crate) fn opacity(&mut self, o: f32) {
        self.non_finite.opacity += nf(o);
        self.low_opacity += usize::from(o < self.opacity_threshold);
    }

    #[inline(always)]
    pub(crate) fn scale(&mut self, s: [f32; 3]) {
        self.non_finite.scale += nf(s[0]) + nf(s[1]) + nf(s[2]);
    }

    #[inline(always)]
    pub(crate) fn rotation(&mut self, r: [f32; 4]) {
        self.non_finite.rotation += nf(r[0]) + nf(r[1]) + nf(r[2]) + nf(r[3]);
        if self.all_identity {
            // torch.nn.functional.normalize: x / max(||x||, 1e-12), then allclose to (1,0,0,0)
            // (validation/engine/io/ply/loader.py line 47, gs_data_checker_utils.py line 74).
            let n = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2] + r[3] * r[3])
                .sqrt()
                .max(1e-12);
            self.all_identity = allclose(r[0] / n, 1.0)
                && allclose(r[1] / n, 0.0)
                && allclose(r[2] / n, 0.0)
                && allclose(r[3] / n, 0.0);
        }
    }

    pub(crate) fn finish(self, count: usize) -> ValidityReport {
        ValidityReport {
            count,
            sh_degree: self.sh_degree,
            non_finite: self.non_finite,
            low_opacity: self.low_opacity,
            all_rotations_identity: self.all_identity && count > 0,
            point_at_ones: self.point_at_ones,
            bbox_min: self.min,
            bbox_max: self.max,
            outside_spz_range: self.outside_spz,
        }
    }
}
