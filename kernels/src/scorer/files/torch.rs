//! PyTorch checkpoints (`torch.save` of a state dict), in both of torch's formats, memory-mapped:
//!
//! - **zip** (torch ≥ 1.6, `torch/serialization.py` `_save`): a stored zip whose entries sit
//!   under one folder named by the first entry (`archive/` for current torch):
//!   `data.pkl` (the state dict, pickle protocol 2, tensors as
//!   `_rebuild_tensor_v2(BINPERSID ('storage', torch.<Kind>Storage, key, location, numel), …)`),
//!   `data/<key>` (each storage's raw little-endian bytes), `version`, `byteorder`, ….
//! - **legacy** (`_legacy_save`): five pickles back to back (the magic number
//!   `0x1950a86a20f9469cfc6c`, the protocol version 1001, the sys info dict, the state dict,
//!   the list of storage keys), then each storage in that key order as a little-endian `u64`
//!   element count followed by its bytes (persistent ids have a sixth field, the view
//!   metadata).
//!
//! Why by hand: on crates.io, `serde-pickle` has no persistent ids (every torch tensor is
//! one), `repugnant-pickle` (0.0.1, unmaintained) reads only the zip format, and
//! `candle-core`'s reader comes with a whole tensor framework. The pickle VM
//! ([`super::pickle`]) accepts only what a state dict needs.
//!
//! Supported storages: Float, Half, BFloat16 (and Double); contiguous tensors only. Other
//! storage kinds (e.g. the Long of `num_batches_tracked`) are located, and refused only when
//! their tensor is asked for.

use std::{collections::BTreeMap, fs::File, io::Cursor, path::Path};

use memmap2::Mmap;

use super::{
    dtype::ElementType,
    pickle::{self, PickleError, StorageRef, TensorRef, Value},
    safetensors::checked_numel,
    ModelFileError,
};
use crate::scorer::model::Tensor;

/// torch's legacy magic number, `0x1950a86a20f9469cfc6c`, as pickle's LONG1 bytes.
pub const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// torch's legacy protocol version.
pub const LEGACY_PROTOCOL_VERSION: i64 = 1001;

/// Which of torch's formats a checkpoint is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchFormat {
    Zip,
    Legacy,
}

/// Where a storage's bytes lie in the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    len: usize,
}

/// An open checkpoint: its map, its tensors and where their storages lie.
#[derive(Debug)]
pub struct TorchCheckpoint {
    file: String,
    format: TorchFormat,
    map: Mmap,
    tensors: BTreeMap<String, TensorRef>,
    storages: BTreeMap<String, Span>,
}

/// The element size of a torch storage kind (`Float`, `Half`, …).
fn kind_size(kind: &str) -> Option<usize> {
    Some(match kind {
        "Float" | "Int" => 4,
        "Half" | "BFloat16" | "Short" => 2,
        "Double" | "Long" | "ComplexFloat" => 8,
        "Byte" | "Char" | "Bool" | "QUInt8" | "QInt8" => 1,
        "ComplexDouble" => 16,
        _ => return None,
    })
}

fn kind_element(kind: &str) -> Option<ElementType> {
    match kind {
        "Float" => Some(ElementType::F32),
        "Half" => Some(ElementType::F16),
        "BFloat16" => Some(ElementType::BF16),
        "Double" => Some(ElementType::F64),
        _ => None,
    }
}

impl TorchCheckpoint {
    /// Maps `path`, runs its pickles and locates every storage (no tensor data is read);
    /// `file` names it in errors.
    pub fn open(path: &Path, file: &str) -> Result<Self, ModelFileError> {
        let handle = File::open(path).map_err(|e| ModelFileError::io(file, e))?;
        // SAFETY: read-only private map of a file nobody rewrites while a worker runs.
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&handle) }.map_err(|e| ModelFileError::io(file, e))?;
        let (format, root, storages) = if map.starts_with(b"PK\x03\x04") {
            let (root, storages) = read_zip(&map, file)?;
            (TorchFormat::Zip, root, storages)
        } else if map.first() == Some(&0x80) {
            let (root, storages) = read_legacy(&map, file)?;
            (TorchFormat::Legacy, root, storages)
        } else {
            return Err(ModelFileError::Malformed {
                file: file.to_string(),
                detail: "neither a torch zip checkpoint nor a legacy one (no zip or pickle \
                         header)"
                    .into(),
            });
        };
        let tensors = state_dict(root, file)?;
        Ok(Self {
            file: file.to_string(),
            format,
            map,
            tensors,
            storages,
        })
    }

    pub fn format(&self) -> TorchFormat {
        self.format
    }

    /// Every tensor's shape, by name.
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.shape.clone()))
            .collect()
    }

    /// `name` converted to `f32`; `None` when the state dict has no such tensor.
    pub fn tensor(&self, name: &str) -> Result<Option<Tensor>, ModelFileError> {
        let Some(t) = self.tensors.get(name) else {
            return Ok(None);
        };
        let unsupported = || ModelFileError::UnsupportedDtype {
            file: self.file.clone(),
            name: name.to_string(),
            dtype: format!("torch.{}Storage", t.storage.kind),
        };
        let element = kind_element(&t.storage.kind).ok_or_else(unsupported)?;
        if !is_contiguous(&t.shape, &t.stride) {
            return Err(ModelFileError::NonContiguous {
                file: self.file.clone(),
                name: name.to_string(),
                shape: t.shape.clone().into(),
                stride: t.stride.clone().into(),
            });
        }
        let span = self
            .storages
            .get(&t.storage.key)
            .ok_or_else(|| self.malformed(format!("storage {} is missing", t.storage.key)))?;
        let numel = checked_numel(&t.shape)
            .ok_or_else(|| self.malformed(format!("tensor {name}: its size overflows")))?;
        let size = element.size();
        // Elements from the storage's start: a legacy view's offset plus the tensor's.
        let first = t
            .storage
            .view_offset
            .checked_add(t.offset)
            .and_then(|e| usize::try_from(e).ok());
        let range = first.and_then(|first| {
            let start = first.checked_mul(size)?;
            let end = start.checked_add(numel.checked_mul(size)?)?;
            (end <= span.len).then_some((span.start + start, span.start + end))
        });
        let (start, end) = range.ok_or_else(|| {
            self.malformed(format!(
                "tensor {name} (shape {:?}, offset {}) lies outside its storage of {} bytes",
                t.shape, t.offset, span.len
            ))
        })?;
        let bytes = self
            .map
            .get(start..end)
            .ok_or_else(|| ModelFileError::Truncated {
                file: self.file.clone(),
                detail: format!("tensor {name} lies past the end of the file"),
            })?;
        let data = element
            .decode(bytes, numel)
            .ok_or_else(|| self.malformed(format!("tensor {name}: byte count mismatch")))?;
        Ok(Some(Tensor {
            shape: t.shape.clone(),
            data,
        }))
    }

    fn malformed(&self, detail: String) -> ModelFileError {
        ModelFileError::Malformed {
            file: self.file.clone(),
            detail,
        }
    }
}

/// torch's own test: strides of the row-major layout, size-1 dimensions excepted.
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    if shape.len() != stride.len() {
        return false;
    }
    let mut expected = 1usize;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}

fn pickle_error(file: &str, e: PickleError) -> ModelFileError {
    match e {
        PickleError::UnsupportedOpcode {
            opcode,
            name,
            offset,
        } => ModelFileError::UnsupportedOpcode {
            file: file.to_string(),
            opcode,
            name,
            offset,
        },
        PickleError::UnsupportedGlobal { module, name } => ModelFileError::UnsupportedGlobal {
            file: file.to_string(),
            module,
            name,
        },
        PickleError::Truncated { offset } => ModelFileError::Truncated {
            file: file.to_string(),
            detail: format!("pickle ends at byte {offset} before its STOP"),
        },
        PickleError::Malformed { offset, detail } => ModelFileError::Malformed {
            file: file.to_string(),
            detail: format!("pickle at byte {offset}: {detail}"),
        },
    }
}

/// The zip format: the root object of `<archive>/data.pkl` and each `data/<key>` entry's span.
fn read_zip(map: &[u8], file: &str) -> Result<(Value, BTreeMap<String, Span>), ModelFileError> {
    let zip_err = |e: zip::result::ZipError| ModelFileError::Malformed {
        file: file.to_string(),
        detail: format!("zip: {e}"),
    };
    let mut archive = zip::ZipArchive::new(Cursor::new(map)).map_err(zip_err)?;
    // torch names the archive's folder by its first entry.
    let first = archive
        .name_for_index(0)
        .and_then(Result::ok)
        .map(|name| name.to_string())
        .unwrap_or_default();
    let prefix = match first.split_once('/') {
        Some((dir, _)) => format!("{dir}/"),
        None => String::new(),
    };
    let data_prefix = format!("{prefix}data/");
    let mut pickle_span = None;
    let mut storages = BTreeMap::new();
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(zip_err)?;
        let name = entry.name().map_err(zip_err)?.to_string();
        let is_pickle = name == format!("{prefix}data.pkl");
        let key = name.strip_prefix(&data_prefix).map(str::to_string);
        if !is_pickle && key.is_none() {
            continue;
        }
        if entry.compression() != zip::CompressionMethod::Stored {
            return Err(ModelFileError::Malformed {
                file: file.to_string(),
                detail: format!("zip entry {name} is compressed (torch stores entries)"),
            });
        }
        let len = usize::try_from(entry.size()).unwrap_or(usize::MAX);
        let start = entry
            .data_start()
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| ModelFileError::Malformed {
                file: file.to_string(),
                detail: format!("zip entry {name}: no data offset"),
            })?;
        if start.checked_add(len).is_none_or(|end| end > map.len()) {
            return Err(ModelFileError::Truncated {
                file: file.to_string(),
                detail: format!("zip entry {name} runs past the end of the file"),
            });
        }
        let span = Span { start, len };
        match key {
            Some(key) => {
                storages.insert(key, span);
            }
            None => pickle_span = Some(span),
        }
    }
    let span = pickle_span.ok_or_else(|| ModelFileError::Malformed {
        file: file.to_string(),
        detail: format!("no {prefix}data.pkl in the zip"),
    })?;
    let pkl = &map[span.start..span.start + span.len];
    let (root, _) = pickle::load(pkl, 0).map_err(|e| pickle_error(file, e))?;
    Ok((root, storages))
}

/// The legacy format: the root object and each storage's span after the pickles.
fn read_legacy(map: &[u8], file: &str) -> Result<(Value, BTreeMap<String, Span>), ModelFileError> {
    let malformed = |detail: String| ModelFileError::Malformed {
        file: file.to_string(),
        detail,
    };
    let load = |pos: usize| pickle::load(map, pos).map_err(|e| pickle_error(file, e));
    let (magic, pos) = load(0)?;
    if !matches!(&magic, Value::Long(b) if b[..] == LEGACY_MAGIC) {
        return Err(malformed(
            "legacy checkpoint without torch's magic number".into(),
        ));
    }
    let (protocol, pos) = load(pos)?;
    if !matches!(protocol, Value::Int(LEGACY_PROTOCOL_VERSION)) {
        return Err(malformed(format!(
            "legacy protocol version {protocol:?}, expected {LEGACY_PROTOCOL_VERSION}"
        )));
    }
    let (sys_info, pos) = load(pos)?;
    if let Value::Dict(d) = &sys_info {
        let big_endian = d.borrow().iter().any(|(k, v)| {
            matches!(k, Value::Str(s) if s == "little_endian") && matches!(v, Value::Bool(false))
        });
        if big_endian {
            return Err(malformed("a big-endian legacy checkpoint".into()));
        }
    }
    let (root, pos) = load(pos)?;
    let (keys, mut pos) = load(pos)?;
    let keys: Vec<String> = match keys {
        Value::List(l) => l
            .borrow()
            .iter()
            .map(|k| match k {
                Value::Str(s) => Ok(s.clone()),
                Value::Int(i) => Ok(i.to_string()),
                _ => Err(malformed("a storage key that is not a string".into())),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(malformed("the storage key list is not a list".into())),
    };
    // Each storage's element size, from the references in the state dict.
    let mut kinds = BTreeMap::new();
    collect_storages(&root, &mut kinds);
    let mut storages = BTreeMap::new();
    for key in keys {
        let kind = kinds
            .get(&key)
            .ok_or_else(|| malformed(format!("storage {key} is listed but never used")))?;
        let size = kind_size(kind)
            .ok_or_else(|| malformed(format!("storage {key}: unknown kind {kind}Storage")))?;
        let count = map
            .get(pos..pos + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| ModelFileError::Truncated {
                file: file.to_string(),
                detail: format!("storage {key}'s size lies past the end of the file"),
            })?;
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(size))
            .filter(|&len| {
                (pos + 8)
                    .checked_add(len)
                    .is_some_and(|end| end <= map.len())
            })
            .ok_or_else(|| ModelFileError::Truncated {
                file: file.to_string(),
                detail: format!("storage {key} ({count} elements) runs past the end of the file"),
            })?;
        storages.insert(
            key,
            Span {
                start: pos + 8,
                len,
            },
        );
        pos += 8 + len;
    }
    Ok((root, storages))
}

fn collect_storages(v: &Value, out: &mut BTreeMap<String, String>) {
    let mut add = |s: &StorageRef| {
        out.insert(s.key.clone(), s.kind.clone());
    };
    match v {
        Value::Storage(s) => add(s),
        Value::Tensor(t) => add(&t.storage),
        Value::Dict(d) => {
            for (_, item) in d.borrow().iter() {
                if let Value::Tensor(t) = item {
                    add(&t.storage);
                }
            }
        }
        _ => {}
    }
}

/// The state dict's tensors by name (non-tensor entries are skipped).
fn state_dict(root: Value, file: &str) -> Result<BTreeMap<String, TensorRef>, ModelFileError> {
    let Value::Dict(d) = root else {
        return Err(ModelFileError::Malformed {
            file: file.to_string(),
            detail: "the checkpoint is not a state dict".into(),
        });
    };
    let mut out = BTreeMap::new();
    for (k, v) in d.borrow().iter() {
        match (k, v) {
            (Value::Str(name), Value::Tensor(t)) => {
                out.insert(name.clone(), t.clone());
            }
            (k, _) => tracing::debug!(file, key = ?k, "skipping a non-tensor state dict entry"),
        }
    }
    Ok(out)
}
