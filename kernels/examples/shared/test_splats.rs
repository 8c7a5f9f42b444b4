//! Synthetic splats shared by the GPU check and the CPU timing examples.

use rand::Rng;
use splatfleet_common::splat::Splat;

/// Gaussians scattered in a unit ball with random shapes, colours and opacities.
pub fn random_splat(n: usize, rng: &mut rand::rngs::StdRng) -> Splat {
    let mut s = Splat::zeroed(n, 0, false);
    for i in 0..n {
        s.positions[i] = [
            rng.random_range(-1.0..1.0),
            rng.random_range(-1.0..1.0),
            rng.random_range(-1.0..1.0),
        ];
        s.sh_dc[i] = [
            rng.random_range(-1.5..1.5),
            rng.random_range(-1.5..1.5),
            rng.random_range(-1.5..1.5),
        ];
        s.opacities[i] = rng.random_range(-4.0..6.0);
        let base: f32 = rng.random_range(-6.0..-3.0);
        s.log_scales[i] = [
            base + rng.random_range(-1.0..1.0),
            base + rng.random_range(-1.0..1.0),
            base + rng.random_range(-1.0..1.0),
        ];
        s.rotations[i] = [
            rng.random_range(-1.0..1.0),
            rng.random_range(-1.0..1.0),
            rng.random_range(-1.0..1.0),
            rng.random_range(-1.0..1.0),
        ];
    }
    s
}

/// A generated-looking object: a dense shell (a squashed sphere) with flat, mostly opaque
/// gaussians, a few floaters, and colour bands.
pub fn structured_splat(n: usize, rng: &mut rand::rngs::StdRng) -> Splat {
    let mut s = Splat::zeroed(n, 0, false);
    for i in 0..n {
        let floater = i % 200 == 0;
        let (u, v): (f32, f32) = (rng.random_range(0.0..1.0), rng.random_range(0.0..1.0));
        let theta = 2.0 * std::f32::consts::PI * u;
        let phi = (2.0 * v - 1.0).acos();
        let r = if floater {
            rng.random_range(2.0..4.0)
        } else {
            1.0 + rng.random_range(-0.02..0.02)
        };
        s.positions[i] = [
            r * phi.sin() * theta.cos(),
            0.6 * r * phi.cos(),
            r * phi.sin() * theta.sin(),
        ];
        let band = (phi * 4.0).sin();
        s.sh_dc[i] = [band * 1.5, -band, 0.8 * (theta).cos()];
        s.opacities[i] = if floater {
            -1.0
        } else {
            rng.random_range(1.0..5.0)
        };
        let flat = (n as f32).sqrt().recip().ln() + 0.5;
        s.log_scales[i] = [flat, flat + rng.random_range(-0.5..0.5), flat - 2.5];
        s.rotations[i] = [theta.cos(), 0.0, theta.sin(), rng.random_range(-0.2..0.2)];
    }
    s
}

/// What generation services produce: one to four dense ellipsoidal clusters of small
/// gaussians (denser towards each surface), each part with its own colour, mostly opaque.
pub fn object_splat(n: usize, rng: &mut rand::rngs::StdRng) -> Splat {
    let parts = rng.random_range(1..=4usize);
    let shapes: Vec<[[f32; 3]; 3]> = (0..parts)
        .map(|_| {
            [
                [0; 3].map(|_| rng.random_range(-0.4..0.4)),
                [0; 3].map(|_| rng.random_range(0.15..0.5)),
                [0; 3].map(|_| rng.random_range(-1.5..1.5)),
            ]
        })
        .collect();
    let mut s = Splat::zeroed(n, 0, false);
    for i in 0..n {
        let [centre, radii, colour] = shapes[i % parts];
        let d = loop {
            let d: [f32; 3] = [0; 3].map(|_| rng.random_range(-1.0..1.0));
            let q: f32 = d.iter().map(|v| v * v).sum();
            if q <= 1.0 && q > 0.3 {
                break d;
            }
        };
        s.positions[i] = [0, 1, 2].map(|k| centre[k] + d[k] * radii[k]);
        s.sh_dc[i] = colour.map(|c| c + rng.random_range(-0.3..0.3));
        s.opacities[i] = rng.random_range(0.5..4.0);
        let base: f32 = rng.random_range(-5.5..-4.0);
        s.log_scales[i] = [0; 3].map(|_| base + rng.random_range(-0.3..0.3));
        s.rotations[i] = [0; 4].map(|_| rng.random_range(-1.0..1.0));
    }
    s
}
