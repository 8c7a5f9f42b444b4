//! Which files a check covers: files named on the command line as they are, directories
//! walked recursively for `*.ply` and `*.spz`, in one sorted, de-duplicated list so every run
//! over the same tree reports in the same order.

use std::{
    collections::BTreeSet,
    io,
    path::{Path, PathBuf},
};

/// Why the command line names nothing to check (a usage error, exit 2).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: no such file or directory")]
    Missing { path: PathBuf },
    #[error("{path}: cannot be read: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("no .ply or .spz files found in {}", describe(.searched))]
    NoModels { searched: Vec<PathBuf> },
}

fn describe(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a walk found: model files, and directories inside the tree that could not be listed
/// (reported as unreadable rows rather than stopping the run).
#[derive(Debug, Default)]
pub struct Inputs {
    pub files: Vec<PathBuf>,
    pub unlistable_dirs: Vec<(PathBuf, io::Error)>,
}

/// True for names ending in `.ply` or `.spz`, in any case.
pub fn has_model_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| ext.eq_ignore_ascii_case("ply") || ext.eq_ignore_ascii_case("spz"))
}

/// Resolves the command line's paths. A named file is taken whatever its extension (the
/// reader tells PLY from SPZ by content); a path that does not exist, or a run that finds no
/// file at all, is an error.
pub fn collect(paths: &[PathBuf]) -> Result<Inputs, InputError> {
    let mut files = BTreeSet::new();
    let mut unlistable_dirs = Vec::new();
    for path in paths {
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(InputError::Missing { path: path.clone() })
            }
            Err(source) => {
                return Err(InputError::Unreadable {
                    path: path.clone(),
                    source,
                })
            }
        };
        if metadata.is_dir() {
            // The top directory itself must be listable: that is the command line's fault.
            let entries = std::fs::read_dir(path).map_err(|source| InputError::Unreadable {
                path: path.clone(),
                source,
            })?;
            walk(entries, &mut files, &mut unlistable_dirs);
        } else {
            files.insert(path.clone());
        }
    }
    if files.is_empty() && unlistable_dirs.is_empty() {
        return Err(InputError::NoModels {
            searched: paths.to_vec(),
        });
    }
    unlistable_dirs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Inputs {
        files: files.into_iter().collect(),
        unlistable_dirs,
    })
}

/// Depth-first walk. Symbolic links to directories are not followed (a link cycle would
/// never end); links to files are taken like files.
fn walk(
    entries: std::fs::ReadDir,
    files: &mut BTreeSet<PathBuf>,
    unlistable_dirs: &mut Vec<(PathBuf, io::Error)>,
) {
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => {
                // A vanished or unreadable entry has no name to report; skip it.
                tracing::debug!(%err, "directory entry skipped");
                continue;
            }
        };
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir {
            match std::fs::read_dir(&path) {
                Ok(inner) => walk(inner, files, unlistable_dirs),
                Err(err) => unlistable_dirs.push((path, err)),
            }
        } else if has_model_extension(&path)
            // A dangling link is kept, so it is reported as unreadable rather than vanishing.
            && !matches!(std::fs::metadata(&path), Ok(m) if !m.is_file())
        {
            files.insert(path);
        }
    }
}
