//! Strict reader of 3D Gaussian-splat PLY files: `binary_little_endian 1.0`, one `vertex`
//! element of float properties found by name, sizes checked against the input before any
//! allocation, statistics gathered in the same pass.

use std::path::Path;

use super::sn17::{sn17_check_header, Sn17PlyReport};
use super::stats::{Block, StatsAcc, ValidityReport, STATS_BLOCK};
use super::{channel_major_to_coeff_major, Splat};

/// Size caps for PLY input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlyLimits {
    /// Largest accepted vertex count (default 10 000 000).
    pub max_vertices: u64,
    /// Largest accepted header, `end_header` line included (default 64 KiB).
    pub max_header_bytes: usize,
    /// Largest accepted input, header and body (default 4 GiB).
    pub max_input_bytes: u64,
}

impl Default for PlyLimits {
    fn default() -> Self {
        PlyLimits {
            max_vertices: 10_000_000,
            max_header_bytes: 64 * 1024,
            max_input_bytes: 4 << 30,
        }
    }
}

/// Why a PLY was rejected. Every message names the offending field or line.
#[derive(Debug, thiserror::Error)]
pub enum PlyError {
    /// The input is larger than [`PlyLimits::max_input_bytes`].
    #[error("PLY input is {size} bytes, over the {limit}-byte input cap")]
    InputTooLarge {
        /// Input size.
        size: u64,
        /// Cap.
        limit: u64,
    },
    /// The first line is not `ply`.
    #[error("not a PLY file: the first header line must be `ply`")]
    MissingMagic,
    /// No `end_header` line within [`PlyLimits::max_header_bytes`].
    #[error("PLY header is over the {limit}-byte header cap (no `end_header` within it)")]
    HeaderTooLarge {
        /// Cap.
        limit: usize,
    },
    /// The input ends before `end_header`.
    #[error("PLY header is not terminated: input ends before `end_header`")]
    UnterminatedHeader,
    /// A header line is not ASCII text.
    #[error("PLY header line {line_no} is not ASCII text")]
    HeaderNotText {
        /// 1-based line number.
        line_no: usize,
    },
    /// `format ascii 1.0`.
    #[error("PLY format `{format}` is ASCII; only `format binary_little_endian 1.0` is accepted")]
    AsciiFormat {
        /// The format line's value.
        format: String,
    },
    /// `format binary_big_endian 1.0`.
    #[error(
        "PLY format `{format}` is big-endian; only `format binary_little_endian 1.0` is accepted"
    )]
    BigEndianFormat {
        /// The format line's value.
        format: String,
    },
    /// Any other `format` line (unknown format or version), or a second one.
    #[error("PLY format line `{line}` is not `format binary_little_endian 1.0`")]
    UnknownFormat {
        /// The offending line.
        line: String,
    },
    /// No `format` line before the first element.
    #[error("PLY header has no `format` line before `element vertex`")]
    MissingFormat,
    /// An element other than one `vertex` element, or a property outside any element.
    #[error("unknown PLY element layout: {detail}; only a single `element vertex N` is accepted")]
    UnknownElement {
        /// What was found.
        detail: String,
    },
    /// A header line that is not `comment`, `obj_info`, `format`, `element`, `property` or
    /// `end_header`.
    #[error("unexpected PLY header line {line_no}: `{line}`")]
    UnexpectedHeaderLine {
        /// 1-based line number.
        line_no: usize,
        /// The line.
        line: String,
    },
    /// The vertex count is not a number.
    #[error("PLY vertex count `{value}` is not a non-negative integer")]
    BadVertexCount {
        /// The count's text.
        value: String,
    },
    /// `element vertex 0`.
    #[error("PLY vertex count is 0: a splat needs at least one gaussian")]
    NoVertices,
    /// The vertex count is over [`PlyLimits::max_vertices`].
    #[error("PLY vertex count {count} is over the limit of {limit}")]
    TooManyVertices {
        /// Claimed count.
        count: u64,
        /// Limit.
        limit: u64,
    },
    /// A vertex property is not `float`/`float32` (lists included).
    #[error("vertex property `{name}` has type `{ty}`; every vertex property must be `float`")]
    NonFloatProperty {
        /// Property name.
        name: String,
        /// Its declared type.
        ty: String,
    },
    /// The same property name twice.
    #[error("vertex property `{name}` is declared twice")]
    DuplicateProperty {
        /// Property name.
        name: String,
    },
    /// A required property is absent (or only part of `nx ny nz`).
    #[error("required vertex property `{name}` is missing")]
    MissingProperty {
        /// Property name.
        name: String,
    },
    /// The number of `f_rest_*` properties is not 0, 9, 24 or 45.
    #[error("{count} `f_rest_*` properties; SH degree 0..3 needs 0, 9, 24 or 45")]
    ShRestCount {
        /// Number of `f_rest_*` properties.
        count: usize,
    },
    /// `f_rest_*` names are not `f_rest_0 .. f_rest_{n-1}`.
    #[error("`f_rest_*` properties are not numbered 0..{count}: `{name}` is missing")]
    ShRestGap {
        /// Number of `f_rest_*` properties.
        count: usize,
        /// First missing name.
        name: String,
    },
    /// The body is shorter than `count × stride`.
    #[error("truncated PLY body: {count} vertices of {stride} bytes need {expected} bytes, {actual} present")]
    TruncatedBody {
        /// Vertex count.
        count: u64,
        /// Bytes per vertex.
        stride: usize,
        /// Bytes needed.
        expected: u64,
        /// Bytes present.
        actual: u64,
    },
    /// Bytes after the vertex data.
    #[error("{extra} trailing bytes after the PLY vertex data")]
    TrailingBytes {
        /// Extra bytes.
        extra: u64,
    },
    /// The file could not be read.
    #[error("reading PLY file: {0}")]
    Io(#[from] std::io::Error),
}

/// A PLY parsed into a [`Splat`], with its statistics and the SN17 strict check.
#[derive(Debug, Clone)]
pub struct PlyDecoded {
    /// The model.
    pub splat: Splat,
    /// Statistics computed while parsing.
    pub report: ValidityReport,
    /// Whether SN17's own (stricter) PLY parser would accept the file.
    pub sn17: Sn17PlyReport,
    /// Float vertex properties that are not part of a splat and were skipped.
    pub ignored_properties: Vec<String>,
}

/// Parsed header: where each splat field sits in a vertex record.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) count: u64,
    pub(crate) header_len: usize,
    /// Bytes per vertex.
    pub(crate) stride: usize,
    pub(crate) sh_degree: u8,
    /// Byte offsets.
    pub(crate) pos: [usize; 3],
    pub(crate) normals: Option<[usize; 3]>,
    pub(crate) dc: [usize; 3],
    /// Byte offsets of `f_rest_0 ..` in file (channel-major) order.
    pub(crate) rest: Vec<usize>,
    pub(crate) opacity: usize,
    pub(crate) scale: [usize; 3],
    pub(crate) rot: [usize; 4],
    pub(crate) ignored: Vec<String>,
    /// True when the properties are exactly the reference order (`x y z [nx ny nz] f_dc_*
    /// f_rest_* opacity scale_* rot_*`) with nothing else.
    pub(crate) canonical: bool,
}

/// Finds the end of the header: the byte after the `end_header` line's newline.
fn header_end(bytes: &[u8], limits: &PlyLimits) -> Result<usize, PlyError> {
    let window = &bytes[..bytes.len().min(limits.max_header_bytes)];
    let mut start = 0;
    while let Some(nl) = window[start..].iter().position(|&b| b == b'\n') {
        let line = &window[start..start + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"end_header" {
            return Ok(start + nl + 1);
        }
        start += nl + 1;
    }
    if bytes.len() >= limits.max_header_bytes {
        Err(PlyError::HeaderTooLarge {
            limit: limits.max_header_bytes,
        })
    } else {
        Err(PlyError::UnterminatedHeader)
    }
}

/// Splat property names in the reference order (without `f_rest_*`).
const HEAD: [&str; 3] = ["x", "y", "z"];
const NORMALS: [&str; 3] = ["nx", "ny", "nz"];
const DC: [&str; 3] = ["f_dc_0", "f_dc_1", "f_dc_2"];
const TAIL: [&str; 8] = [
    "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
];

/// Parses and checks the header against `limits` and the input length.
pub(crate) fn parse_header(bytes: &[u8], limits: &PlyLimits) -> Result<Layout, PlyError> {
    if bytes.len() as u64 > limits.max_input_bytes {
        return Err(PlyError::InputTooLarge {
            size: bytes.len() as u64,
            limit: limits.max_input_bytes,
        });
    }
    // The magic is checked first so that arbitrary binary input is reported as "not a PLY".
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    if first.strip_suffix(b"\r").unwrap_or(first) != b"ply" {
        return Err(PlyError::MissingMagic);
    }
    let header_len = header_end(bytes, limits)?;
    let header = &bytes[..header_len];

    let mut format_seen = false;
    let mut count: Option<u64> = None;
    let mut in_vertex = false;
    let mut names: Vec<String> = Vec::new();
    for (idx, raw) in header.split(|&b| b == b'\n').enumerate().skip(1) {
        let line_no = idx + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw)
            .ok()
            .filter(|s| s.is_ascii())
            .ok_or(PlyError::HeaderNotText { line_no })?;
        let mut tok = line.split_ascii_whitespace();
        match tok.next() {
            Some("end_header") => break,
            Some("comment") | Some("obj_info") => {}
            Some("format") => {
                let kind = tok.next().unwrap_or_default();
                let version = tok.next().unwrap_or_default();
                let rest = tok.next();
                if format_seen || count.is_some() {
                    return Err(PlyError::UnknownFormat { line: line.into() });
                }
                match kind {
                    "ascii" => {
                        return Err(PlyError::AsciiFormat {
                            format: format!("{kind} {version}"),
                        })
                    }
                    "binary_big_endian" => {
                        return Err(PlyError::BigEndianFormat {
                            format: format!("{kind} {version}"),
                        })
                    }
                    "binary_little_endian" if version == "1.0" && rest.is_none() => {}
                    _ => return Err(PlyError::UnknownFormat { line: line.into() }),
                }
                format_seen = true;
            }
            Some("element") => {
                let name = tok.next().unwrap_or_default();
                let value = tok.next().unwrap_or_default();
                if name != "vertex" || count.is_some() || tok.next().is_some() {
                    return Err(PlyError::UnknownElement {
                        detail: format!("header line {line_no} `{line}`"),
                    });
                }
                if !format_seen {
                    return Err(PlyError::MissingFormat);
                }
                let n: u64 = value.parse().map_err(|_| PlyError::BadVertexCount {
                    value: value.into(),
                })?;
                if n == 0 {
                    return Err(PlyError::NoVertices);
                }
                if n > limits.max_vertices {
                    return Err(PlyError::TooManyVertices {
                        count: n,
                        limit: limits.max_vertices,
                    });
                }
                count = Some(n);
                in_vertex = true;
            }
            Some("property") => {
                if !in_vertex {
                    return Err(PlyError::UnknownElement {
                        detail: format!("property outside an element on header line {line_no}"),
                    });
                }
                let ty = tok.next().unwrap_or_default();
                if ty == "list" {
                    let rest: Vec<&str> = tok.collect();
                    let name = rest.last().copied().unwrap_or_default();
                    return Err(PlyError::NonFloatProperty {
                        name: name.into(),
                        ty: format!("list {}", rest[..rest.len().saturating_sub(1)].join(" ")),
                    });
                }
                let name = tok.next().unwrap_or_default();
                if name.is_empty() || tok.next().is_some() {
                    return Err(PlyError::UnexpectedHeaderLine {
                        line_no,
                        line: line.into(),
                    });
                }
                if ty != "float" && ty != "float32" {
                    return Err(PlyError::NonFloatProperty {
                        name: name.into(),
                        ty: ty.into(),
                    });
                }
                if names.iter().any(|n| n == name) {
                    return Err(PlyError::DuplicateProperty { name: name.into() });
                }
                names.push(name.into());
            }
            _ => {
                return Err(PlyError::UnexpectedHeaderLine {
                    line_no,
                    line: line.into(),
                })
            }
        }
    }
    if !format_seen {
        return Err(PlyError::MissingFormat);
    }
    let count = count.ok_or_else(|| PlyError::UnknownElement {
        detail: "no `element vertex` line".into(),
    })?;

    let find = |name: &str| names.iter().position(|n| n == name).map(|i| i * 4);
    let need =
        |name: &str| find(name).ok_or_else(|| PlyError::MissingProperty { name: name.into() });
    let pos = [need("x")?, need("y")?, need("z")?];
    let dc = [need("f_dc_0")?, need("f_dc_1")?, need("f_dc_2")?];
    let opacity = need("opacity")?;
    let scale = [need("scale_0")?, need("scale_1")?, need("scale_2")?];
    let rot = [
        need("rot_0")?,
        need("rot_1")?,
        need("rot_2")?,
        need("rot_3")?,
    ];
    let normals = match (find("nx"), find("ny"), find("nz")) {
        (None, None, None) => None,
        (Some(a), Some(b), Some(c)) => Some([a, b, c]),
        (a, b, _) => {
            let missing = if a.is_none() {
                "nx"
            } else if b.is_none() {
                "ny"
            } else {
                "nz"
            };
            return Err(PlyError::MissingProperty {
                name: missing.into(),
            });
        }
    };
    let rest_count = names.iter().filter(|n| n.starts_with("f_rest_")).count();
    let sh_degree = match rest_count {
        0 => 0,
        9 => 1,
        24 => 2,
        45 => 3,
        count => return Err(PlyError::ShRestCount { count }),
    };
    let mut rest = Vec::with_capacity(rest_count);
    for j in 0..rest_count {
        let name = format!("f_rest_{j}");
        rest.push(find(&name).ok_or(PlyError::ShRestGap {
            count: rest_count,
            name,
        })?);
    }
    let known = |n: &str| {
        HEAD.contains(&n)
            || NORMALS.contains(&n)
            || DC.contains(&n)
            || TAIL.contains(&n)
            || n.starts_with("f_rest_")
    };
    let ignored: Vec<String> = names.iter().filter(|n| !known(n)).cloned().collect();

    let canonical = {
        let mut expect: Vec<String> = HEAD.iter().map(|s| s.to_string()).collect();
        if normals.is_some() {
            expect.extend(NORMALS.iter().map(|s| s.to_string()));
        }
        expect.extend(DC.iter().map(|s| s.to_string()));
        expect.extend((0..rest_count).map(|j| format!("f_rest_{j}")));
        expect.extend(TAIL.iter().map(|s| s.to_string()));
        expect == names
    };

    let stride = names.len() * 4;
    let expected = count.saturating_mul(stride as u64);
    let actual = (bytes.len() - header_len) as u64;
    if actual < expected {
        return Err(PlyError::TruncatedBody {
            count,
            stride,
            expected,
            actual,
        });
    }
    if actual > expected {
        return Err(PlyError::TrailingBytes {
            extra: actual - expected,
        });
    }
    Ok(Layout {
        count,
        header_len,
        stride,
        sh_degree,
        pos,
        normals,
        dc,
        rest,
        opacity,
        scale,
        rot,
        ignored,
        canonical,
    })
}

/// Parses a PLY held in memory into a new [`Splat`] and its statistics.
pub fn read_ply(bytes: &[u8], limits: &PlyLimits) -> Result<PlyDecoded, PlyError> {
    let mut splat = Splat::default();
    let (report, sn17, ignored_properties) = read_ply_into(bytes, limits, &mut splat)?;
    Ok(PlyDecoded {
        splat,
        report,
        sn17,
        ignored_properties,
    })
}

/// Reads a PLY file (size-capped before reading) into a new [`Splat`].
pub fn read_ply_file(path: &Path, limits: &PlyLimits) -> Result<PlyDecoded, PlyError> {
    let size = std::fs::metadata(path)?.len();
    if size > limits.max_input_bytes {
        return Err(PlyError::InputTooLarge {
            size,
            limit: limits.max_input_bytes,
        });
    }
    let bytes = std::fs::read(path)?;
    read_ply(&bytes, limits)
}

/// Parses a PLY into `splat`, reusing its allocations (a worker decoding one model after
/// another avoids page-faulting fresh memory each time). Returns the statistics, the SN17
/// strict check and the names of skipped properties. On error `splat` is left unspecified.
pub fn read_ply_into(
    bytes: &[u8],
    limits: &PlyLimits,
    splat: &mut Splat,
) -> Result<(ValidityReport, Sn17PlyReport, Vec<String>), PlyError> {
    let layout = parse_header(bytes, limits)?;
    let sn17 = sn17_check_header(bytes);
    // `parse_header` proved `count * stride` bytes are present, so `n` fits memory already.
    let n = layout.count as usize;
    let k = layout.rest.len() / 3;
    splat.sh_degree = layout.sh_degree;
    size_for(&mut splat.positions, n, [0.0; 3]);
    size_for(&mut splat.sh_dc, n, [0.0; 3]);
    size_for(&mut splat.sh_rest, n * k * 3, 0.0);
    size_for(&mut splat.opacities, n, 0.0);
    size_for(&mut splat.log_scales, n, [0.0; 3]);
    size_for(&mut splat.rotations, n, [0.0; 4]);
    match (&mut splat.normals, layout.normals.is_some()) {
        (Some(v), true) => size_for(v, n, [0.0; 3]),
        (slot, true) => *slot = Some(vec![[0.0; 3]; n]),
        (slot, false) => *slot = None,
    }
    let body = &bytes[layout.header_len..];
    let report = if layout.canonical {
        decode_canonical(body, &layout, splat)
    } else {
        decode_generic(body, &layout, splat)
    };
    Ok((report, sn17, layout.ignored))
}

/// Gives `v` length `n`. Growing past the capacity takes fresh zeroed memory (`calloc`, whose
/// pages the kernel zeroes anyway) instead of `resize`, which would write every element once
/// more before the decoder overwrites it.
pub(crate) fn size_for<T: Clone>(v: &mut Vec<T>, n: usize, zero: T) {
    if v.capacity() < n {
        *v = vec![zero; n];
    } else {
        v.resize(n, zero);
    }
}

/// Reads a little-endian f32 at byte offset `o` of a fixed-size record; with constant `o`
/// and `S` the bounds check folds away.
#[inline(always)]
fn rd<const S: usize>(row: &[u8; S], o: usize) -> f32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&row[o..o + 4]);
    f32::from_le_bytes(b)
}

/// Reads a little-endian f32 at a run-time offset (validated by `parse_header`).
#[inline(always)]
fn rd_dyn(row: &[u8], o: usize) -> f32 {
    match row.get(o..o + 4) {
        Some(&[a, b, c, d]) => f32::from_le_bytes([a, b, c, d]),
        _ => 0.0,
    }
}

/// Decodes a body in the reference property order, monomorphised per layout so that every
/// offset is a compile-time constant.
fn decode_canonical(body: &[u8], layout: &Layout, splat: &mut Splat) -> ValidityReport {
    let normals = layout.normals.is_some();
    match (normals, layout.sh_degree) {
        (false, 0) => kernel::<56, false, 0>(body, splat),
        (false, 1) => kernel::<92, false, 9>(body, splat),
        (false, 2) => kernel::<152, false, 24>(body, splat),
        (false, _) => kernel::<236, false, 45>(body, splat),
        (true, 0) => kernel::<68, true, 0>(body, splat),
        (true, 1) => kernel::<104, true, 9>(body, splat),
        (true, 2) => kernel::<164, true, 24>(body, splat),
        (true, _) => kernel::<248, true, 45>(body, splat),
    }
}

/// The reference-order decoding loop: `S` bytes per record, normals or not, `R` rest values.
/// Each block of [`STATS_BLOCK`] records is converted, then its statistics are taken from the
/// freshly written, cache-resident output.
fn kernel<const S: usize, const NRM: bool, const R: usize>(
    body: &[u8],
    splat: &mut Splat,
) -> ValidityReport {
    debug_assert_eq!(S, (14 + if NRM { 3 } else { 0 } + R) * 4);
    let k = R / 3;
    let o_dc = if NRM { 24 } else { 12 };
    let o_rest = o_dc + 12;
    let o_tail = o_rest + R * 4;
    let (rows, _) = body.as_chunks::<S>();
    let n = rows.len();
    let mut acc = StatsAcc::new(splat.sh_degree);
    let positions = &mut splat.positions[..n];
    let dcs = &mut splat.sh_dc[..n];
    let rest = &mut splat.sh_rest[..n * R];
    let opacities = &mut splat.opacities[..n];
    let scales = &mut splat.log_scales[..n];
    let rots = &mut splat.rotations[..n];
    let mut no_normals: [[f32; 3]; 0] = [];
    let normals: &mut [[f32; 3]] = match &mut splat.normals {
        Some(v) if NRM => &mut v[..n],
        _ => &mut no_normals,
    };
    let mut start = 0;
    for block in rows.chunks(STATS_BLOCK) {
        let end = start + block.len();
        let pos_b = &mut positions[start..end];
        let dc_b = &mut dcs[start..end];
        let rest_b = &mut rest[start * R..end * R];
        let op_b = &mut opacities[start..end];
        let sc_b = &mut scales[start..end];
        let rot_b = &mut rots[start..end];
        let nrm_b: &mut [[f32; 3]] = if NRM {
            normals.get_mut(start..end).unwrap_or_default()
        } else {
            &mut []
        };
        for (i, row) in block.iter().enumerate() {
            pos_b[i] = [rd(row, 0), rd(row, 4), rd(row, 8)];
            if NRM {
                if let Some(slot) = nrm_b.get_mut(i) {
                    *slot = [rd(row, 12), rd(row, 16), rd(row, 20)];
                }
            }
            dc_b[i] = [rd(row, o_dc), rd(row, o_dc + 4), rd(row, o_dc + 8)];
            if R > 0 {
                let dst = &mut rest_b[i * R..i * R + R];
                for kk in 0..k {
                    for c in 0..3 {
                        dst[kk * 3 + c] = rd(row, o_rest + (c * k + kk) * 4);
                    }
                }
            }
            op_b[i] = rd(row, o_tail);
            sc_b[i] = [
                rd(row, o_tail + 4),
                rd(row, o_tail + 8),
                rd(row, o_tail + 12),
            ];
            rot_b[i] = [
                rd(row, o_tail + 16),
                rd(row, o_tail + 20),
                rd(row, o_tail + 24),
                rd(row, o_tail + 28),
            ];
        }
        acc.block(
            start,
            &Block {
                positions: pos_b,
                normals: if NRM { Some(nrm_b) } else { None },
                sh_dc: dc_b,
                sh_rest: rest_b,
                opacities: op_b,
                log_scales: sc_b,
                rotations: rot_b,
            },
        );
        start = end;
    }
    acc.finish(n)
}

/// Decodes a body in any property order, with run-time offsets.
fn decode_generic(body: &[u8], layout: &Layout, splat: &mut Splat) -> ValidityReport {
    let stride = layout.stride;
    let n = layout.count as usize;
    let r = layout.rest.len();
    let k = r / 3;
    let mut file_rest = vec![0.0f32; r];
    for (i, row) in body.chunks_exact(stride).take(n).enumerate() {
        let g3 = |o: [usize; 3]| [rd_dyn(row, o[0]), rd_dyn(row, o[1]), rd_dyn(row, o[2])];
        splat.positions[i] = g3(layout.pos);
        if let (Some(o), Some(v)) = (layout.normals, splat.normals.as_mut()) {
            v[i] = g3(o);
        }
        splat.sh_dc[i] = g3(layout.dc);
        if r > 0 {
            for (dst, &o) in file_rest.iter_mut().zip(&layout.rest) {
                *dst = rd_dyn(row, o);
            }
            channel_major_to_coeff_major(&file_rest, &mut splat.sh_rest[i * r..(i + 1) * r], k);
        }
        splat.opacities[i] = rd_dyn(row, layout.opacity);
        splat.log_scales[i] = g3(layout.scale);
        let q = layout.rot;
        splat.rotations[i] = [
            rd_dyn(row, q[0]),
            rd_dyn(row, q[1]),
            rd_dyn(row, q[2]),
            rd_dyn(row, q[3]),
        ];
    }
    // A layout nobody writes by default: the second (blocked) pass over memory is acceptable.
    ValidityReport::of(splat)
}
