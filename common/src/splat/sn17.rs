//! Would SN17's own PLY parser accept this file? SN17 miners turn PLY into SPZ with
//! `pyspz.compress` (three-gen-subnet 5fc61f1 `neurons/miner/workers.py` line 110), whose parser
//! is `parseSplatFromStream` in 404-Repo/spz `src/cc/load-spz.cc` (tag 0.1 = commit 9b60cb4,
//! unchanged at f63213e, lines 630-795), and validators decode SPZ with
//! `deserializePackedGaussians` (same file, lines 495-549). This module re-states their rules
//! as a report, separate from the (more lenient on comments, stricter on layout) main reader.

/// Vertex-count ceiling of `parseSplatFromStream` (`load-spz.cc` line 665: `10 * 1024 * 1024`).
pub const SN17_PLY_MAX_VERTICES: i64 = 10 * 1024 * 1024;

/// One reason SN17's parser (or the validator's SPZ decoder) would refuse the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sn17Problem {
    /// Line 1 is not exactly `ply` (`load-spz.cc` line 640; a `\r` counts).
    FirstLine {
        /// The line found.
        found: String,
    },
    /// Line 2 is not exactly `format binary_little_endian 1.0` (line 646).
    FormatLine {
        /// The line found.
        found: String,
    },
    /// Line 3 does not start with `element vertex ` followed by an integer (lines 652-663):
    /// comments or `obj_info` before it count.
    VertexLine {
        /// The line found.
        found: String,
    },
    /// The vertex count is ≤ 0 or over 10 Mi (line 665).
    VertexCount {
        /// The count as `std::stoi` reads it.
        count: i64,
    },
    /// Over the 10 000 000 points the validator's SPZ decoder accepts (line 496).
    OverSpzPointLimit {
        /// The count.
        count: i64,
    },
    /// A header line after line 3 that is neither `property float NAME` nor `end_header`
    /// (lines 681-684): comments, other types, other elements.
    NotFloatProperty {
        /// 1-based line number.
        line_no: usize,
        /// The line.
        line: String,
    },
    /// The same property twice: the reference's name→index map then misreads the body.
    DuplicateProperty {
        /// Name.
        name: String,
    },
    /// No `end_header` line (line 673).
    NoEndHeader,
    /// A required field is missing (lines 699-722).
    MissingField {
        /// Name.
        name: &'static str,
    },
    /// The consecutive `f_rest_0..` run is not 0, 9, 24 or 45 long (lines 725-738; other
    /// multiples of 3 make `packGaussians` fail its size check).
    ShRest {
        /// Length of the run.
        count: usize,
    },
    /// Fewer body bytes than `count × fields × 4` (lines 740-748).
    TruncatedBody {
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        available: u64,
    },
}

/// Result of [`sn17_strict_check`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sn17PlyReport {
    /// Every rule broken; empty when SN17 would accept the file.
    pub problems: Vec<Sn17Problem>,
}

impl Sn17PlyReport {
    /// True when SN17's parser would accept the file.
    pub fn passes(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks a whole PLY (header and body size) against SN17's parser rules.
pub fn sn17_strict_check(bytes: &[u8]) -> Sn17PlyReport {
    sn17_check_header(bytes)
}

/// `std::stoi`: optional leading whitespace, optional sign, digits, anything after ignored;
/// `None` when there are no digits or the value overflows `int`.
fn stoi(s: &str) -> Option<i64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    let mut v: i64 = 0;
    for b in digits[..end].bytes() {
        v = v.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
        if v > i64::from(i32::MAX) + 1 {
            return None;
        }
    }
    let v = if neg { -v } else { v };
    (i64::from(i32::MIN)..=i64::from(i32::MAX))
        .contains(&v)
        .then_some(v)
}

pub(crate) fn sn17_check_header(bytes: &[u8]) -> Sn17PlyReport {
    let mut problems = Vec::new();
    // `std::getline` splits on '\n' only and keeps any '\r'.
    let mut lines = bytes.split(|&b| b == b'\n');
    let mut consumed = 0usize;
    let mut next_line = |consumed: &mut usize| -> Option<String> {
        let l = lines.next()?;
        *consumed += l.len() + 1;
        Some(String::from_utf8_lossy(l).into_owned())
    };
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    let l1 = next_line(&mut consumed);
    if l1.as_deref() != Some("ply") {
        problems.push(Sn17Problem::FirstLine { found: text(&l1) });
    }
    let l2 = next_line(&mut consumed);
    if l2.as_deref() != Some("format binary_little_endian 1.0") {
        problems.push(Sn17Problem::FormatLine { found: text(&l2) });
    }
    let l3 = next_line(&mut consumed);
    let count = l3
        .as_deref()
        .and_then(|l| l.strip_prefix("element vertex "))
        .and_then(stoi);
    match count {
        None => problems.push(Sn17Problem::VertexLine { found: text(&l3) }),
        Some(c) if c <= 0 || c > SN17_PLY_MAX_VERTICES => {
            problems.push(Sn17Problem::VertexCount { count: c })
        }
        Some(c) if c > 10_000_000 => problems.push(Sn17Problem::OverSpzPointLimit { count: c }),
        Some(_) => {}
    }
    let mut names: Vec<String> = Vec::new();
    let mut ended = false;
    let mut line_no = 3;
    while let Some(line) = next_line(&mut consumed) {
        line_no += 1;
        if line == "end_header" {
            ended = true;
            break;
        }
        match line.strip_prefix("property float ") {
            Some(name) => {
                if names.iter().any(|n| n == name) {
                    problems.push(Sn17Problem::DuplicateProperty { name: name.into() });
                }
                names.push(name.into());
            }
            None => problems.push(Sn17Problem::NotFloatProperty {
                line_no,
                line: line.chars().take(200).collect(),
            }),
        }
        if line_no > 10_000 {
            break;
        }
    }
    if !ended {
        problems.push(Sn17Problem::NoEndHeader);
        return Sn17PlyReport { problems };
    }
    const REQUIRED: [&str; 14] = [
        "x", "y", "z", "scale_0", "scale_1", "scale_2", "rot_1", "rot_2", "rot_3", "rot_0",
        "opacity", "f_dc_0", "f_dc_1", "f_dc_2",
    ];
    for name in REQUIRED {
        if !names.iter().any(|n| n == name) {
            problems.push(Sn17Problem::MissingField { name });
        }
    }
    let run = (0..45)
        .take_while(|j| names.iter().any(|n| *n == format!("f_rest_{j}")))
        .count();
    if !matches!(run, 0 | 9 | 24 | 45) {
        problems.push(Sn17Problem::ShRest { count: run });
    }
    if let Some(c) = count.filter(|&c| c > 0) {
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        let needed = (c as u64).saturating_mul(unique.len() as u64 * 4);
        let available = bytes.len().saturating_sub(consumed) as u64;
        if available < needed {
            problems.push(Sn17Problem::TruncatedBody { needed, available });
        }
    }
    Sn17PlyReport { problems }
}
