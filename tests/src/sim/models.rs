//! The sim generator's procedural models, each deterministic by a 64-bit seed: a plausible
//! object (one to four coloured ellipsoidal parts), a sparse one (small gaussians on a few
//! rings: its silhouette is mostly holes, so a gate scores it low), and degenerate ones that break one of
//! the validator's hard-zero rules or hold NaNs.

use splatfleet_common::splat::Splat;

/// A small deterministic generator (xorshift64*), enough for procedural shapes.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [0, 1) with double precision, for shares and latencies.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// A standard normal sample (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit_f64().max(f64::MIN_POSITIVE);
        let u2 = self.unit_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// One ellipsoidal part of an object: centre, half-axes and base colour (SH DC terms).
struct Part {
    centre: [f32; 3],
    radii: [f32; 3],
    colour: [f32; 3],
}

fn parts(rng: &mut SimRng) -> Vec<Part> {
    let count = 1 + (rng.next_u64() % 4) as usize;
    (0..count)
        .map(|i| {
            // The first part is the body; the others sit around it.
            let spread = if i == 0 { 0.0 } else { 0.35 };
            let scale = if i == 0 { 1.0 } else { 0.35 + 0.3 * rng.unit() };
            Part {
                centre: [
                    (rng.unit() - 0.5) * 2.0 * spread,
                    (rng.unit() - 0.5) * 2.0 * spread,
                    (rng.unit() - 0.5) * 2.0 * spread,
                ],
                radii: [
                    (0.35 + 0.2 * rng.unit()) * scale,
                    (0.25 + 0.2 * rng.unit()) * scale,
                    (0.3 + 0.2 * rng.unit()) * scale,
                ],
                colour: [
                    rng.unit() * 3.0 - 1.5,
                    rng.unit() * 3.0 - 1.5,
                    rng.unit() * 3.0 - 1.5,
                ],
            }
        })
        .collect()
}

/// Fills `splat` with `n` gaussians over the object's parts; `log_scale` is the mean log
/// scale of each axis (smaller means thinner coverage).
fn fill(splat: &mut Splat, rng: &mut SimRng, log_scale: f32) {
    let shape = parts(rng);
    for i in 0..splat.len() {
        let part = &shape[i % shape.len()];
        // A point in the unit ball, stretched onto the part.
        let (mut x, mut y, mut z);
        loop {
            x = rng.unit() * 2.0 - 1.0;
            y = rng.unit() * 2.0 - 1.0;
            z = rng.unit() * 2.0 - 1.0;
            if x * x + y * y + z * z <= 1.0 {
                break;
            }
        }
        splat.positions[i] = [
            part.centre[0] + x * part.radii[0],
            part.centre[1] + y * part.radii[1],
            part.centre[2] + z * part.radii[2],
        ];
        let shade = (y + 1.0) * 0.5;
        splat.sh_dc[i] = [
            part.colour[0] + shade * 0.5,
            part.colour[1] + shade * 0.5,
            part.colour[2] + rng.unit() * 0.4 - 0.2,
        ];
        splat.opacities[i] = 3.0 + rng.unit();
        splat.log_scales[i] = [
            log_scale + rng.unit() - 0.5,
            log_scale + rng.unit() - 0.5,
            log_scale + rng.unit() - 0.5,
        ];
        splat.rotations[i] = [1.0, rng.unit() - 0.5, rng.unit() - 0.5, rng.unit() - 0.5];
    }
}

/// A plausible object of `n` opaque gaussians.
pub fn object(n: usize, seed: u64) -> Splat {
    let mut splat = Splat::zeroed(n, 0, false);
    fill(&mut splat, &mut SimRng::new(seed), -4.0);
    splat
}

/// A sparse model: `n` small gaussians strung along a few rings of the object's parts, the
/// wiry, hole-ridden shape a generator gives when it has too few gaussians to fill a surface.
pub fn sparse(n: usize, seed: u64) -> Splat {
    let mut splat = object(n, seed);
    let mut rng = SimRng::new(seed ^ 0x0059_a55e);
    let shape = parts(&mut rng);
    const RINGS: usize = 3;
    for i in 0..n {
        let part = &shape[i % shape.len()];
        let ring = (i / shape.len()) % RINGS;
        // Latitude rings of the part's ellipsoid, a little jitter around each.
        let lat = -0.8 + 1.6 * (ring as f32 + 0.5) / RINGS as f32;
        let lon = rng.unit() * std::f32::consts::TAU;
        let r = (1.0 - lat * lat).sqrt();
        let mut jitter = || (rng.unit() - 0.5) * 0.02;
        splat.positions[i] = [
            part.centre[0] + r * lon.cos() * part.radii[0] + jitter(),
            part.centre[1] + lat * part.radii[1] + jitter(),
            part.centre[2] + r * lon.sin() * part.radii[2] + jitter(),
        ];
        splat.log_scales[i] = [-6.0, -6.0, -6.0];
    }
    splat
}

/// Ways a model can be degenerate, each tripping a different rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Degeneracy {
    /// Nearly every opacity under the validator's 1e-3.
    Transparent,
    /// Every rotation the identity.
    IdentityRotations,
    /// NaN centres and scales.
    NotANumber,
}

/// An object of `n` gaussians broken in the way `seed` picks.
pub fn degenerate(n: usize, seed: u64) -> (Splat, Degeneracy) {
    let mut splat = object(n, seed);
    let kind = match seed % 3 {
        0 => Degeneracy::Transparent,
        1 => Degeneracy::IdentityRotations,
        _ => Degeneracy::NotANumber,
    };
    match kind {
        Degeneracy::Transparent => {
            for (i, opacity) in splat.opacities.iter_mut().enumerate() {
                // logit(1e-4): transparent, but one in ten stays visible.
                if i % 10 != 0 {
                    *opacity = -9.2;
                }
            }
        }
        Degeneracy::IdentityRotations => {
            splat.rotations.fill([1.0, 0.0, 0.0, 0.0]);
        }
        Degeneracy::NotANumber => {
            for i in (0..splat.len()).step_by(7) {
                splat.positions[i][1] = f32::NAN;
                splat.log_scales[i][0] = f32::NAN;
            }
        }
    }
    (splat, kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use splatfleet_common::splat::{read_ply, write_ply, PlyLimits};

    fn report(splat: &Splat) -> splatfleet_common::splat::PlyDecoded {
        let bytes = write_ply(splat).expect("write");
        read_ply(&bytes, &PlyLimits::default()).expect("read")
    }

    #[test]
    fn objects_are_deterministic_by_seed_and_differ_between_seeds() {
        assert_eq!(object(500, 7).positions, object(500, 7).positions);
        assert_ne!(object(500, 7).positions, object(500, 8).positions);
    }

    #[test]
    fn objects_and_sparse_models_are_clean() {
        assert!(report(&object(8_000, 3)).report.is_clean());
        assert!(report(&sparse(8_000, 3)).report.is_clean());
    }

    #[test]
    fn each_degeneracy_breaks_a_rule() {
        for seed in 0..3 {
            let (splat, kind) = degenerate(8_000, seed);
            let decoded = report(&splat);
            assert!(
                !decoded.report.is_clean(),
                "{kind:?} passed the validity report"
            );
        }
    }
}
