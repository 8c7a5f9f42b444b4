//! Tests of the splat codecs: round trips, one test per rejection reason, layout
//! independence, the SN17 strict check and the validity statistics.

use std::io::Write as _;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::spz::{pack_payload, sigmoid, unpack_payload};
use super::*;

/// A random but realistic splat: centres within ±5, DC within ±3, SH within ±0.9,
/// logits within ±8, log scales within [-9, 5], random quaternions.
fn random_splat(rng: &mut StdRng, n: usize, degree: u8, normals: bool) -> Splat {
    let mut s = Splat::zeroed(n, degree, normals);
    for i in 0..n {
        s.positions[i] = [0; 3].map(|_| rng.random_range(-5.0..5.0));
        if let Some(v) = s.normals.as_mut() {
            v[i] = [0; 3].map(|_| rng.random_range(-1.0..1.0));
        }
        s.sh_dc[i] = [0; 3].map(|_| rng.random_range(-3.0..3.0));
        s.opacities[i] = rng.random_range(-8.0..8.0);
        s.log_scales[i] = [0; 3].map(|_| rng.random_range(-9.0..5.0));
        s.rotations[i] = [0; 4].map(|_| rng.random_range(-2.0..2.0));
    }
    for v in s.sh_rest.iter_mut() {
        *v = rng.random_range(-0.9..0.9);
    }
    s
}

fn read(bytes: &[u8]) -> Result<PlyDecoded, PlyError> {
    read_ply(bytes, &PlyLimits::default())
}

/// A PLY with the given header lines between `format` and `end_header` and `n` records of
/// `props` floats each with value `f(row, col)`.
fn ply_bytes(lines: &[String], n: usize, props: usize, f: impl Fn(usize, usize) -> f32) -> Vec<u8> {
    let mut out = b"ply\nformat binary_little_endian 1.0\n".to_vec();
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"end_header\n");
    for r in 0..n {
        for c in 0..props {
            out.extend_from_slice(&f(r, c).to_le_bytes());
        }
    }
    out
}

const REQUIRED: [&str; 14] = [
    "x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
    "rot_0", "rot_1", "rot_2", "rot_3",
];

fn header_for(names: &[&str], n: usize) -> Vec<String> {
    let mut lines = vec![format!("element vertex {n}")];
    lines.extend(names.iter().map(|p| format!("property float {p}")));
    lines
}

fn minimal_ply(names: &[&str], n: usize) -> Vec<u8> {
    ply_bytes(&header_for(names, n), n, names.len(), |r, c| {
        (r * 31 + c) as f32 * 0.01
    })
}

// ---------------------------------------------------------------------------------------
// PLY round trips.

#[test]
fn ply_write_read_write_is_byte_identical_all_degrees_with_and_without_normals() {
    let mut rng = StdRng::seed_from_u64(1);
    for degree in 0..=3u8 {
        for normals in [false, true] {
            for n in [1usize, 7, 2000] {
                let s = random_splat(&mut rng, n, degree, normals);
                let bytes = write_ply(&s).expect("write");
                let back = read(&bytes).expect("read");
                assert_eq!(back.splat, s, "degree {degree} normals {normals} n {n}");
                assert!(back.sn17.passes(), "{:?}", back.sn17);
                assert!(back.ignored_properties.is_empty());
                assert_eq!(write_ply(&back.splat).expect("rewrite"), bytes);
                assert_eq!(back.report, ValidityReport::of(&s));
            }
        }
    }
}

#[test]
fn ply_round_trip_100k_points() {
    let mut rng = StdRng::seed_from_u64(2);
    let s = random_splat(&mut rng, 100_000, 0, false);
    let bytes = write_ply(&s).expect("write");
    let back = read(&bytes).expect("read");
    assert_eq!(back.splat, s);
    assert_eq!(back.report.count, 100_000);
}

#[test]
fn read_into_reuses_a_splat_of_another_shape() {
    let mut rng = StdRng::seed_from_u64(3);
    let big = random_splat(&mut rng, 500, 3, true);
    let small = random_splat(&mut rng, 20, 1, false);
    let mut slot = Splat::default();
    read_ply_into(
        &write_ply(&big).expect("w"),
        &PlyLimits::default(),
        &mut slot,
    )
    .expect("r");
    assert_eq!(slot, big);
    read_ply_into(
        &write_ply(&small).expect("w"),
        &PlyLimits::default(),
        &mut slot,
    )
    .expect("r");
    assert_eq!(slot, small);
}

#[test]
fn f_rest_is_channel_major_in_the_file_and_coefficient_major_in_memory() {
    // Degree 1: K = 3; file value of f_rest_{c*3+k} is 100*c + k.
    let mut names: Vec<String> = REQUIRED.iter().map(|s| s.to_string()).collect();
    names.extend((0..9).map(|j| format!("f_rest_{j}")));
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let bytes = ply_bytes(&header_for(&refs, 1), 1, refs.len(), |_, col| {
        match refs[col].strip_prefix("f_rest_") {
            Some(j) => {
                let j: usize = j.parse().unwrap_or_default();
                (100 * (j / 3) + j % 3) as f32
            }
            None => 0.5,
        }
    });
    let s = read(&bytes).expect("read").splat;
    assert_eq!(s.sh_degree, 1);
    for k in 0..3 {
        for c in 0..3 {
            assert_eq!(s.sh_rest[k * 3 + c], (100 * c + k) as f32, "k {k} c {c}");
        }
    }
    let mut cm = [0.0f32; 9];
    s.rest_channel_major(0, &mut cm);
    assert_eq!(
        cm,
        [0.0, 1.0, 2.0, 100.0, 101.0, 102.0, 200.0, 201.0, 202.0]
    );
    let mut back = [0.0f32; 9];
    channel_major_to_coeff_major(&cm, &mut back, 3);
    assert_eq!(&back[..], &s.sh_rest[..]);
}

#[test]
fn property_order_does_not_matter() {
    let mut rng = StdRng::seed_from_u64(4);
    for (degree, normals) in [(0u8, false), (2, true), (3, false)] {
        let s = random_splat(&mut rng, 300, degree, normals);
        let canonical = write_ply(&s).expect("write");
        let parsed = read(&canonical).expect("read");
        // Rebuild the file with the property order reversed and an unknown property added.
        let header_len = canonical
            .windows(11)
            .position(|w| w == b"end_header\n")
            .map(|p| p + 11)
            .expect("header");
        let text = std::str::from_utf8(&canonical[..header_len]).expect("ascii");
        let mut names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("property float "))
            .collect();
        let stride = names.len();
        let body = &canonical[header_len..];
        let value = |r: usize, c: usize| {
            let o = (r * stride + c) * 4;
            f32::from_le_bytes([body[o], body[o + 1], body[o + 2], body[o + 3]])
        };
        let order: Vec<usize> = (0..stride).rev().collect();
        names.reverse();
        let mut all: Vec<&str> = names.clone();
        all.push("filter_3d");
        let shuffled = ply_bytes(&header_for(&all, 300), 300, stride + 1, |r, c| {
            if c < stride {
                value(r, order[c])
            } else {
                42.0
            }
        });
        let back = read(&shuffled).expect("shuffled read");
        assert_eq!(back.splat, s);
        assert_eq!(back.report, parsed.report);
        assert_eq!(back.ignored_properties, vec!["filter_3d".to_string()]);
        // The rewrite is canonical again.
        assert_eq!(write_ply(&back.splat).expect("rewrite"), canonical);
    }
}

#[test]
fn normals_present_or_absent() {
    let mut with: Vec<&str> = vec!["x", "y", "z", "nx", "ny", "nz"];
    with.extend(&REQUIRED[3..]);
    let a = read(&minimal_ply(&with, 3)).expect("with normals");
    let normals = a.splat.normals.as_ref().expect("normals kept");
    assert_eq!(normals.len(), 3);
    assert_eq!(
        normals[1],
        [
            (31 + 3) as f32 * 0.01,
            (31 + 4) as f32 * 0.01,
            (31 + 5) as f32 * 0.01
        ]
    );
    let b = read(&minimal_ply(&REQUIRED, 3)).expect("without normals");
    assert!(b.splat.normals.is_none());
    assert_eq!(a.splat.positions, b.splat.positions);
    // Normals at the end of the record (non-canonical) too.
    let mut tail: Vec<&str> = REQUIRED.to_vec();
    tail.extend(["nx", "ny", "nz"]);
    let c = read(&minimal_ply(&tail, 2)).expect("normals last");
    assert!(c.splat.normals.is_some());
}

// ---------------------------------------------------------------------------------------
// PLY rejections: one test per reason, asserting the variant and that the message names it.

fn reject(bytes: &[u8]) -> PlyError {
    match read(bytes) {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    }
}

#[test]
fn rejects_ascii_format() {
    let mut b = minimal_ply(&REQUIRED, 1);
    let text = String::from_utf8_lossy(&b).replace("binary_little_endian", "ascii");
    b = text.into_bytes();
    let e = reject(&b);
    assert!(matches!(e, PlyError::AsciiFormat { .. }), "{e:?}");
    assert!(e.to_string().contains("ascii"), "{e}");
}

#[test]
fn rejects_big_endian_format() {
    let b = String::from_utf8_lossy(&minimal_ply(&REQUIRED, 1))
        .replace("binary_little_endian", "binary_big_endian")
        .into_bytes();
    let e = reject(&b);
    assert!(matches!(e, PlyError::BigEndianFormat { .. }), "{e:?}");
    assert!(e.to_string().contains("binary_big_endian"), "{e}");
}

#[test]
fn rejects_unknown_format_version() {
    let b = String::from_utf8_lossy(&minimal_ply(&REQUIRED, 1))
        .replace("little_endian 1.0", "little_endian 2.0")
        .into_bytes();
    let e = reject(&b);
    assert!(matches!(e, PlyError::UnknownFormat { .. }), "{e:?}");
    assert!(
        e.to_string().contains("format binary_little_endian 2.0"),
        "{e}"
    );
}

#[test]
fn rejects_non_float_property() {
    let mut lines = header_for(&REQUIRED, 1);
    lines.push("property uchar red".into());
    let e = reject(&ply_bytes(&lines, 1, 15, |_, _| 0.0));
    assert!(
        matches!(e, PlyError::NonFloatProperty { ref name, ref ty } if name == "red" && ty == "uchar"),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("`red`") && e.to_string().contains("uchar"),
        "{e}"
    );

    let mut lines = header_for(&REQUIRED, 1);
    lines.insert(1, "property double x2".into());
    let e = reject(&ply_bytes(&lines, 1, 15, |_, _| 0.0));
    assert!(
        e.to_string().contains("`x2`") && e.to_string().contains("double"),
        "{e}"
    );

    let mut lines = header_for(&REQUIRED, 1);
    lines.push("property list uchar int vertex_indices".into());
    let e = reject(&ply_bytes(&lines, 1, 14, |_, _| 0.0));
    assert!(matches!(e, PlyError::NonFloatProperty { .. }), "{e:?}");
    assert!(e.to_string().contains("vertex_indices"), "{e}");
}

#[test]
fn rejects_each_missing_required_property() {
    for missing in REQUIRED {
        let names: Vec<&str> = REQUIRED.iter().copied().filter(|n| *n != missing).collect();
        let e = reject(&minimal_ply(&names, 2));
        assert!(
            matches!(e, PlyError::MissingProperty { ref name } if name == missing),
            "{missing}: {e:?}"
        );
        assert!(e.to_string().contains(&format!("`{missing}`")), "{e}");
    }
}

#[test]
fn rejects_partial_normals() {
    let mut names: Vec<&str> = REQUIRED.to_vec();
    names.extend(["nx", "nz"]);
    let e = reject(&minimal_ply(&names, 1));
    assert!(
        matches!(e, PlyError::MissingProperty { ref name } if name == "ny"),
        "{e:?}"
    );
    assert!(e.to_string().contains("`ny`"), "{e}");
}

#[test]
fn rejects_duplicate_property() {
    let mut names: Vec<&str> = REQUIRED.to_vec();
    names.push("opacity");
    let e = reject(&minimal_ply(&names, 1));
    assert!(matches!(e, PlyError::DuplicateProperty { .. }), "{e:?}");
    assert!(e.to_string().contains("`opacity`"), "{e}");
}

#[test]
fn rejects_bad_f_rest_count_and_gaps() {
    let mut names: Vec<String> = REQUIRED.iter().map(|s| s.to_string()).collect();
    names.extend((0..6).map(|j| format!("f_rest_{j}")));
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let e = reject(&minimal_ply(&refs, 1));
    assert!(matches!(e, PlyError::ShRestCount { count: 6 }), "{e:?}");
    assert!(e.to_string().contains("f_rest_"), "{e}");

    let mut names: Vec<String> = REQUIRED.iter().map(|s| s.to_string()).collect();
    names.extend((0..9).map(|j| format!("f_rest_{}", if j == 4 { 40 } else { j })));
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let e = reject(&minimal_ply(&refs, 1));
    assert!(matches!(e, PlyError::ShRestGap { .. }), "{e:?}");
    assert!(e.to_string().contains("`f_rest_4`"), "{e}");
}

#[test]
fn rejects_unknown_element_layout() {
    let mut lines = header_for(&REQUIRED, 1);
    lines.push("element face 0".into());
    lines.push("property list uchar int vertex_indices".into());
    let e = reject(&ply_bytes(&lines, 1, 14, |_, _| 0.0));
    assert!(matches!(e, PlyError::UnknownElement { .. }), "{e:?}");
    assert!(e.to_string().contains("element face"), "{e}");

    let mut lines = header_for(&REQUIRED, 1);
    lines.insert(0, "element camera 1".into());
    let e = reject(&ply_bytes(&lines, 1, 14, |_, _| 0.0));
    assert!(e.to_string().contains("camera"), "{e}");

    // A second vertex element.
    let mut lines = header_for(&REQUIRED, 1);
    lines.push("element vertex 1".into());
    let e = reject(&ply_bytes(&lines, 1, 14, |_, _| 0.0));
    assert!(matches!(e, PlyError::UnknownElement { .. }), "{e:?}");
}

#[test]
fn rejects_header_over_64_kib() {
    let mut lines: Vec<String> = (0..3000)
        .map(|i| format!("comment padding line {i:>20}"))
        .collect();
    lines.extend(header_for(&REQUIRED, 1));
    let e = reject(&ply_bytes(&lines, 1, 14, |_, _| 0.0));
    assert!(
        matches!(e, PlyError::HeaderTooLarge { limit: 65536 }),
        "{e:?}"
    );
    assert!(e.to_string().contains("header"), "{e}");
}

#[test]
fn rejects_unterminated_header_and_missing_magic() {
    let e = reject(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n");
    assert!(matches!(e, PlyError::UnterminatedHeader), "{e:?}");
    assert!(e.to_string().contains("end_header"), "{e}");
    let e = reject(b"\x89PNG\r\n\x1a\n");
    assert!(matches!(e, PlyError::MissingMagic), "{e:?}");
    assert!(e.to_string().contains("`ply`"), "{e}");
}

#[test]
fn rejects_zero_vertices() {
    let e = reject(&minimal_ply(&REQUIRED, 0));
    assert!(matches!(e, PlyError::NoVertices), "{e:?}");
    assert!(e.to_string().contains("vertex count"), "{e}");
}

#[test]
fn rejects_vertex_count_over_configured_maximum() {
    let limits = PlyLimits {
        max_vertices: 10,
        ..PlyLimits::default()
    };
    let e = match read_ply(&minimal_ply(&REQUIRED, 11), &limits) {
        Err(e) => e,
        Ok(_) => panic!("accepted"),
    };
    assert!(
        matches!(
            e,
            PlyError::TooManyVertices {
                count: 11,
                limit: 10
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("vertex count 11"), "{e}");
    // The default cap is 10 M; a 2 KB file claiming 4 billion is refused before allocating.
    let lines = header_for(&REQUIRED, 4_000_000_000);
    let e = reject(&ply_bytes(&lines, 2, 14, |_, _| 0.0));
    assert!(
        matches!(
            e,
            PlyError::TooManyVertices {
                limit: 10_000_000,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(read(&minimal_ply(&REQUIRED, 10)).is_ok());
}

#[test]
fn rejects_bad_vertex_count_text() {
    let lines = header_for(&REQUIRED, 1);
    let lines: Vec<String> = lines
        .into_iter()
        .map(|l| l.replace("vertex 1", "vertex -1"))
        .collect();
    let e = reject(&ply_bytes(&lines, 1, 14, |_, _| 0.0));
    assert!(matches!(e, PlyError::BadVertexCount { .. }), "{e:?}");
    assert!(e.to_string().contains("vertex count `-1`"), "{e}");
}

#[test]
fn rejects_truncated_body_without_allocating_the_claimed_count() {
    // 9 M vertices claimed (under the cap), 1 record present.
    let lines = header_for(&REQUIRED, 9_000_000);
    let e = reject(&ply_bytes(&lines, 1, 14, |_, _| 0.0));
    assert!(
        matches!(
            e,
            PlyError::TruncatedBody {
                count: 9_000_000,
                stride: 56,
                actual: 56,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("truncated PLY body"), "{e}");
    // One byte short.
    let mut b = minimal_ply(&REQUIRED, 3);
    b.pop();
    assert!(matches!(reject(&b), PlyError::TruncatedBody { .. }));
}

#[test]
fn rejects_trailing_bytes() {
    let mut b = minimal_ply(&REQUIRED, 3);
    b.extend_from_slice(b"junk");
    let e = reject(&b);
    assert!(matches!(e, PlyError::TrailingBytes { extra: 4 }), "{e:?}");
    assert!(e.to_string().contains("trailing"), "{e}");
}

#[test]
fn rejects_input_over_size_cap_and_unexpected_lines() {
    let limits = PlyLimits {
        max_input_bytes: 100,
        ..PlyLimits::default()
    };
    let e = match read_ply(&minimal_ply(&REQUIRED, 3), &limits) {
        Err(e) => e,
        Ok(_) => panic!("accepted"),
    };
    assert!(matches!(e, PlyError::InputTooLarge { .. }), "{e:?}");
    assert!(e.to_string().contains("input cap"), "{e}");

    let mut lines = header_for(&REQUIRED, 1);
    lines.push("bogus line".into());
    let e = reject(&ply_bytes(&lines, 1, 14, |_, _| 0.0));
    assert!(matches!(e, PlyError::UnexpectedHeaderLine { .. }), "{e:?}");
    assert!(e.to_string().contains("`bogus line`"), "{e}");
}

#[test]
fn accepts_comments_and_crlf_but_sn17_check_flags_them() {
    let mut lines = vec!["comment made by a generator".to_string()];
    lines.extend(header_for(&REQUIRED, 2));
    let b = ply_bytes(&lines, 2, 14, |r, c| (r + c) as f32);
    let d = read(&b).expect("comments are fine for our reader");
    assert!(!d.sn17.passes());
    assert!(
        d.sn17
            .problems
            .iter()
            .any(|p| matches!(p, Sn17Problem::VertexLine { .. })),
        "{:?}",
        d.sn17
    );

    let crlf = String::from_utf8_lossy(&minimal_ply(&REQUIRED, 1)[..]).to_string();
    let header_end = crlf.find("end_header\n").expect("h") + 11;
    let mut b = crlf[..header_end].replace('\n', "\r\n").into_bytes();
    b.extend_from_slice(&minimal_ply(&REQUIRED, 1)[header_end..]);
    let d = read(&b).expect("CRLF header");
    assert!(d
        .sn17
        .problems
        .iter()
        .any(|p| matches!(p, Sn17Problem::FirstLine { .. })));
}

#[test]
fn sn17_check_rules() {
    let mut rng = StdRng::seed_from_u64(5);
    let good = write_ply(&random_splat(&mut rng, 10, 3, true)).expect("w");
    assert!(sn17_strict_check(&good).passes());
    // A non-float property after line 3.
    let mut lines = header_for(&REQUIRED, 1);
    lines.push("property double extra".into());
    let r = sn17_strict_check(&ply_bytes(&lines, 1, 15, |_, _| 0.0));
    assert!(
        r.problems
            .iter()
            .any(|p| matches!(p, Sn17Problem::NotFloatProperty { line_no: 18, .. })),
        "{r:?}"
    );
    // `float32` spelled out is fine for us, not for SN17.
    let text =
        String::from_utf8_lossy(&good[..200]).replace("property float x\n", "property float32 x\n");
    let mut b = text.into_bytes();
    b.extend_from_slice(&good[200..]);
    let ours = read(&b).expect("float32 accepted");
    assert!(!ours.sn17.passes());
    // Count over SN17's 10 Mi and over the validator's SPZ limit.
    let r = sn17_strict_check(
        b"ply\nformat binary_little_endian 1.0\nelement vertex 10485761\nend_header\n",
    );
    assert!(
        r.problems
            .contains(&Sn17Problem::VertexCount { count: 10_485_761 }),
        "{r:?}"
    );
    let r = sn17_strict_check(
        b"ply\nformat binary_little_endian 1.0\nelement vertex 10000001\nproperty float y\nend_header\n",
    );
    assert!(
        r.problems
            .contains(&Sn17Problem::OverSpzPointLimit { count: 10_000_001 }),
        "{r:?}"
    );
    assert!(r
        .problems
        .iter()
        .any(|p| matches!(p, Sn17Problem::MissingField { name: "x" })));
    assert!(r
        .problems
        .iter()
        .any(|p| matches!(p, Sn17Problem::TruncatedBody { .. })));
    // Missing end_header.
    let r = sn17_strict_check(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n");
    assert!(r.problems.contains(&Sn17Problem::NoEndHeader));
}

// ---------------------------------------------------------------------------------------
// SPZ round trips: per-field error bounds.

/// Documented per-field SPZ (version 2) quantisation error bounds, for values inside the
/// representable ranges.
mod bound {
    /// Positions: half a step of 2^-12.
    pub const POSITION: f32 = 0.5 / 4096.0 + 1e-6;
    /// Log scales: half a step of 1/16.
    pub const SCALE: f32 = 0.5 / 16.0 + 1e-5;
    /// Opacity after the sigmoid: half a step of 1/255.
    pub const ALPHA: f32 = 0.5 / 255.0 + 1e-6;
    /// DC colour: half a step of 1/(255 * 0.15).
    pub const COLOR: f32 = 0.5 / (255.0 * 0.15) + 1e-5;
    /// Rotation x, y, z (after normalising and flipping to w ≥ 0): half a step of 1/127.5.
    pub const ROT_XYZ: f32 = 0.5 / 127.5 + 1e-6;
    /// Rotation w, rebuilt as sqrt(1 - |xyz|²): sqrt(2·√3·ROT_XYZ + 3·ROT_XYZ²).
    pub const ROT_W: f32 = 0.12;
    /// Degree-1 SH: rounding to 1/128 then to a bucket of 8/128.
    pub const SH1: f32 = 4.5 / 128.0 + 1e-6;
    /// Degree-2/3 SH: rounding to 1/128 then to a bucket of 16/128.
    pub const SH_REST: f32 = 8.5 / 128.0 + 1e-6;
    /// Version-3 smallest-three components: half a step of sqrt(1/2)/511.
    pub const ROT_V3: f32 = 0.5 * std::f32::consts::FRAC_1_SQRT_2 / 511.0 + 1e-5;
}

fn assert_within(what: &str, a: f32, b: f32, tol: f32) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b} (tolerance {tol})");
}

fn normalised_w_positive(q: [f32; 4]) -> [f32; 4] {
    let n = q.iter().map(|v| v * v).sum::<f32>().sqrt();
    let s = if q[0] < 0.0 { -1.0 } else { 1.0 };
    q.map(|v| v * s / n)
}

fn assert_spz_close(orig: &Splat, dec: &Splat, version: u32) {
    assert_eq!(dec.len(), orig.len());
    assert_eq!(dec.sh_degree, orig.sh_degree);
    assert!(dec.normals.is_none());
    let k = orig.rest_coeffs();
    for i in 0..orig.len() {
        for a in 0..3 {
            assert_within(
                "position",
                dec.positions[i][a],
                orig.positions[i][a],
                bound::POSITION,
            );
            assert_within(
                "log scale",
                dec.log_scales[i][a],
                orig.log_scales[i][a],
                bound::SCALE,
            );
            assert_within("dc colour", dec.sh_dc[i][a], orig.sh_dc[i][a], bound::COLOR);
        }
        assert_within(
            "opacity",
            sigmoid(dec.opacities[i]),
            sigmoid(orig.opacities[i]),
            bound::ALPHA,
        );
        let q = normalised_w_positive(orig.rotations[i]);
        let d = dec.rotations[i];
        if version >= 3 {
            // Same rotation up to sign: align on the largest component.
            let big = (0..4)
                .max_by(|&x, &y| q[x].abs().total_cmp(&q[y].abs()))
                .unwrap_or(0);
            let s = if (q[big] < 0.0) != (d[big] < 0.0) {
                -1.0
            } else {
                1.0
            };
            for a in 0..4 {
                let tol = if a == big { 0.01 } else { bound::ROT_V3 };
                assert_within("rotation v3", d[a] * s, q[a], tol);
            }
        } else {
            for a in 1..4 {
                assert_within("rotation xyz", d[a], q[a], bound::ROT_XYZ);
            }
            assert_within("rotation w", d[0], q[0], bound::ROT_W);
        }
        for j in 0..k * 3 {
            let tol = if j < 9 { bound::SH1 } else { bound::SH_REST };
            assert_within(
                "sh",
                dec.sh_rest[i * k * 3 + j],
                orig.sh_rest[i * k * 3 + j],
                tol,
            );
        }
    }
}

#[test]
fn spz_round_trip_within_quantisation_error_all_degrees() {
    let mut rng = StdRng::seed_from_u64(6);
    for degree in 0..=3u8 {
        for n in [1usize, 333, 20_000] {
            let s = random_splat(&mut rng, n, degree, degree % 2 == 0);
            let bytes = encode_spz(&s).expect("encode");
            assert_eq!(
                zstd::zstd_safe::get_frame_content_size(&bytes).ok(),
                Some(Some((16 + n * (19 + 3 * s.rest_coeffs())) as u64)),
                "one frame with its content size"
            );
            let d = decode_spz(&bytes, &SpzLimits::default()).expect("decode");
            assert_eq!(d.container, SpzContainer::Zstd);
            assert_eq!((d.version, d.flags, d.fractional_bits), (2, 0, 12));
            assert_spz_close(&s, &d.splat, 2);
        }
    }
}

#[test]
fn spz_round_trip_100k_points() {
    let mut rng = StdRng::seed_from_u64(7);
    let s = random_splat(&mut rng, 100_000, 1, false);
    let d = decode_spz(&encode_spz(&s).expect("e"), &SpzLimits::default()).expect("d");
    assert_spz_close(&s, &d.splat, 2);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

#[test]
fn decodes_niantic_gzip_versions_2_and_3() {
    let mut rng = StdRng::seed_from_u64(8);
    for degree in 0..=3u8 {
        let s = random_splat(&mut rng, 500, degree, false);
        for version in [2u32, 3] {
            let payload = pack_payload(&s, version).expect("pack");
            let d = decode_spz(&gzip(&payload), &SpzLimits::default()).expect("decode gzip");
            assert_eq!(d.container, SpzContainer::Gzip);
            assert_eq!(d.version, version);
            assert_spz_close(&s, &d.splat, version);
        }
        // The zstd (SN17) and gzip (Niantic) version-2 payloads decode identically.
        let z = decode_spz(&encode_spz(&s).expect("e"), &SpzLimits::default()).expect("z");
        let g = decode_spz(
            &gzip(&pack_payload(&s, 2).expect("p")),
            &SpzLimits::default(),
        )
        .expect("g");
        assert_eq!(z.splat, g.splat);
    }
}

#[test]
fn spz_bytes_are_deterministic_and_match_hand_computed_quantisation() {
    let mut s = Splat::zeroed(1, 0, false);
    s.positions[0] = [1.0, -0.5, 1.0 / 8192.0];
    s.opacities[0] = 0.0;
    s.log_scales[0] = [-10.0, 0.0, 5.9375];
    s.sh_dc[0] = [0.0, 1.0, -1.0];
    s.rotations[0] = [1.0, 0.0, 0.0, 0.0];
    let p = pack_payload(&s, 2).expect("pack");
    assert_eq!(
        &p[..16],
        &[0x4e, 0x47, 0x53, 0x50, 2, 0, 0, 0, 1, 0, 0, 0, 0, 12, 0, 0]
    );
    // 1.0 * 4096 = 0x001000; -0.5 * 4096 = -2048 = 0xfff800; 2^-13 * 4096 = 0.5 → 1.
    assert_eq!(
        &p[16..25],
        &[0x00, 0x10, 0x00, 0x00, 0xf8, 0xff, 0x01, 0x00, 0x00]
    );
    assert_eq!(p[25], 128, "sigmoid(0) * 255 = 127.5 rounds away from zero");
    // 0.5*255 = 127.5 → 128; 38.25 + 127.5 = 165.75 → 166; 127.5 - 38.25 = 89.25 → 89.
    assert_eq!(&p[26..29], &[128, 166, 89]);
    assert_eq!(&p[29..32], &[0, 160, 255]);
    assert_eq!(
        &p[32..35],
        &[128, 128, 128],
        "identity: xyz = 0 → 127.5 → 128"
    );
}

// ---------------------------------------------------------------------------------------
// SPZ rejections.

fn spz_reject(bytes: &[u8]) -> SpzError {
    match decode_spz(bytes, &SpzLimits::default()) {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    }
}

fn zstd1(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, 1).expect("zstd")
}

fn header(version: u32, count: u32, degree: u8) -> Vec<u8> {
    let mut h = 0x5053_474eu32.to_le_bytes().to_vec();
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&count.to_le_bytes());
    h.extend_from_slice(&[degree, 12, 0, 0]);
    h
}

#[test]
fn spz_rejections_name_the_field() {
    let e = spz_reject(b"PK\x03\x04rest");
    assert!(matches!(e, SpzError::UnknownContainer { .. }), "{e:?}");
    assert!(e.to_string().contains("zstd"), "{e}");

    let e = spz_reject(&zstd1(&[1, 2, 3]));
    assert!(matches!(e, SpzError::ShortHeader { len: 3 }), "{e:?}");

    let mut h = header(2, 1, 0);
    h[0] = 0;
    let e = spz_reject(&zstd1(&h));
    assert!(
        matches!(e, SpzError::BadMagic { .. }) && e.to_string().contains("magic"),
        "{e}"
    );

    for (v, gz) in [(1u32, false), (3, false), (4, true), (1, true)] {
        let h = header(v, 1, 0);
        let e = spz_reject(&if gz { gzip(&h) } else { zstd1(&h) });
        assert!(
            matches!(e, SpzError::UnsupportedVersion { version, .. } if version == v),
            "{e:?}"
        );
        assert!(e.to_string().contains("version"), "{e}");
    }

    let e = spz_reject(&zstd1(&header(2, 0, 0)));
    assert!(
        matches!(e, SpzError::NoPoints) && e.to_string().contains("point count"),
        "{e}"
    );

    let e = spz_reject(&zstd1(&header(2, 1, 4)));
    assert!(
        matches!(e, SpzError::UnsupportedShDegree { degree: 4 }),
        "{e:?}"
    );
    assert!(e.to_string().contains("SH degree"), "{e}");

    // A 30-byte file claiming 4 billion points: refused from the header alone.
    let e = spz_reject(&zstd1(&header(2, 4_000_000_000, 3)));
    assert!(
        matches!(e, SpzError::TooManyPoints { .. }) && e.to_string().contains("point count"),
        "{e}"
    );

    // Claiming 9 M points with 100 bytes of data: truncated in `positions`, nothing allocated.
    let mut p = header(2, 9_000_000, 0);
    p.extend_from_slice(&[0; 100]);
    let e = spz_reject(&zstd1(&p));
    assert!(
        matches!(
            e,
            SpzError::Truncated {
                section: "positions",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("`positions`"), "{e}");

    // Truncated in `sh`.
    let mut rng = StdRng::seed_from_u64(9);
    let s = random_splat(&mut rng, 10, 2, false);
    let mut p = pack_payload(&s, 2).expect("p");
    p.pop();
    let e = spz_reject(&zstd1(&p));
    assert!(
        matches!(e, SpzError::Truncated { section: "sh", .. }),
        "{e:?}"
    );

    let mut p = pack_payload(&s, 2).expect("p");
    p.push(0);
    let e = spz_reject(&zstd1(&p));
    assert!(
        matches!(e, SpzError::TrailingBytes { extra: 1 }) && e.to_string().contains("trailing"),
        "{e}"
    );

    // Two zstd frames.
    let mut two = zstd1(&pack_payload(&s, 2).expect("p"));
    two.extend_from_slice(&zstd1(b"more"));
    let e = spz_reject(&two);
    assert!(
        matches!(e, SpzError::NotOneFrame { .. }) && e.to_string().contains("frame"),
        "{e}"
    );

    // Corrupt zstd data.
    let mut bad = zstd1(&pack_payload(&s, 2).expect("p"));
    let len = bad.len();
    bad.truncate(len - 3);
    assert!(decode_spz(&bad, &SpzLimits::default()).is_err());

    // Decompression bomb over the cap derived from a small point limit.
    let limits = SpzLimits {
        max_points: 10,
        ..SpzLimits::default()
    };
    let big = zstd1(&vec![0u8; 1 << 20]);
    match decode_spz(&big, &limits) {
        Err(SpzError::DecompressedTooLarge { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn spz_encoder_refuses_inconsistent_or_empty_splats() {
    let mut s = Splat::zeroed(3, 1, false);
    s.sh_rest.pop();
    match encode_spz(&s) {
        Err(SpzError::Shape(SplatShapeError::Length {
            field: "sh_rest", ..
        })) => {}
        other => panic!("{other:?}"),
    }
    match encode_spz(&Splat::default()) {
        Err(SpzError::NoPoints) => {}
        other => panic!("{other:?}"),
    }
    assert!(write_ply(&s).is_err());
}

#[test]
fn unpack_payload_is_safe_on_header_only_payloads() {
    let r = unpack_payload(&header(3, 2, 3), SpzContainer::Gzip, &SpzLimits::default());
    assert!(matches!(
        r,
        Err(SpzError::Truncated {
            section: "positions",
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------
// Validity statistics.

fn healthy(n: usize) -> Splat {
    let mut rng = StdRng::seed_from_u64(10);
    let mut s = random_splat(&mut rng, n, 0, false);
    for o in s.opacities.iter_mut() {
        *o = o.abs();
    }
    s
}

#[test]
fn validity_report_counts_and_hard_zero_rules() {
    let s = healthy(8000);
    let r = s.validity();
    assert_eq!(r.count, 8000);
    assert_eq!(r.non_finite.total(), 0);
    assert!(r.hard_zero().is_empty(), "{:?}", r.hard_zero());
    assert!(r.is_clean());
    for a in 0..3 {
        assert!(r.bbox_min[a] >= -5.0 && r.bbox_max[a] <= 5.0 && r.bbox_min[a] < r.bbox_max[a]);
    }

    let r = healthy(6999).validity();
    assert_eq!(
        r.hard_zero(),
        vec![HardZero::TooFewGaussians { count: 6999 }]
    );

    // 80 % exactly is fine, 80 % + 1 is not.
    let mut s = healthy(10_000);
    for o in s.opacities.iter_mut().take(8000) {
        *o = -20.0;
    }
    assert!(s.validity().hard_zero().is_empty());
    s.opacities[8000] = -7.0; // sigmoid(-7) = 0.00091
    let r = s.validity();
    assert_eq!(r.low_opacity, 8001);
    assert!(matches!(
        r.hard_zero()[..],
        [HardZero::MostlyTransparent { .. }]
    ));

    let mut s = healthy(8000);
    for q in s.rotations.iter_mut() {
        *q = [2.5, 0.0, 0.0, 0.0];
    }
    assert!(s.validity().all_rotations_identity);
    assert_eq!(
        s.validity().hard_zero(),
        vec![HardZero::AllRotationsIdentity]
    );
    s.rotations[7999] = [1.0, 1e-4, 0.0, 0.0];
    assert!(!s.validity().all_rotations_identity);

    let mut s = healthy(8000);
    s.positions[2] = [1.0, 1.000_001, 0.999_999];
    assert_eq!(
        s.validity().hard_zero(),
        vec![HardZero::PointAtOnes { index: 2 }]
    );
    s.positions[2] = [1.0, 1.0, 1.1];
    s.positions[3] = [1.0, 1.0, 1.0];
    assert!(
        s.validity().hard_zero().is_empty(),
        "only the first three points are checked"
    );
}

#[test]
fn validity_report_non_finite_and_spz_range() {
    let mut s = healthy(8000);
    s.positions[5] = [f32::NAN, 3000.0, -2048.0];
    s.opacities[6] = f32::INFINITY;
    s.rotations[7][2] = f32::NEG_INFINITY;
    s.log_scales[8] = [f32::NAN; 3];
    let r = s.validity();
    assert_eq!(r.non_finite.position, 1);
    assert_eq!(r.non_finite.opacity, 1);
    assert_eq!(r.non_finite.rotation, 1);
    assert_eq!(r.non_finite.scale, 3);
    assert_eq!(r.non_finite.total(), 6);
    assert_eq!(r.outside_spz_range, 2, "NaN and 3000; -2048 fits");
    assert_eq!(r.bbox_max[1], 3000.0);
    assert!(!r.is_clean());
    // The same numbers come out of the fused parse.
    let parsed = read(&write_ply(&s).expect("w")).expect("r");
    assert_eq!(parsed.report, r);
}

#[test]
fn low_opacity_threshold_is_the_exact_float32_boundary() {
    let t = super::stats::low_opacity_logit_threshold();
    assert!(sigmoid(t) >= ZERO_OPACITY_EPSILON);
    let below = f32::from_bits(t.to_bits() + 1); // t is negative: +1 ulp of bits is smaller
    assert!(below < t);
    assert!(sigmoid(below) < ZERO_OPACITY_EPSILON);
    assert!((t - (-6.906_755)).abs() < 1e-3, "{t}");
}

// ---------------------------------------------------------------------------------------
// Byte-for-byte agreement with the reference implementation.

/// Models with awkward values: clamps, wrap-around positions, exact rounding ties, w ≤ 0.
fn golden_splat(degree: u8) -> Splat {
    let mut rng = StdRng::seed_from_u64(100 + u64::from(degree));
    let n = 400;
    let mut s = Splat::zeroed(n, degree, false);
    let k3 = s.rest_coeffs() * 3;
    for i in 0..n {
        let tie = |rng: &mut StdRng, step: f32, lo: i32, hi: i32| {
            (rng.random_range(lo..hi) as f32 + 0.5) * step
        };
        match i % 4 {
            0 => {
                s.positions[i] = [0; 3].map(|_| rng.random_range(-5.0..5.0));
                s.sh_dc[i] = [0; 3].map(|_| rng.random_range(-3.0..3.0));
                s.opacities[i] = rng.random_range(-8.0..8.0);
                s.log_scales[i] = [0; 3].map(|_| rng.random_range(-9.0..5.0));
                s.rotations[i] = [0; 4].map(|_| rng.random_range(-1.0..1.0));
            }
            1 => {
                s.positions[i] = [0; 3].map(|_| rng.random_range(-3000.0..3000.0));
                s.sh_dc[i] = [0; 3].map(|_| rng.random_range(-10.0..10.0));
                s.opacities[i] = rng.random_range(-30.0..30.0);
                s.log_scales[i] = [0; 3].map(|_| rng.random_range(-30.0..30.0));
                s.rotations[i] = [0; 4].map(|_| rng.random_range(-100.0..100.0));
            }
            2 => {
                s.positions[i] = [0; 3].map(|_| tie(&mut rng, 1.0 / 4096.0, -9000, 9000));
                s.sh_dc[i] = [0; 3].map(|_| (tie(&mut rng, 1.0, 0, 255) - 127.5) / 38.25);
                s.opacities[i] = [0.0, -0.0, 1e-7, -1e-7][i / 4 % 4];
                s.log_scales[i] = [0; 3].map(|_| tie(&mut rng, 1.0 / 16.0, 0, 255) - 10.0);
                s.rotations[i] = [0.0, 1.0, 0.0, 0.0];
            }
            _ => {
                s.positions[i] = [2047.9999, -2048.0, 2048.0];
                s.sh_dc[i] = [0; 3].map(|_| rng.random_range(-0.01..0.01));
                s.opacities[i] = rng.random_range(-20.0..-6.0);
                s.log_scales[i] = [-10.0, -10.03, 5.97];
                let w = [-1e-6, 0.0, -0.5, 1e-6][i / 4 % 4];
                s.rotations[i] = [w, rng.random_range(-1.0..1.0), 0.3, -0.2];
            }
        }
        for j in 0..k3 {
            s.sh_rest[i * k3 + j] = match i % 4 {
                1 => rng.random_range(-2.0..2.0),
                2 => tie(&mut rng, 1.0 / 128.0, -130, 130),
                _ => rng.random_range(-1.0..1.0),
            };
        }
    }
    s
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `testdata/golden_sh{d}.spz` were made by 404-Repo/spz tag 0.1 (`pyspz` as SN17 pins it),
/// built as its Python wheel is (`-O3`, x86-64 baseline), running `spz::compress` on
/// `write_ply(golden_splat(d))`; `golden_sh{d}.decoded.sha256` is the SHA-256 of the PLY its
/// `spz::decompress(.., include_normals = false)` makes from that SPZ. Regenerate the input
/// PLYs with `SPLAT_GOLDEN_DUMP=dir cargo test -p splatfleet-common golden`.
#[test]
fn golden_payload_and_decoded_ply_match_the_reference_implementation() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/splat/testdata");
    for degree in 0..=3u8 {
        let s = golden_splat(degree);
        if let Some(out) = std::env::var_os("SPLAT_GOLDEN_DUMP") {
            let path = std::path::Path::new(&out).join(format!("golden_sh{degree}.ply"));
            std::fs::write(path, write_ply(&s).expect("w")).expect("dump");
            continue;
        }
        let reference = std::fs::read(dir.join(format!("golden_sh{degree}.spz"))).expect("fixture");
        let ref_payload = zstd::decode_all(&reference[..]).expect("reference zstd");
        let ours = pack_payload(&s, 2).expect("pack");
        assert_eq!(ours.len(), ref_payload.len(), "SH{degree} payload length");
        if let Some(at) = ours.iter().zip(&ref_payload).position(|(a, b)| a != b) {
            panic!(
                "SH{degree}: payload differs from the reference at byte {at}: ours {} reference {}",
                ours[at], ref_payload[at]
            );
        }
        let decoded = decode_spz(&reference, &SpzLimits::default()).expect("decode reference");
        let ply = write_ply(&decoded.splat).expect("w");
        let want = std::fs::read_to_string(dir.join(format!("golden_sh{degree}.decoded.sha256")))
            .expect("fixture");
        assert_eq!(
            sha256_hex(&ply),
            want.trim(),
            "SH{degree}: decoded PLY differs from the reference's"
        );
    }
}

/// `testdata/niantic_sh{d}_v{v}.spz` were made by nianticlabs/spz 21715c3 (`saveSpz` with
/// `PackOptions::version = v`, gzip) from `write_ply(golden_splat(d))`;
/// `niantic_sh{d}_v{v}.decoded.sha256` hashes what its `loadSpz` decodes from them, dumped
/// per point as little-endian f32: position xyz, log scale xyz, rotation xyzw, opacity logit,
/// DC rgb, SH (coefficient-major).
#[test]
fn niantic_gzip_v2_v3_fixtures_decode_exactly_as_the_reference() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/splat/testdata");
    for degree in 0..=3u8 {
        let s = golden_splat(degree);
        for version in [2u32, 3] {
            let name = format!("niantic_sh{degree}_v{version}");
            let file = std::fs::read(dir.join(format!("{name}.spz"))).expect("fixture");
            // Our packer produces the reference's payload byte for byte.
            let mut payload = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&file[..]), &mut payload)
                .expect("gunzip");
            assert!(
                pack_payload(&s, version).expect("pack") == payload,
                "{name}: payload differs"
            );
            let d = decode_spz(&file, &SpzLimits::default()).expect("decode");
            assert_eq!((d.container, d.version), (SpzContainer::Gzip, version));
            let mut dump = Vec::new();
            let put = |dump: &mut Vec<u8>, v: f32| dump.extend_from_slice(&v.to_le_bytes());
            let k3 = d.splat.rest_coeffs() * 3;
            for i in 0..d.splat.len() {
                d.splat.positions[i].iter().for_each(|&v| put(&mut dump, v));
                d.splat.log_scales[i]
                    .iter()
                    .for_each(|&v| put(&mut dump, v));
                let [w, x, y, z] = d.splat.rotations[i];
                [x, y, z, w].iter().for_each(|&v| put(&mut dump, v));
                put(&mut dump, d.splat.opacities[i]);
                d.splat.sh_dc[i].iter().for_each(|&v| put(&mut dump, v));
                d.splat.sh_rest[i * k3..(i + 1) * k3]
                    .iter()
                    .for_each(|&v| put(&mut dump, v));
            }
            let want = std::fs::read_to_string(dir.join(format!("{name}.decoded.sha256")))
                .expect("fixture");
            assert_eq!(
                sha256_hex(&dump),
                want.trim(),
                "{name}: decoded values differ"
            );
        }
    }
}
