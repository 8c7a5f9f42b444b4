//! One-pass validity statistics of a splat: counts, non-finite values, the validator's
//! hard-zero rules (three-gen-subnet 5fc61f1,
//! `validation/engine/utils/gs_data_checker_utils.py::is_input_data_valid`), bounding box and
//! how many coordinates fall outside SPZ's 24-bit fixed-point range.
//!
//! The validator's fifth check (`gs_data_checker_utils.py` lines 77-83, "more than 80 % of
//! scales under 0.05") reduces `torch.all` over the whole tensor to one boolean, so it can only
//! fire for fewer than two gaussians, which the count rule already rejects; it is not mirrored.

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
    /// Computes the report from a model's arrays in one pass (block by block). Arrays
    /// shorter than `positions` contribute what they have.
    pub fn of(splat: &Splat) -> Self {
        let mut acc = StatsAcc::new(splat.sh_degree);
        let n = splat.len();
        let r = splat.rest_coeffs() * 3;
        let mut start = 0;
        while start < n {
            let end = (start + STATS_BLOCK).min(n);
            acc.block(
                start,
                &Block {
                    positions: &splat.positions[start..end],
                    normals: splat.normals.as_deref().map(|v| part(v, start, end)),
                    sh_dc: part(&splat.sh_dc, start, end),
                    sh_rest: part(&splat.sh_rest, start * r, end * r),
                    opacities: part(&splat.opacities, start, end),
                    log_scales: part(&splat.log_scales, start, end),
                    rotations: part(&splat.rotations, start, end),
                },
            );
            start = end;
        }
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

/// `v[a..b]`, cut to what `v` has.
fn part<T>(v: &[T], a: usize, b: usize) -> &[T] {
    v.get(a..b.min(v.len())).unwrap_or(&[])
}

/// Gaussians per statistics block: the PLY reader converts a block, then runs these
/// vectorisable passes over its freshly written (cache-resident) output.
pub(crate) const STATS_BLOCK: usize = 1024;

/// One block of a model's arrays (all the same number of gaussians).
#[derive(Debug)]
pub(crate) struct Block<'a> {
    pub(crate) positions: &'a [[f32; 3]],
    pub(crate) normals: Option<&'a [[f32; 3]]>,
    pub(crate) sh_dc: &'a [[f32; 3]],
    pub(crate) sh_rest: &'a [f32],
    pub(crate) opacities: &'a [f32],
    pub(crate) log_scales: &'a [[f32; 3]],
    pub(crate) rotations: &'a [[f32; 4]],
}

/// Accumulates the report's statistics block by block; the PLY reader feeds it from its
/// parsing loop so the statistics cost no second pass over memory.
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

/// Non-finite values in `v` (exponent bits all ones), branch-free so it vectorises.
#[inline]
fn count_non_finite(v: &[f32]) -> u64 {
    let mut n = 0u32;
    for x in v {
        n += u32::from(x.to_bits() & 0x7f80_0000 == 0x7f80_0000);
    }
    u64::from(n)
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

    /// Adds one block whose first gaussian has index `first`.
    pub(crate) fn block(&mut self, first: usize, b: &Block<'_>) {
        let flat = b.positions.as_flattened();
        self.non_finite.position += count_non_finite(flat);
        self.non_finite.normal += b.normals.map_or(0, |v| count_non_finite(v.as_flattened()));
        self.non_finite.sh_dc += count_non_finite(b.sh_dc.as_flattened());
        self.non_finite.sh_rest += count_non_finite(b.sh_rest);
        self.non_finite.opacity += count_non_finite(b.opacities);
        self.non_finite.scale += count_non_finite(b.log_scales.as_flattened());
        self.non_finite.rotation += count_non_finite(b.rotations.as_flattened());

        // Bounding box and SPZ range over 4 points (12 lanes, lane j is axis j % 3) at a time.
        // `v < min` ignores NaN like `f32::min`, and compiles to a plain vector minimum.
        let mut mn = [f32::INFINITY; 12];
        let mut mx = [f32::NEG_INFINITY; 12];
        let mut out = [0u32; 12];
        let (chunks, tail) = flat.as_chunks::<12>();
        for c in chunks {
            for j in 0..12 {
                let v = c[j];
                mn[j] = if v < mn[j] { v } else { mn[j] };
                mx[j] = if v > mx[j] { v } else { mx[j] };
                // round(v * 4096) must land in [-2^23, 2^23 - 1]; `v * 4096` is exact, and
                // rounding half away from zero gives these bounds (NaN fails both).
                out[j] += u32::from(!(-2048.0..SPZ_MAX_COORD).contains(&v));
            }
        }
        for (j, &v) in tail.iter().enumerate() {
            mn[j] = if v < mn[j] { v } else { mn[j] };
            mx[j] = if v > mx[j] { v } else { mx[j] };
            out[j] += u32::from(!(-2048.0..SPZ_MAX_COORD).contains(&v));
        }
        for j in 0..12 {
            let a = j % 3;
            if mn[j] < self.min[a] {
                self.min[a] = mn[j];
            }
            if mx[j] > self.max[a] {
                self.max[a] = mx[j];
            }
            self.outside_spz += u64::from(out[j]);
        }

        let t = self.opacity_threshold;
        let mut low = 0u32;
        for &o in b.opacities {
            low += u32::from(o < t);
        }
        self.low_opacity += low as usize;

        if self.all_identity {
            // torch.nn.functional.normalize: x / max(||x||, 1e-12), then allclose to (1,0,0,0)
            // (validation/engine/io/ply/loader.py line 47, gs_data_checker_utils.py line 74).
            self.all_identity = b.rotations.iter().all(|r| {
                let n = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2] + r[3] * r[3])
                    .sqrt()
                    .max(1e-12);
                allclose(r[0] / n, 1.0)
                    && allclose(r[1] / n, 0.0)
                    && allclose(r[2] / n, 0.0)
                    && allclose(r[3] / n, 0.0)
            });
        }
        if first < 3 && self.point_at_ones.is_none() {
            self.point_at_ones = b
                .positions
                .iter()
                .take(3 - first)
                .position(|p| p.iter().all(|&v| allclose(v, 1.0)))
                .map(|i| first + i);
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
