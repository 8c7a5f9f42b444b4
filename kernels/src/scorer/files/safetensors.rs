//! safetensors files (`dinov2-small/model.safetensors`, `quality_scorer.safetensors`), read
//! through the `safetensors` crate over a read-only memory map (`memmap2`): the header is
//! parsed and validated once at open (offsets cover the data exactly, no overflow), tensors
//! are converted to `f32` only when asked for.

use std::{collections::BTreeMap, fs::File, path::Path};

use memmap2::Mmap;
use safetensors::{tensor::Metadata, SafeTensorError, SafeTensors};

use super::{dtype::ElementType, ModelFileError};
use crate::scorer::model::Tensor;

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetensorsEntry {
    pub dtype: String,
    pub shape: Vec<usize>,
    /// Byte range in the data section.
    pub offsets: (usize, usize),
}

/// An open safetensors file: its map and its validated header.
#[derive(Debug)]
pub struct SafetensorsFile {
    file: String,
    map: Mmap,
    data_start: usize,
    entries: BTreeMap<String, SafetensorsEntry>,
}

impl SafetensorsFile {
    /// Maps `path` and validates its header; `file` names it in errors.
    pub fn open(path: &Path, file: &str) -> Result<Self, ModelFileError> {
        let handle = File::open(path).map_err(|e| ModelFileError::io(file, e))?;
        // SAFETY: the map is read-only and private to this process; the operator's model
        // files are not rewritten while a worker runs (a concurrent truncation would be the
        // one way to fault, as with any mapped file).
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&handle) }.map_err(|e| ModelFileError::io(file, e))?;
        let (header_len, metadata) =
            SafeTensors::read_metadata(&map).map_err(|e| header_error(file, e, map.len()))?;
        let entries = entries(&metadata);
        Ok(Self {
            file: file.to_string(),
            map,
            data_start: 8 + header_len,
            entries,
        })
    }

    /// Every tensor's header entry, by name.
    pub fn entries(&self) -> &BTreeMap<String, SafetensorsEntry> {
        &self.entries
    }

    /// The file's name in errors.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// `name` converted to `f32`; `None` when the file has no such tensor.
    pub fn tensor(&self, name: &str) -> Result<Option<Tensor>, ModelFileError> {
        let Some(entry) = self.entries.get(name) else {
            return Ok(None);
        };
        let element =
            element_type(&entry.dtype).ok_or_else(|| ModelFileError::UnsupportedDtype {
                file: self.file.clone(),
                name: name.to_string(),
                dtype: entry.dtype.clone(),
            })?;
        let numel = checked_numel(&entry.shape).ok_or_else(|| self.malformed(name))?;
        let start = self.data_start.checked_add(entry.offsets.0);
        let end = self.data_start.checked_add(entry.offsets.1);
        let bytes = match (start, end) {
            (Some(s), Some(e)) if s <= e => self.map.get(s..e),
            _ => None,
        }
        .ok_or_else(|| ModelFileError::Truncated {
            file: self.file.clone(),
            detail: format!("tensor {name} lies past the end of the file"),
        })?;
        let data = element
            .decode(bytes, numel)
            .ok_or_else(|| self.malformed(name))?;
        Ok(Some(Tensor {
            shape: entry.shape.clone(),
            data,
        }))
    }

    fn malformed(&self, name: &str) -> ModelFileError {
        ModelFileError::Malformed {
            file: self.file.clone(),
            detail: format!("tensor {name}: its byte range does not match its shape and dtype"),
        }
    }
}

fn entries(metadata: &Metadata) -> BTreeMap<String, SafetensorsEntry> {
    metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| {
            (
                name,
                SafetensorsEntry {
                    dtype: info.dtype.to_string(),
                    shape: info.shape.clone(),
                    offsets: info.data_offsets,
                },
            )
        })
        .collect()
}

/// The element type of a safetensors dtype name the loader converts.
fn element_type(dtype: &str) -> Option<ElementType> {
    match dtype {
        "F32" => Some(ElementType::F32),
        "F16" => Some(ElementType::F16),
        "BF16" => Some(ElementType::BF16),
        "F64" => Some(ElementType::F64),
        _ => None,
    }
}

/// The product of `shape`, `None` on overflow.
pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

fn header_error(file: &str, e: SafeTensorError, len: usize) -> ModelFileError {
    match e {
        SafeTensorError::HeaderTooSmall
        | SafeTensorError::InvalidHeaderLength
        | SafeTensorError::MetadataIncompleteBuffer => ModelFileError::Truncated {
            file: file.to_string(),
            detail: format!("safetensors header or data do not fit the file's {len} bytes ({e})"),
        },
        other => ModelFileError::Malformed {
            file: file.to_string(),
            detail: format!("safetensors header: {other}"),
        },
    }
}
