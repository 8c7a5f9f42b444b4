//! Judging one file: read it under a size cap, tell PLY from SPZ by its first bytes (by its
//! extension when they say nothing), decode it with `common::splat`'s strict readers and hand
//! the model to the worker's own [`Gate`]. Every failure becomes a [`FileProblem`] in the
//! file's [`FileCheck`]; nothing read from a file can stop the run.

use std::{
    collections::BTreeMap,
    fmt,
    io::{self, Read as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use splatfleet_common::splat::{
    decode_spz, read_ply, PlyDecoded, PlyError, PlyLimits, SpzError, SpzLimits,
};
use splatfleet_kernels::Views;

use crate::gate::{gate_input_from_spz, Gate, GateReason};

/// What a file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    Ply,
    Spz,
    /// Not read, or neither PLY nor SPZ.
    Unknown,
}

impl ModelFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelFormat::Ply => "ply",
            ModelFormat::Spz => "spz",
            ModelFormat::Unknown => "unknown",
        }
    }

    /// PLY by its `ply` magic line, SPZ by its zstd or gzip frame; otherwise what the
    /// extension claims, so a `.ply` of random bytes gets the PLY reader's own complaint.
    fn sniff(bytes: &[u8], path: &Path) -> Self {
        match bytes {
            [b'p', b'l', b'y', b'\n' | b'\r', ..] => ModelFormat::Ply,
            [0x28, 0xb5, 0x2f, 0xfd, ..] | [0x1f, 0x8b, ..] => ModelFormat::Spz,
            _ => match path.extension().and_then(|e| e.to_str()) {
                Some(ext) if ext.eq_ignore_ascii_case("ply") => ModelFormat::Ply,
                Some(ext) if ext.eq_ignore_ascii_case("spz") => ModelFormat::Spz,
                _ => ModelFormat::Unknown,
            },
        }
    }
}

impl fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a file's bytes could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{size} bytes, over the {limit}-byte cap (worker.max_response_bytes)")]
    TooLarge { size: u64, limit: u64 },
}

/// Why a file's bytes are not a model.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Ply(#[from] PlyError),
    #[error("{0}")]
    Spz(#[from] SpzError),
    #[error("neither a PLY (no `ply` header) nor an SPZ (no zstd or gzip frame)")]
    UnknownFormat,
}

/// One reason a file did not pass.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    #[error("unreadable: {0}")]
    Unreadable(#[from] ReadError),
    #[error("corrupt: {0}")]
    Corrupt(#[from] DecodeError),
    #[error("{0}")]
    Gate(GateReason),
}

impl FileProblem {
    /// Stable name for grouping: `unreadable`, `corrupt`, or the gate's own category.
    pub fn category(&self) -> &'static str {
        match self {
            FileProblem::Unreadable(_) => "unreadable",
            FileProblem::Corrupt(_) => "corrupt",
            FileProblem::Gate(reason) => reason.category(),
        }
    }
}

/// Everything known about one checked file.
#[derive(Debug)]
pub struct FileCheck {
    pub path: PathBuf,
    pub format: ModelFormat,
    /// Size on disk, when it could be read.
    pub bytes: Option<u64>,
    pub gaussians: Option<usize>,
    pub passed: bool,
    /// The gate's score; `None` when the file never reached the gate.
    pub local_score: Option<f32>,
    /// Empty when it passed; most fundamental first.
    pub problems: Vec<FileProblem>,
    /// The gate's measurements (see `GateVerdict::metrics`).
    pub metrics: BTreeMap<String, f64>,
    /// The rendered views, until the preview is written.
    pub views: Option<Views>,
    /// Where its contact sheet was written.
    pub preview: Option<PathBuf>,
    pub elapsed: Duration,
}

impl FileCheck {
    /// A file that failed before the gate saw it.
    pub fn failed_early(
        path: PathBuf,
        format: ModelFormat,
        bytes: Option<u64>,
        problem: FileProblem,
        started: Instant,
    ) -> Self {
        Self {
            path,
            format,
            bytes,
            gaussians: None,
            passed: false,
            local_score: None,
            problems: vec![problem],
            metrics: BTreeMap::new(),
            views: None,
            preview: None,
            elapsed: started.elapsed(),
        }
    }

    /// The first problem's category, `""` when it passed.
    pub fn category(&self) -> &'static str {
        self.problems.first().map_or("", FileProblem::category)
    }

    /// Every problem as one line.
    pub fn reasons_text(&self) -> String {
        self.problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Reads at most `limit` bytes; a larger file (or one that grows while read, or a device
/// that never ends) is refused without reading past the cap.
fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size > limit {
        return Err(ReadError::TooLarge { size, limit });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

fn decode(bytes: &[u8], format: ModelFormat, limit: u64) -> Result<PlyDecoded, DecodeError> {
    match format {
        ModelFormat::Ply => {
            let limits = PlyLimits {
                max_input_bytes: limit,
                ..PlyLimits::default()
            };
            Ok(read_ply(bytes, &limits)?)
        }
        ModelFormat::Spz => {
            let defaults = SpzLimits::default();
            let limits = SpzLimits {
                max_input_bytes: usize::try_from(limit)
                    .unwrap_or(usize::MAX)
                    .min(defaults.max_input_bytes),
                ..defaults
            };
            Ok(gate_input_from_spz(decode_spz(bytes, &limits)?))
        }
        ModelFormat::Unknown => Err(DecodeError::UnknownFormat),
    }
}

/// A file read and decoded, waiting for the gate.
#[derive(Debug)]
pub struct LoadedModel {
    path: PathBuf,
    format: ModelFormat,
    bytes: u64,
    decoded: PlyDecoded,
    started: Instant,
}

impl LoadedModel {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> ModelFormat {
        self.format
    }

    pub fn decoded(&self) -> &PlyDecoded {
        &self.decoded
    }

    /// When reading it began.
    pub fn started(&self) -> Instant {
        self.started
    }
}

/// Reads and decodes one file (the part that needs no renderer, so it can run ahead of the
/// gate on another thread). `max_bytes` caps what is read. A file that fails here is already
/// its finished [`FileCheck`].
pub fn load(path: &Path, max_bytes: u64) -> Result<LoadedModel, Box<FileCheck>> {
    let started = Instant::now();
    let bytes = match read_capped(path, max_bytes) {
        Ok(bytes) => bytes,
        Err(err) => {
            let size = std::fs::metadata(path).ok().map(|m| m.len());
            let format = ModelFormat::Unknown;
            return Err(Box::new(FileCheck::failed_early(
                path.to_path_buf(),
                format,
                size,
                err.into(),
                started,
            )));
        }
    };
    let size = bytes.len() as u64;
    let format = ModelFormat::sniff(&bytes, path);
    match decode(&bytes, format, max_bytes) {
        Ok(decoded) => Ok(LoadedModel {
            path: path.to_path_buf(),
            format,
            bytes: size,
            decoded,
            started,
        }),
        Err(err) => Err(Box::new(FileCheck::failed_early(
            path.to_path_buf(),
            format,
            Some(size),
            err.into(),
            started,
        ))),
    }
}

/// Judges a loaded model with the gate. `elapsed` covers reading, decoding, any wait for the
/// gate, and the gate itself.
pub fn judge(model: LoadedModel, gate: &mut Gate) -> FileCheck {
    let verdict = gate.evaluate(&model.decoded, None);
    FileCheck {
        path: model.path,
        format: model.format,
        bytes: Some(model.bytes),
        gaussians: Some(model.decoded.report.count),
        passed: verdict.passed,
        local_score: Some(verdict.local_score),
        problems: verdict.reasons.into_iter().map(FileProblem::Gate).collect(),
        metrics: verdict.metrics,
        views: verdict.views,
        preview: None,
        elapsed: model.started.elapsed(),
    }
}
