//! The CPU reference (what CI can run): the validator's normalisation quirks, gsplat's
//! projection and blending rules on cases whose answer is known, the metrics on images with
//! known properties, and backend detection without a GPU.

use splatfleet_common::splat::Splat;
use splatfleet_kernels::{
    constants::SH_C0,
    cpu, decode_normalise,
    gaussians::floater_fraction,
    project::{covariance, project},
    render_and_measure_cpu, OrbitSpec, Renderer, Rig, Views,
};

fn logit(p: f32) -> f32 {
    (p / (1.0 - p)).ln()
}

/// `n` gaussians on a jittered grid in a cube, isotropic, fully opaque, coloured by position.
fn cube(n: usize, half_side: f32, log_scale: f32) -> Splat {
    let mut s = Splat::zeroed(n, 0, false);
    let side = (n as f32).cbrt().ceil() as usize;
    for i in 0..n {
        let (x, y, z) = (i % side, (i / side) % side, i / (side * side));
        let f = |v: usize| -half_side + 2.0 * half_side * (v as f32 + 0.5) / side as f32;
        s.positions[i] = [f(x), f(y), f(z)];
        s.sh_dc[i] = [
            (x as f32 / side as f32 - 0.5) / SH_C0,
            (y as f32 / side as f32 - 0.5) / SH_C0,
            0.0,
        ];
        s.opacities[i] = logit(0.95);
        s.log_scales[i] = [log_scale; 3];
        s.rotations[i] = [2.0, 0.0, 0.0, 0.0];
    }
    s
}

fn small_rig(views: usize, size: u32) -> Rig {
    Rig::orbit(&OrbitSpec::validator_sized(views, size, size))
}

#[test]
fn normalisation_uses_the_scalar_mean_and_the_largest_side() {
    let mut s = Splat::zeroed(3, 0, false);
    s.positions = vec![[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 2.0, 6.0]];
    s.opacities = vec![0.0, 10.0, -10.0];
    s.rotations = vec![[0.0, 0.0, 0.0, 3.0]; 3];
    s.sh_dc = vec![[1.0, -1.0, 0.0]; 3];
    let (g, norm) = decode_normalise(&s).expect("normalises");
    // Mean of all nine coordinates = 12 / 9; the largest side is z (6) → factor 0.25.
    assert!((norm.mean - 12.0 / 9.0).abs() < 1e-6);
    assert!((norm.scale - 0.25).abs() < 1e-7);
    let m = 12.0 / 9.0;
    assert!((g.means[1][0] - (4.0 - m) * 0.25).abs() < 1e-6);
    assert!(
        (g.means[1][1] - (0.0 - m) * 0.25).abs() < 1e-6,
        "y is shifted by the scalar mean too"
    );
    // Opacities are divided by the factor and clipped: sigmoid(0) / 0.25 = 2 → 1.
    assert_eq!(g.opacities[0], 1.0);
    assert!((g.opacities[2] - (1.0 / (1.0 + 10f32.exp())) * 4.0).abs() < 1e-7);
    assert_eq!(g.quats[0], [0.0, 0.0, 0.0, 1.0]);
    assert!((g.scales[0][0] - 0.25).abs() < 1e-7);
    assert!((g.colors[0][0] - (0.5 + SH_C0)).abs() < 1e-7);
    assert!(
        (g.colors[0][1] - (0.5 - SH_C0)).abs() < 1e-7,
        "colours are not clamped"
    );
}

#[test]
fn degenerate_models_are_typed_errors() {
    let mut s = Splat::zeroed(4, 0, false);
    assert!(matches!(
        decode_normalise(&s),
        Err(splatfleet_kernels::NormaliseError::DegenerateExtent(_))
    ));
    s.positions[1] = [f32::NAN, 0.0, 0.0];
    assert!(matches!(
        decode_normalise(&s),
        Err(splatfleet_kernels::NormaliseError::NonFinite)
    ));
    assert!(matches!(
        decode_normalise(&Splat::default()),
        Err(splatfleet_kernels::NormaliseError::Empty)
    ));
}

#[test]
fn a_gaussian_at_the_origin_projects_to_the_principal_point() {
    let rig = Rig::validator();
    let cov = covariance([1.0, 0.0, 0.0, 0.0], [0.01, 0.01, 0.01]);
    for cam in &rig.cameras {
        let p = project([0.0; 3], &cov, 1.0, cam, rig.width, rig.height).expect("visible");
        assert!(
            (p.mean[0] - 259.0).abs() < 1e-3 && (p.mean[1] - 259.0).abs() < 1e-3,
            "{:?}",
            p.mean
        );
        assert!((p.depth - 2.5).abs() < 1e-5);
        // σ = 0.01 at depth 2.5 with f ≈ 567.0 is ≈ 2.26 px; variance + 0.3 blur.
        let var = (0.01f32 * 567.012 / 2.5).powi(2) + 0.3;
        assert!(
            (p.conic[0] - 1.0 / var).abs() / (1.0 / var) < 1e-3,
            "{:?}",
            p.conic
        );
    }
    // Behind the near plane or transparent: culled.
    assert!(project([0.0, 0.0, 2.495], &cov, 1.0, &rig.cameras[0], 518, 518).is_none());
    assert!(project([0.0; 3], &cov, 0.001, &rig.cameras[0], 518, 518).is_none());
}

#[test]
fn one_opaque_gaussian_renders_its_colour_over_white() {
    // Two gaussians so the bounding box has an extent (1.5, so the validator's factor is 1 and
    // opacities stay as they are); the second is tiny and transparent.
    let mut s = Splat::zeroed(2, 0, false);
    s.positions = vec![[0.0, 0.0, 0.0], [1.5, 0.0, 0.0]];
    s.opacities = vec![logit(0.999), -20.0];
    s.log_scales = vec![[-2.0; 3], [-9.0; 3]];
    s.rotations = vec![[1.0, 0.0, 0.0, 0.0]; 2];
    s.sh_dc = vec![[-0.5 / SH_C0, 0.5 / SH_C0, -0.5 / SH_C0], [0.0; 3]];
    let rig = small_rig(4, 96);
    let (views, metrics) = render_and_measure_cpu(&s, &rig).expect("renders");
    let (w, h) = (96usize, 96usize);
    for v in 0..4 {
        let px = views.view(v);
        // Normalisation moves the model: its centre lands wherever; find the most opaque pixel.
        let best = px
            .iter()
            .copied()
            .fold([0.0f32; 4], |a, p| if p[3] > a[3] { p } else { a });
        assert!(best[3] > 0.99, "a nearly opaque core (alpha {})", best[3]);
        assert!(
            best[0] < 0.05 && best[1] > 0.95 && best[2] < 0.05,
            "green core: {best:?}"
        );
        assert_eq!(px[0], [1.0, 1.0, 1.0, 0.0], "corner is white background");
        assert_eq!(px[w * h - 1], [1.0, 1.0, 1.0, 0.0]);
        assert!(metrics.views[v].coverage > 0.0 && metrics.views[v].coverage < 0.5);
        assert!(metrics.views[v].mean_rgb[1] > 0.8);
    }
}

#[test]
fn nearer_gaussians_hide_farther_ones() {
    // Red in front of blue along view 0's axis (camera at +z looking at the origin).
    let mut s = Splat::zeroed(3, 0, false);
    s.positions = vec![[0.0, 0.0, 0.5], [0.0, 0.0, -0.5], [1.0, 1.0, 1.5]];
    s.opacities = vec![logit(0.999), logit(0.999), -30.0];
    s.log_scales = vec![[-1.5; 3], [-1.5; 3], [-9.0; 3]];
    s.rotations = vec![[1.0, 0.0, 0.0, 0.0]; 3];
    s.sh_dc = vec![
        [0.5 / SH_C0, -0.5 / SH_C0, -0.5 / SH_C0],
        [-0.5 / SH_C0, -0.5 / SH_C0, 0.5 / SH_C0],
        [0.0; 3],
    ];
    let rig = Rig::orbit(&OrbitSpec {
        elevation_deg: 0.0,
        ..OrbitSpec::validator_sized(2, 64, 64)
    });
    let (views, _) = render_and_measure_cpu(&s, &rig).expect("renders");
    let px = views.view(0);
    // Where both overlap most (their shared centre), the front one is all that shows.
    let centre =
        px.iter().copied().fold(
            [0.0f32; 4],
            |a, p| if p[0] - p[1] > a[0] - a[1] { p } else { a },
        );
    assert!(
        centre[0] > 0.95 && centre[2] < 0.05 && centre[3] > 0.99,
        "the red gaussian is in front: {centre:?}"
    );
}

#[test]
fn ssim_of_identical_views_is_one_and_metrics_of_an_empty_render_are_zero() {
    let (w, h) = (40u32, 30u32);
    let pattern: Vec<[f32; 4]> = (0..w * h)
        .map(|k| {
            let v = ((k % 7) as f32) / 7.0;
            [v, 1.0 - v, 0.5, 1.0]
        })
        .collect();
    let views = Views {
        views: 2,
        width: w,
        height: h,
        pixels: [pattern.clone(), pattern].concat(),
    };
    let m = cpu::measure(&views, 0.0);
    assert!(
        (m.adjacent_ssim[0] - 1.0).abs() < 1e-5,
        "{}",
        m.adjacent_ssim[0]
    );
    assert_eq!(m.views[0].coverage, 1.0);
    assert_eq!(m.views[0].bbox, [0, 0, 39, 29]);
    assert!(m.views[0].sharpness > 0.0);

    let blank = Views {
        views: 2,
        width: w,
        height: h,
        pixels: vec![[1.0, 1.0, 1.0, 0.0]; (2 * w * h) as usize],
    };
    let m = cpu::measure(&blank, 0.0);
    assert_eq!(m.views[1].coverage, 0.0);
    assert_eq!(m.views[1].bbox, [-1; 4]);
    assert!((m.adjacent_ssim[0] - 1.0).abs() < 1e-6);
}

#[test]
fn ssim_drops_for_different_views() {
    let (w, h) = (32u32, 32u32);
    let a: Vec<[f32; 4]> = (0..w * h)
        .map(|k| [((k / 4) % 2) as f32, 0.5, 0.5, 1.0])
        .collect();
    let b: Vec<[f32; 4]> = (0..w * h)
        .map(|k| [((k / 4 + 1) % 2) as f32, 0.5, 0.5, 1.0])
        .collect();
    let m = cpu::measure(
        &Views {
            views: 2,
            width: w,
            height: h,
            pixels: [a, b].concat(),
        },
        0.0,
    );
    assert!(m.adjacent_ssim[0] < 0.5, "{}", m.adjacent_ssim[0]);
}

#[test]
fn floaters_are_the_points_far_outside_the_main_mass() {
    let mut s = cube(1000, 0.5, -4.0);
    assert_eq!(floater_fraction(&s), 0.0, "a uniform cube has none");
    for i in 0..10 {
        s.positions[i] = [50.0 + i as f32, 0.0, 0.0];
    }
    let f = floater_fraction(&s);
    assert!((f - 0.01).abs() < 1e-6, "the ten far points: {f}");
}

#[test]
fn a_cube_renders_on_every_view_with_plausible_metrics() {
    let s = cube(4096, 1.0, -3.0);
    let rig = small_rig(6, 64);
    let (views, m) = render_and_measure_cpu(&s, &rig).expect("renders");
    assert_eq!(views.pixels.len(), 6 * 64 * 64);
    for v in &m.views {
        assert!(v.coverage > 0.1 && v.coverage < 0.98, "{v:?}");
        assert!(
            v.bbox[0] >= 0 && v.bbox[2] <= 63 && v.bbox[0] < v.bbox[2],
            "{v:?}"
        );
    }
    assert_eq!(m.adjacent_ssim.len(), 5);
    assert!(m.adjacent_ssim.iter().all(|s| *s > 0.0 && *s <= 1.0));
    // Deterministic: a second run gives identical pixels.
    let (again, _) = render_and_measure_cpu(&s, &rig).expect("renders");
    assert_eq!(again, views);
}

#[test]
fn renderer_falls_back_to_the_cpu_without_panicking() {
    let mut renderer = Renderer::new(0);
    // CI has no GPU: detection reports why instead of panicking.
    if let splatfleet_kernels::Backend::Cpu { reason } = renderer.backend() {
        assert!(!reason.is_empty());
    }
    let s = cube(512, 1.0, -3.0);
    let (views, metrics) = renderer
        .render_and_measure(&s, &small_rig(2, 32), true)
        .expect("renders");
    assert_eq!(metrics.views.len(), 2);
    assert!(views.is_some());
}
