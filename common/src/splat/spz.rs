//! SPZ, the packed splat format SN17 submits: Niantic's layout, version 2, inside one zstd
//! frame (404-Repo/spz), plus decoding of Niantic's gzip-wrapped versions 2 and 3.
//!
//! References, cited by file and line next to each formula:
//! - `404/load-spz.cc` = 404-Repo/spz `src/cc/load-spz.cc` at f63213e (the quantisation code
//!   is identical at tag 0.1 = 9b60cb4, which three-gen-subnet 5fc61f1 pins).
//! - `niantic/load-spz.cc`, `niantic/splat-utils.h`, `niantic/load-spz.h` = nianticlabs/spz
//!   `src/cc/...` at 21715c3.
//!
//! The reference's float→int casts are `static_cast` on x86-64, where an out-of-range or NaN
//! value becomes `0x80000000`; the helpers below reproduce that, so even non-finite input
//! encodes to the same bytes as the reference binary. Rounding is C's `round` (half away from
//! zero), done without a libm call.

use std::fmt;
use std::io::Read;

use super::{sh_rest_coeffs, Splat, SplatShapeError};

/// `NGSP` (`404/load-spz.cc` line 151).
const MAGIC: u32 = 0x5053_474e;
/// Fixed-point fractional bits the encoder uses (`404/load-spz.cc` line 244).
const FRACTIONAL_BITS: u8 = 12;
/// `colorScale` (`404/load-spz.cc` line 60, `niantic/splat-utils.h` line 15).
const COLOR_SCALE: f32 = 0.15;
/// `sqrt1_2` (`niantic/splat-utils.h` line 16).
const SQRT1_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// The validator's SPZ decoder rejects more points (`404/load-spz.cc` line 496).
pub const SN17_SPZ_MAX_POINTS: u32 = 10_000_000;

/// How an SPZ payload was wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpzContainer {
    /// One zstd frame (SN17, 404-Repo/spz).
    Zstd,
    /// gzip (Niantic, versions 1-3).
    Gzip,
}

impl fmt::Display for SpzContainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpzContainer::Zstd => "zstd",
            SpzContainer::Gzip => "gzip",
        })
    }
}

/// Size caps for SPZ input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpzLimits {
    /// Largest accepted point count (default 10 000 000, the validator's own limit).
    pub max_points: u32,
    /// Largest accepted compressed input (default 1 GiB).
    pub max_input_bytes: usize,
}

impl Default for SpzLimits {
    fn default() -> Self {
        SpzLimits {
            max_points: SN17_SPZ_MAX_POINTS,
            max_input_bytes: 1 << 30,
        }
    }
}

impl SpzLimits {
    /// Most bytes a payload within these limits can decompress to (16-byte header, 9 + 1 +
    /// 3 + 3 + 4 bytes and 45 SH bytes per point), plus 64 KiB for Niantic extensions.
    pub fn max_decompressed_bytes(&self) -> u64 {
        16 + u64::from(self.max_points) * (9 + 1 + 3 + 3 + 4 + 45) + 64 * 1024
    }
}

/// Why SPZ bytes could not be decoded, or a splat encoded. Messages name the field.
#[derive(Debug, thiserror::Error)]
pub enum SpzError {
    /// Input over [`SpzLimits::max_input_bytes`].
    #[error("SPZ input is {size} bytes, over the {limit}-byte cap")]
    InputTooLarge {
        /// Input size.
        size: usize,
        /// Cap.
        limit: usize,
    },
    /// Neither a zstd frame nor a gzip stream.
    #[error("not an SPZ container: first bytes {magic:02x?} are neither a zstd frame nor gzip")]
    UnknownContainer {
        /// Up to four leading bytes.
        magic: Vec<u8>,
    },
    /// The zstd input is not exactly one frame.
    #[error("SPZ zstd input must be exactly one zstd frame: {detail}")]
    NotOneFrame {
        /// What is wrong.
        detail: String,
    },
    /// The decompressor failed.
    #[error("SPZ {container} decompression failed: {source}")]
    Decompress {
        /// Container.
        container: SpzContainer,
        /// Cause.
        source: std::io::Error,
    },
    /// The payload is larger than the limits allow.
    #[error("SPZ payload decompresses to more than {limit} bytes")]
    DecompressedTooLarge {
        /// Cap.
        limit: u64,
    },
    /// Fewer than 16 bytes for the header.
    #[error("SPZ header is {len} bytes, needs 16")]
    ShortHeader {
        /// Payload size.
        len: usize,
    },
    /// Wrong magic.
    #[error("SPZ header magic is {found:#010x}, expected 0x5053474e (NGSP)")]
    BadMagic {
        /// Magic found.
        found: u32,
    },
    /// Unsupported version for the container.
    #[error("SPZ header version {version} in a {container} container is not supported (zstd: 2; gzip: 2 or 3)")]
    UnsupportedVersion {
        /// Version found.
        version: u32,
        /// Container.
        container: SpzContainer,
    },
    /// Zero points.
    #[error("SPZ header point count is 0")]
    NoPoints,
    /// Too many points.
    #[error("SPZ header point count {count} is over the limit of {limit}")]
    TooManyPoints {
        /// Count.
        count: u64,
        /// Limit.
        limit: u64,
    },
    /// SH degree above 3.
    #[error("SPZ header SH degree {degree} is not supported (0..=3)")]
    UnsupportedShDegree {
        /// Degree.
        degree: u8,
    },
    /// The payload ends inside a section.
    #[error(
        "SPZ payload truncated in section `{section}`: needs {needed} bytes, {available} present"
    )]
    Truncated {
        /// Section: positions, alphas, colors, scales, rotations or sh.
        section: &'static str,
        /// Payload bytes needed up to the end of the section.
        needed: u64,
        /// Payload bytes present.
        available: u64,
    },
    /// Bytes after the `sh` section (and no extension flag).
    #[error("{extra} trailing bytes after the SPZ `sh` section")]
    TrailingBytes {
        /// Extra bytes.
        extra: u64,
    },
    /// The splat's arrays are inconsistent.
    #[error("splat cannot be encoded as SPZ: {0}")]
    Shape(#[from] SplatShapeError),
    /// zstd failed to compress.
    #[error("SPZ zstd compression failed: {0}")]
    Compress(std::io::Error),
}

/// A decoded SPZ.
#[derive(Debug, Clone)]
pub struct SpzDecoded {
    /// The model (no normals).
    pub splat: Splat,
    /// How it was wrapped.
    pub container: SpzContainer,
    /// Header version (2 or 3).
    pub version: u32,
    /// Header flags (0x1 antialiased, 0x2 Niantic extensions).
    pub flags: u8,
    /// Header fractional bits of the positions.
    pub fractional_bits: u8,
}

// ---------------------------------------------------------------------------------------
// Scalar quantisation helpers.

/// C `roundf` (half away from zero) without a libm call; NaN, infinities and values already
/// integral (|x| ≥ 2^23) pass through. `x - trunc(x)` is exact in binary floating point.
#[inline(always)]
fn round_f32(x: f32) -> f32 {
    // NaN fails the test too.
    if x.abs() >= 8_388_608.0 || x.is_nan() {
        return x;
    }
    let t = x as i32;
    let f = x - t as f32;
    // Branch-free: the fraction's side of ±0.5 is data-dependent and would mispredict.
    (t + i32::from(f >= 0.5) - i32::from(f <= -0.5)) as f32
}

/// `static_cast<int32_t>(float)` as x86-64 executes it: truncation, and `i32::MIN` for NaN or
/// out-of-range values.
#[inline(always)]
fn cast_i32_x86(x: f32) -> i32 {
    if (-2_147_483_648.0..2_147_483_648.0).contains(&x) {
        x as i32
    } else {
        i32::MIN
    }
}

/// `toUint8`: `static_cast<uint8_t>(std::clamp(std::round(x), 0.0f, 255.0f))`
/// (`404/load-spz.cc` lines 88-90). A NaN passes `std::clamp` and converts to 0, as Rust's
/// saturating `as` does.
#[inline(always)]
fn to_u8(x: f32) -> u8 {
    round_f32(x).clamp(0.0, 255.0) as u8
}

/// `quantizeSH`: `q = int(round(x * 128) + 128)`, then `(q + bucket / 2) / bucket * bucket`
/// with C's truncating division, clamped to 0..=255 (`404/load-spz.cc` lines 94-98).
/// `bucket` is a power of two: for a non-negative numerator the division is a mask, and a
/// negative one clamps to 0 either way.
#[inline(always)]
fn quantize_sh(x: f32, bucket: i32) -> u8 {
    let q = cast_i32_x86(round_f32(x * 128.0) + 128.0);
    let v = q.wrapping_add(bucket / 2);
    if v < 0 {
        0
    } else {
        (v & !(bucket - 1)).min(255) as u8
    }
}

/// `unquantizeSH` (`404/load-spz.cc` lines 100-102).
#[inline(always)]
fn unquantize_sh(x: u8) -> f32 {
    (f32::from(x) - 128.0) / 128.0
}

/// `sigmoid` in float32 (`404/load-spz.cc` line 104).
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `invSigmoid` in float32 (`404/load-spz.cc` line 106); 0 → -inf and 255 → +inf as there.
#[inline(always)]
fn inv_sigmoid(x: f32) -> f32 {
    (x / (1.0 - x)).ln()
}

/// Per-point payload bytes of each section for a version and SH degree.
fn section_sizes(version: u32, k: usize) -> [(&'static str, usize); 6] {
    let rot = if version >= 3 { 4 } else { 3 };
    [
        ("positions", 9),
        ("alphas", 1),
        ("colors", 3),
        ("scales", 3),
        ("rotations", rot),
        ("sh", k * 3),
    ]
}

// ---------------------------------------------------------------------------------------
// Encoding.

/// Encodes `splat` as SN17 submits it: version 2 payload, one zstd frame, level 1 (the
/// default of `pyspz.compress`, `404/load-spz.cc` line 197 and `bindings.cc` line 39).
pub fn encode_spz(splat: &Splat) -> Result<Vec<u8>, SpzError> {
    encode_spz_with_level(splat, 1)
}

/// [`encode_spz`] with a chosen zstd level.
pub fn encode_spz_with_level(splat: &Splat, level: i32) -> Result<Vec<u8>, SpzError> {
    let payload = pack_payload(splat, 2)?;
    // `bulk::compress` writes one frame with its content size, which the reference's
    // `ZSTD_getFrameContentSize` path expects (`404/load-spz.cc` lines 163-193).
    zstd::bulk::compress(&payload, level).map_err(SpzError::Compress)
}

/// The uncompressed version-2 payload (16-byte header and sections) that [`encode_spz`]
/// compresses; useful to compare payloads or time the quantisation alone.
pub fn spz_payload(splat: &Splat) -> Result<Vec<u8>, SpzError> {
    pack_payload(splat, 2)
}

/// Builds the uncompressed payload (header + sections) of `version` 2 or 3.
pub(crate) fn pack_payload(splat: &Splat, version: u32) -> Result<Vec<u8>, SpzError> {
    splat.check_shape()?;
    let n = splat.len();
    if n == 0 {
        return Err(SpzError::NoPoints);
    }
    if n > SN17_SPZ_MAX_POINTS as usize {
        return Err(SpzError::TooManyPoints {
            count: n as u64,
            limit: u64::from(SN17_SPZ_MAX_POINTS),
        });
    }
    let k = splat.rest_coeffs();
    let sizes = section_sizes(version, k);
    let total = 16 + sizes.iter().map(|(_, s)| s * n).sum::<usize>();
    let mut out = vec![0u8; total];
    // Header (`404/load-spz.cc` lines 150-158 and 474-480): magic, version, numPoints,
    // shDegree, fractionalBits, flags (0: not antialiased), reserved.
    out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    out[4..8].copy_from_slice(&version.to_le_bytes());
    out[8..12].copy_from_slice(&(n as u32).to_le_bytes());
    out[12] = splat.sh_degree;
    out[13] = FRACTIONAL_BITS;
    let mut rest = &mut out[16..];
    let mut sections: Vec<&mut [u8]> = Vec::with_capacity(6);
    for (_, per) in sizes {
        let (head, tail) = rest.split_at_mut(per * n);
        sections.push(head);
        rest = tail;
    }
    let [pos, alpha, color, scale, rot, sh] =
        <[&mut [u8]; 6]>::try_from(sections).map_err(|_| SpzError::NoPoints)?;

    // Positions: 24-bit two's complement of round(x * 2^12) (`404/load-spz.cc` lines
    // 254-262); the scale is a power of two so the product is exact.
    let fscale = (1u32 << FRACTIONAL_BITS) as f32;
    for (dst, p) in pos.chunks_exact_mut(9).zip(&splat.positions) {
        for a in 0..3 {
            let fixed = cast_i32_x86(round_f32(p[a] * fscale));
            dst[a * 3] = fixed as u8;
            dst[a * 3 + 1] = (fixed >> 8) as u8;
            dst[a * 3 + 2] = (fixed >> 16) as u8;
        }
    }
    // Alphas: toUint8(sigmoid(opacity) * 255) (`404/load-spz.cc` lines 279-282).
    for (dst, &o) in alpha.iter_mut().zip(&splat.opacities) {
        *dst = to_u8(sigmoid(o) * 255.0);
    }
    // Colours: toUint8(dc * (0.15 * 255) + 0.5 * 255), both constants folded in float32
    // (`404/load-spz.cc` lines 284-289).
    const C_MUL: f32 = COLOR_SCALE * 255.0;
    const C_ADD: f32 = 0.5 * 255.0;
    for (dst, c) in color.chunks_exact_mut(3).zip(&splat.sh_dc) {
        for a in 0..3 {
            dst[a] = to_u8(c[a] * C_MUL + C_ADD);
        }
    }
    // Scales: toUint8((log_scale + 10) * 16) (`404/load-spz.cc` lines 264-266).
    for (dst, s) in scale.chunks_exact_mut(3).zip(&splat.log_scales) {
        for a in 0..3 {
            dst[a] = to_u8((s[a] + 10.0) * 16.0);
        }
    }
    // Rotations. The reference's quaternion is `x, y, z, w` (ours is `w, x, y, z`), normalised
    // as `v / sqrt(x*x + y*y + z*z + w*w)` (`splat-types.cc` lines 72-75).
    for (dst, q) in rot
        .chunks_exact_mut(if version >= 3 { 4 } else { 3 })
        .zip(&splat.rotations)
    {
        let v = [q[1], q[2], q[3], q[0]];
        let norm = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2] + v[3] * v[3]).sqrt();
        let v = [v[0] / norm, v[1] / norm, v[2] / norm, v[3] / norm];
        if version >= 3 {
            dst.copy_from_slice(&pack_smallest_three(v));
        } else {
            // Version 2: flip to w ≥ 0, store toUint8(xyz * 127.5 + 127.5)
            // (`404/load-spz.cc` lines 268-277).
            let s = if v[3] < 0.0 { -127.5f32 } else { 127.5 };
            for a in 0..3 {
                dst[a] = to_u8(v[a] * s + 127.5);
            }
        }
    }
    // SH, coefficient-major with RGB innermost, as `Splat` stores it: the first 9 values
    // (degree 1) on 5 bits (bucket 8), the rest on 4 bits (bucket 16)
    // (`404/load-spz.cc` lines 291-307).
    let r = k * 3;
    if r > 0 {
        let first = r.min(9);
        for (dst, src) in sh.chunks_exact_mut(r).zip(splat.sh_rest.chunks_exact(r)) {
            let (d1, d2) = dst.split_at_mut(first);
            let (s1, s2) = src.split_at(first);
            for (d, &v) in d1.iter_mut().zip(s1) {
                *d = quantize_sh(v, 8);
            }
            for (d, &v) in d2.iter_mut().zip(s2) {
                *d = quantize_sh(v, 16);
            }
        }
    }
    Ok(out)
}

/// Version-3 "smallest three" rotation of a normalised `x, y, z, w` quaternion
/// (`niantic/load-spz.cc` lines 260-297): 2 bits for the largest component's index, then for
/// each other component in order a sign bit (relative to the largest) and a 9-bit magnitude
/// `(u32)(511 * |q| / sqrt(1/2) + 0.5)`, little-endian.
fn pack_smallest_three(q: [f32; 4]) -> [u8; 4] {
    let mut largest = 0;
    for i in 1..4 {
        if q[i].abs() > q[largest].abs() {
            largest = i;
        }
    }
    let negate = q[largest] < 0.0;
    let mut comp = largest as u32;
    for (i, &v) in q.iter().enumerate() {
        if i != largest {
            let negbit = u32::from((v < 0.0) ^ negate);
            let mag = (511.0f32 * (v.abs() / SQRT1_2) + 0.5) as u32;
            comp = (comp << 10) | (negbit << 9) | mag;
        }
    }
    comp.to_le_bytes()
}

// ---------------------------------------------------------------------------------------
// Decoding.

/// Decodes SPZ bytes: SN17's zstd-wrapped version 2, or Niantic's gzip-wrapped 2 and 3.
/// Sizes are checked against the decompressed bytes before the model is allocated, so a
/// small input claiming a huge count allocates nothing large.
pub fn decode_spz(bytes: &[u8], limits: &SpzLimits) -> Result<SpzDecoded, SpzError> {
    if bytes.len() > limits.max_input_bytes {
        return Err(SpzError::InputTooLarge {
            size: bytes.len(),
            limit: limits.max_input_bytes,
        });
    }
    let cap = limits.max_decompressed_bytes();
    let (container, payload) = match bytes {
        [0x28, 0xb5, 0x2f, 0xfd, ..] => (SpzContainer::Zstd, decompress_zstd(bytes, cap)?),
        [0x1f, 0x8b, ..] => (SpzContainer::Gzip, decompress_gzip(bytes, cap)?),
        _ => {
            return Err(SpzError::UnknownContainer {
                magic: bytes.iter().take(4).copied().collect(),
            })
        }
    };
    unpack_payload(&payload, container, limits)
}

/// Reads at most `cap` bytes from `reader`, failing past it.
fn read_capped(
    reader: impl Read,
    cap: u64,
    hint: usize,
    container: SpzContainer,
) -> Result<Vec<u8>, SpzError> {
    let mut out = Vec::with_capacity(hint);
    reader
        .take(cap + 1)
        .read_to_end(&mut out)
        .map_err(|source| SpzError::Decompress { container, source })?;
    if out.len() as u64 > cap {
        return Err(SpzError::DecompressedTooLarge { limit: cap });
    }
    Ok(out)
}

fn decompress_zstd(bytes: &[u8], cap: u64) -> Result<Vec<u8>, SpzError> {
    // Exactly one frame, like the reference's single `ZSTD_decompress` into a buffer of the
    // first frame's content size (`404/load-spz.cc` lines 160-194).
    let frame = zstd::zstd_safe::find_frame_compressed_size(bytes).map_err(|code| {
        SpzError::NotOneFrame {
            detail: zstd::zstd_safe::get_error_name(code).to_string(),
        }
    })?;
    if frame != bytes.len() {
        return Err(SpzError::NotOneFrame {
            detail: format!("{} bytes after the first frame", bytes.len() - frame),
        });
    }
    // The declared content size is only a capacity hint, never trusted past the cap.
    let hint = match zstd::zstd_safe::get_frame_content_size(bytes) {
        Ok(Some(size)) if size <= cap => size as usize,
        Ok(Some(_)) => return Err(SpzError::DecompressedTooLarge { limit: cap }),
        _ => 0,
    };
    let decoder = zstd::stream::read::Decoder::with_buffer(bytes)
        .map_err(|source| SpzError::Decompress {
            container: SpzContainer::Zstd,
            source,
        })?
        .single_frame();
    read_capped(decoder, cap, hint, SpzContainer::Zstd)
}

fn decompress_gzip(bytes: &[u8], cap: u64) -> Result<Vec<u8>, SpzError> {
    // One gzip member, as Niantic's `inflateInit2(16 | MAX_WBITS)` loop reads it
    // (`niantic/load-spz.cc` lines 148-181).
    let hint = bytes.len().saturating_mul(4).min(cap as usize);
    read_capped(
        flate2::read::GzDecoder::new(bytes),
        cap,
        hint,
        SpzContainer::Gzip,
    )
}

/// Parses a decompressed payload: header checks, section sizes, then the per-field
/// dequantisation.
pub(crate) fn unpack_payload(
    payload: &[u8],
    container: SpzContainer,
    limits: &SpzLimits,
) -> Result<SpzDecoded, SpzError> {
    let header: &[u8; 16] = payload
        .get(..16)
        .and_then(|h| h.try_into().ok())
        .ok_or(SpzError::ShortHeader { len: payload.len() })?;
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let magic = word(0);
    if magic != MAGIC {
        return Err(SpzError::BadMagic { found: magic });
    }
    let version = word(4);
    // SN17's decoder takes versions 1..=2 (`404/load-spz.cc` line 504); version 1 (float16
    // positions) "was never released" (line 420) and is not supported here. Niantic's gzip
    // files are versions 1..=3; version 3 switched to smallest-three rotations
    // (`niantic/load-spz.h` line 72); version 4 is a different, multi-stream container.
    let ok = match container {
        SpzContainer::Zstd => version == 2,
        SpzContainer::Gzip => version == 2 || version == 3,
    };
    if !ok {
        return Err(SpzError::UnsupportedVersion { version, container });
    }
    let count = word(8);
    if count == 0 {
        return Err(SpzError::NoPoints);
    }
    if count > limits.max_points {
        return Err(SpzError::TooManyPoints {
            count: u64::from(count),
            limit: u64::from(limits.max_points),
        });
    }
    let degree = header[12];
    let k = sh_rest_coeffs(degree).ok_or(SpzError::UnsupportedShDegree { degree })?;
    let fractional_bits = header[13];
    let flags = header[14];
    let n = count as usize;
    let sizes = section_sizes(version, k);
    let available = payload.len() as u64;
    let mut needed = 16u64;
    for (section, per) in sizes {
        needed += (per as u64) * u64::from(count);
        if needed > available {
            return Err(SpzError::Truncated {
                section,
                needed,
                available,
            });
        }
    }
    // Niantic appends extension records when flag 0x2 is set (`niantic/load-spz.cc` lines
    // 891-901); they carry no splat data this decoder uses.
    if available > needed && flags & 0x2 == 0 {
        return Err(SpzError::TrailingBytes {
            extra: available - needed,
        });
    }

    // Everything below is sized by `n`, which the payload length has just bounded.
    let mut splat = Splat::zeroed(n, degree, false);
    let mut rest = &payload[16..];
    let mut take = |per: usize| {
        let (head, tail) = rest.split_at(per * n);
        rest = tail;
        head
    };
    let [(_, p0), (_, p1), (_, p2), (_, p3), (_, p4), (_, p5)] = sizes;
    let (pos, alpha, color, scale, rot, sh) =
        (take(p0), take(p1), take(p2), take(p3), take(p4), take(p5));

    // Positions: sign-extended 24-bit integers times `1.0 / (1 << fractionalBits)`, the scale
    // computed in double and stored as float (`404/load-spz.cc` lines 427-437); as a power
    // of two it is exact for every shift the reference can express.
    let fscale = 0.5f64.powi(i32::from(fractional_bits)) as f32;
    for (dst, src) in splat.positions.iter_mut().zip(pos.chunks_exact(9)) {
        for a in 0..3 {
            let raw = i32::from(src[a * 3])
                | i32::from(src[a * 3 + 1]) << 8
                | i32::from(src[a * 3 + 2]) << 16;
            let fixed = (raw << 8) >> 8;
            dst[a] = fixed as f32 * fscale;
        }
    }
    // Alphas: invSigmoid(a / 255) (`404/load-spz.cc` lines 457-459).
    for (dst, &a) in splat.opacities.iter_mut().zip(alpha) {
        *dst = inv_sigmoid(f32::from(a) / 255.0);
    }
    // Colours: ((c / 255) - 0.5) / 0.15 (`404/load-spz.cc` lines 461-463).
    for (dst, src) in splat.sh_dc.iter_mut().zip(color.chunks_exact(3)) {
        for a in 0..3 {
            dst[a] = ((f32::from(src[a]) / 255.0) - 0.5) / COLOR_SCALE;
        }
    }
    // Scales: s / 16 - 10 (`404/load-spz.cc` lines 439-441).
    for (dst, src) in splat.log_scales.iter_mut().zip(scale.chunks_exact(3)) {
        for a in 0..3 {
            dst[a] = f32::from(src[a]) / 16.0 - 10.0;
        }
    }
    if version >= 3 {
        for (dst, src) in splat.rotations.iter_mut().zip(rot.chunks_exact(4)) {
            let xyzw = unpack_smallest_three([src[0], src[1], src[2], src[3]]);
            *dst = [xyzw[3], xyzw[0], xyzw[1], xyzw[2]];
        }
    } else {
        // Version 2: xyz = r * (1 / 127.5) - 1, w = sqrt(max(0, 1 - |xyz|^2))
        // (`404/load-spz.cc` lines 443-455).
        const INV: f32 = 1.0 / 127.5;
        for (dst, src) in splat.rotations.iter_mut().zip(rot.chunks_exact(3)) {
            let x = f32::from(src[0]) * INV + -1.0;
            let y = f32::from(src[1]) * INV + -1.0;
            let z = f32::from(src[2]) * INV + -1.0;
            let w = (1.0 - (x * x + y * y + z * z)).max(0.0).sqrt();
            *dst = [w, x, y, z];
        }
    }
    // SH: (b - 128) / 128, same coefficient-major order as `Splat` (`404/load-spz.cc` lines
    // 465-467).
    for (dst, &b) in splat.sh_rest.iter_mut().zip(sh) {
        *dst = unquantize_sh(b);
    }
    Ok(SpzDecoded {
        splat,
        container,
        version,
        flags,
        fractional_bits,
    })
}

/// Inverse of [`pack_smallest_three`] (`niantic/splat-utils.h` lines 86-108): the three
/// stored components are read lowest bits first from index 3 down, each
/// `sqrt(1/2) * mag / 511` with its sign, and the largest is `sqrt(1 - sum of squares)`
/// (NaN for corrupt input, as in the reference). Returns `x, y, z, w`.
fn unpack_smallest_three(r: [u8; 4]) -> [f32; 4] {
    let mut comp = u32::from_le_bytes(r);
    const MASK: u32 = (1 << 9) - 1;
    let largest = (comp >> 30) as usize;
    let mut out = [0.0f32; 4];
    let mut sum = 0.0f32;
    for i in (0..4).rev() {
        if i != largest {
            let mag = comp & MASK;
            let neg = (comp >> 9) & 1;
            comp >>= 10;
            let mut v = SQRT1_2 * mag as f32 / MASK as f32;
            if neg == 1 {
                v = -v;
            }
            out[i] = v;
            sum += v * v;
        }
    }
    out[largest] = (1.0 - sum).sqrt();
    out
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn round_matches_c_round() {
        for &x in &[
            0.0f32,
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            0.499_999_97,
            -0.499_999_97,
            127.5,
            254.5,
            1e9,
            -1e9,
            8_388_607.5,
            3.7,
            -3.7,
        ] {
            assert_eq!(round_f32(x), x.round(), "{x}");
        }
        assert!(round_f32(f32::NAN).is_nan());
    }

    #[test]
    fn x86_casts() {
        assert_eq!(cast_i32_x86(f32::NAN), i32::MIN);
        assert_eq!(cast_i32_x86(3e9), i32::MIN);
        assert_eq!(cast_i32_x86(-3e9), i32::MIN);
        assert_eq!(cast_i32_x86(-7.9), -7);
        assert_eq!(to_u8(f32::NAN), 0);
        assert_eq!(to_u8(1e30), 255);
        assert_eq!(to_u8(-3.0), 0);
        assert_eq!(to_u8(127.5), 128);
    }

    #[test]
    fn sh_buckets() {
        // 0 maps to the bucket centre 128; C's truncating division for negatives.
        assert_eq!(quantize_sh(0.0, 8), 128);
        assert_eq!(quantize_sh(0.0, 16), 128);
        assert_eq!(quantize_sh(-1.2, 8), 0);
        assert_eq!(quantize_sh(1.5, 16), 255);
        // 0.02 * 128 = 2.56 → 131 → (131 + 4) / 8 * 8 = 128; 0.03 → 132 → 136 (ties go up).
        assert_eq!(quantize_sh(0.02, 8), 128);
        assert_eq!(quantize_sh(0.03, 8), 136);
        assert_eq!(quantize_sh(-0.03, 8), 128);
        assert_eq!(quantize_sh(f32::INFINITY, 8), 0);
        assert_eq!(quantize_sh(f32::NAN, 16), 0);
    }

    #[test]
    fn smallest_three_round_trip() {
        let q = [0.1f32, -0.7, 0.2, 0.6];
        let n = q.iter().map(|v| v * v).sum::<f32>().sqrt();
        let q = q.map(|v| v / n);
        let back = unpack_smallest_three(pack_smallest_three(q));
        // Same rotation up to sign; compare after aligning the sign.
        let dot: f32 = q.iter().zip(&back).map(|(a, b)| a * b).sum();
        assert!(dot.abs() > 0.9999, "{q:?} vs {back:?}");
    }
}
