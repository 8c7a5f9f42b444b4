//! A corpus of broken and borderline PLY and SPZ files for the bad-input suite. The fuzzers'
//! own corpora (`common/fuzz`) are git-ignored and never kept, so this regenerates the same
//! kinds of input deterministically: valid seeds (SH 0 and 3, with and without normals, SPZ)
//! put through bit flips, truncations, header edits (vertex counts from 0 to 2^64, wrong
//! property types, other formats, a missing `end_header`), SPZ header fields out of range behind
//! a valid zstd frame, and plain noise. Every file is a few kilobytes to a few hundred.

use splatfleet_common::splat::{encode_spz, write_ply, Splat};

use crate::sim::models::{object, SimRng};

/// Gaussians in each seed model: enough for every section to be present, small enough that
/// the gate judges the files that still decode in milliseconds.
const SEED_GAUSSIANS: usize = 1_500;
/// Gaussians of the one seed over the validator's 7,000 floor, so that files which still decode
/// go past the hard-zero rules into the renderer (with NaN, infinite and huge values).
const BIG_SEED_GAUSSIANS: usize = 7_200;

/// One corpus file: a name saying how it was made, and its bytes.
#[derive(Debug, Clone)]
pub struct CorpusFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

fn with_sh3(mut splat: Splat, seed: u64) -> Splat {
    let mut rng = SimRng::new(seed);
    splat.sh_degree = 3;
    splat.sh_rest = (0..splat.positions.len() * 45)
        .map(|_| rng.unit() - 0.5)
        .collect();
    splat
}

fn with_normals(mut splat: Splat) -> Splat {
    splat.normals = Some(vec![[0.0, 0.0, 1.0]; splat.positions.len()]);
    splat
}

/// Named valid files a mutation starts from.
type Seeds = Vec<(&'static str, Vec<u8>)>;

/// The valid seeds: PLYs and SPZs.
fn seeds() -> (Seeds, Seeds) {
    let plain = object(SEED_GAUSSIANS, 11);
    let sh3 = with_sh3(object(SEED_GAUSSIANS, 12), 12);
    let normals = with_normals(object(SEED_GAUSSIANS, 13));
    let ply = |s: &Splat| write_ply(s).unwrap_or_default();
    let spz = |s: &Splat| encode_spz(s).unwrap_or_default();
    (
        vec![
            ("ply_big", ply(&object(BIG_SEED_GAUSSIANS, 14))),
            ("ply_sh0", ply(&plain)),
            ("ply_sh3", ply(&sh3)),
            ("ply_normals", ply(&normals)),
        ],
        vec![("spz_sh0", spz(&plain)), ("spz_sh3", spz(&sh3))],
    )
}

fn flip_bits(bytes: &[u8], rng: &mut SimRng, flips: usize, within: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let span = within.min(out.len()).max(1);
    for _ in 0..flips {
        let at = rng.between(0, span - 1);
        if let Some(byte) = out.get_mut(at) {
            *byte ^= 1 << rng.between(0, 7);
        }
    }
    out
}

fn header_end(ply: &[u8]) -> usize {
    ply.windows(11)
        .position(|w| w == b"end_header\n")
        .map_or(ply.len(), |at| at + 11)
}

/// The PLY with `from` replaced by `to` in its header only.
fn edit_header(ply: &[u8], from: &str, to: &str) -> Vec<u8> {
    let end = header_end(ply);
    let header = String::from_utf8_lossy(&ply[..end]).replacen(from, to, 1);
    let mut out = header.into_bytes();
    out.extend_from_slice(&ply[end..]);
    out
}

/// SPZ bytes with their decompressed payload changed by `edit` and compressed again.
fn edit_spz(spz: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let Ok(mut payload) = zstd::stream::decode_all(spz) else {
        return spz.to_vec();
    };
    edit(&mut payload);
    zstd::bulk::compress(&payload, 1).unwrap_or_default()
}

fn put_u32(payload: &mut [u8], at: usize, value: u32) {
    if let Some(slot) = payload.get_mut(at..at + 4) {
        slot.copy_from_slice(&value.to_le_bytes());
    }
}

/// The whole corpus, the same on every run.
pub fn mutated_corpus() -> Vec<CorpusFile> {
    let (plys, spzs) = seeds();
    let mut files = Vec::new();
    let mut add = |name: String, bytes: Vec<u8>| files.push(CorpusFile { name, bytes });
    let mut rng = SimRng::new(0x0bad_1e55);

    for (seed, ply) in &plys {
        add(format!("{seed}_intact.ply"), ply.clone());
        let header = header_end(ply);
        for n in 0..8 {
            add(
                format!("{seed}_header_flip_{n}.ply"),
                flip_bits(ply, &mut rng, 1 + n % 3, header),
            );
            add(
                format!("{seed}_body_flip_{n}.ply"),
                flip_bits(ply, &mut rng, 1 + 4 * n, ply.len()),
            );
            let cut = rng.between(0, ply.len() - 1);
            add(format!("{seed}_cut_{n}.ply"), ply[..cut].to_vec());
            // Aligned float slots of the body set to values no generator should send.
            let mut odd = ply.clone();
            let floats = (ply.len() - header) / 4;
            for _ in 0..1 + 16 * n {
                let value = [
                    f32::NAN,
                    f32::INFINITY,
                    f32::NEG_INFINITY,
                    3.0e38,
                    -3.0e38,
                    1e-45,
                ][rng.between(0, 5)];
                let at = header + 4 * rng.between(0, floats - 1);
                odd[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            add(format!("{seed}_odd_floats_{n}.ply"), odd);
        }
        let count = format!(
            "element vertex {}",
            if *seed == "ply_big" {
                BIG_SEED_GAUSSIANS
            } else {
                SEED_GAUSSIANS
            }
        );
        for (label, to) in [
            ("vertex_zero", "element vertex 0".to_owned()),
            (
                "vertex_one_more",
                format!("element vertex {}", SEED_GAUSSIANS + 1),
            ),
            ("vertex_u32_max", "element vertex 4294967295".to_owned()),
            (
                "vertex_u64_max",
                "element vertex 18446744073709551615".to_owned(),
            ),
            ("vertex_negative", "element vertex -1".to_owned()),
            ("vertex_not_a_number", "element vertex lots".to_owned()),
        ] {
            add(format!("{seed}_{label}.ply"), edit_header(ply, &count, &to));
        }
        for (label, from, to) in [
            ("ascii", "binary_little_endian", "ascii"),
            ("big_endian", "binary_little_endian", "binary_big_endian"),
            ("format_2", "1.0", "2.0"),
            ("double_x", "property float x", "property double x"),
            (
                "uchar_opacity",
                "property float opacity",
                "property uchar opacity",
            ),
            ("list_x", "property float x", "property list uchar float x"),
            ("no_rot_3", "property float rot_3\n", ""),
            ("duplicate_x", "property float y", "property float x"),
            ("no_end_header", "end_header\n", ""),
            ("second_element", "end_header", "element face 1\nend_header"),
            ("not_ply", "ply\n", "plx\n"),
        ] {
            add(format!("{seed}_{label}.ply"), edit_header(ply, from, to));
        }
    }

    for (seed, spz) in &spzs {
        add(format!("{seed}_intact.spz"), spz.clone());
        for n in 0..6 {
            add(
                format!("{seed}_frame_flip_{n}.spz"),
                flip_bits(spz, &mut rng, 1 + n, spz.len()),
            );
            let cut = rng.between(0, spz.len() - 1);
            add(format!("{seed}_frame_cut_{n}.spz"), spz[..cut].to_vec());
            let mut payload_rng = SimRng::new(rng.next_u64());
            add(
                format!("{seed}_payload_flip_{n}.spz"),
                edit_spz(spz, |p| {
                    *p = flip_bits(p, &mut payload_rng, 1 + 8 * n, p.len());
                }),
            );
            let keep = rng.between(0, 4096);
            add(
                format!("{seed}_payload_cut_{n}.spz"),
                edit_spz(spz, |p| p.truncate(keep)),
            );
        }
        for (label, at, value) in [
            ("bad_magic", 0, 0x1234_5678),
            ("version_0", 4, 0),
            ("version_99", 4, 99),
            ("points_zero", 8, 0),
            ("points_one_more", 8, SEED_GAUSSIANS as u32 + 1),
            ("points_u32_max", 8, u32::MAX),
        ] {
            add(
                format!("{seed}_{label}.spz"),
                edit_spz(spz, |p| put_u32(p, at, value)),
            );
        }
        for (label, at, value) in [
            ("sh_degree_5", 12usize, 5u8),
            ("fractional_bits_0", 13, 0),
            ("fractional_bits_31", 13, 31),
            ("flags_all", 14, 0xff),
        ] {
            add(
                format!("{seed}_{label}.spz"),
                edit_spz(spz, |p| {
                    if let Some(byte) = p.get_mut(at) {
                        *byte = value;
                    }
                }),
            );
        }
        add(
            format!("{seed}_gzip_not_zstd.spz"),
            gzip(&zstd::stream::decode_all(spz.as_slice()).unwrap_or_default()),
        );
    }

    add("empty.ply".into(), Vec::new());
    add("empty.spz".into(), Vec::new());
    add("just_magic.ply".into(), b"ply\n".to_vec());
    add(
        "header_only.ply".into(),
        b"ply\nformat binary_little_endian 1.0\nend_header\n".to_vec(),
    );
    add(
        "zstd_of_nothing.spz".into(),
        zstd::bulk::compress(&[], 1).unwrap_or_default(),
    );
    for n in 0..4 {
        let len = 16 << (3 * n);
        let noise: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        add(format!("noise_{len}.ply"), noise.clone());
        add(format!("noise_{len}.spz"), noise);
    }
    files
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if encoder.write_all(bytes).is_err() {
        return Vec::new();
    }
    encoder.finish().unwrap_or_default()
}
