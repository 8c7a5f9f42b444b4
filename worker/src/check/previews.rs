//! The `--previews` directory: each rendered file's 4×4 contact sheet (the worker's own
//! [`contact_sheet_png`]) as `<file name>.png`, with `-2`, `-3`… added when files of the same
//! name sit in different directories. Files are checked in sorted order, so names are stable.

use std::{
    collections::HashSet,
    ffi::OsString,
    path::{Path, PathBuf},
};

use splatfleet_kernels::Views;

use crate::preview::{contact_sheet_png, PreviewError};

/// Why a contact sheet was not written.
#[derive(Debug, thiserror::Error)]
pub enum PreviewWriteError {
    #[error(transparent)]
    Encode(#[from] PreviewError),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Hands out unique preview paths inside one directory.
#[derive(Debug)]
pub struct PreviewDir {
    dir: PathBuf,
    taken: HashSet<OsString>,
}

impl PreviewDir {
    /// Creates `dir` (and its parents) when missing.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            taken: HashSet::new(),
        })
    }

    fn name_for(&mut self, model: &Path) -> PathBuf {
        let base = model
            .file_name()
            .map_or_else(|| OsString::from("model"), OsString::from);
        let mut candidate = base.clone();
        let mut n = 1;
        loop {
            let mut name = candidate.clone();
            name.push(".png");
            if self.taken.insert(name.clone()) {
                return self.dir.join(name);
            }
            n += 1;
            candidate = base.clone();
            candidate.push(format!("-{n}"));
        }
    }

    /// Writes the contact sheet of `views` for `model`; returns where.
    pub fn write(&mut self, model: &Path, views: &Views) -> Result<PathBuf, PreviewWriteError> {
        let png = contact_sheet_png(views)?;
        let path = self.name_for(model);
        std::fs::write(&path, png).map_err(|source| PreviewWriteError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::PreviewDir;

    #[test]
    fn same_names_in_different_directories_get_distinct_previews() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut dir = PreviewDir::create(&tmp.path().join("previews")).expect("create");
        let a = dir.name_for(Path::new("x/model.ply"));
        let b = dir.name_for(Path::new("y/model.ply"));
        let c = dir.name_for(Path::new("y/model.spz"));
        let names: Vec<_> = [a, b, c]
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["model.ply.png", "model.ply-2.png", "model.spz.png"]);
    }
}
