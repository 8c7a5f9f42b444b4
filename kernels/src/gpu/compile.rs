//! NVRTC compilation of the `.cu` sources for the device's compute capability at first use,
//! with the PTX cached on disk keyed by the source's hash and the architecture, so a restart
//! does not pay the compile again. A compile error carries NVRTC's log.

use std::path::PathBuf;

use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};
use sha2::{Digest, Sha256};

use super::GpuError;

/// One CUDA source file of this crate.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    pub name: &'static str,
    pub code: &'static str,
}

pub const DECODE: Source = Source {
    name: "decode",
    code: include_str!("../cuda/decode.cu"),
};
pub const SORT: Source = Source {
    name: "sort",
    code: include_str!("../cuda/sort.cu"),
};
pub const RASTER: Source = Source {
    name: "raster",
    code: include_str!("../cuda/raster.cu"),
};
pub const METRICS: Source = Source {
    name: "metrics",
    code: include_str!("../cuda/metrics.cu"),
};

/// Where compiled PTX is kept: `SPLATFLEET_PTX_CACHE`, else the user cache directory, else
/// the temporary directory.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SPLATFLEET_PTX_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("splatfleet/ptx");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".cache/splatfleet/ptx");
    }
    std::env::temp_dir().join("splatfleet-ptx")
}

/// The full program text: shared constants, then the file.
pub fn program_text(source: &Source) -> String {
    format!("{}\n{}", crate::constants::cuda_prelude(), source.code)
}

/// PTX for `source` on compute capability `major.minor`, from the cache or freshly compiled.
pub fn ptx_for(source: &Source, major: i32, minor: i32) -> Result<Ptx, GpuError> {
    let text = program_text(source);
    let arch = format!("--gpu-architecture=compute_{major}{minor}");
    let mut hasher = Sha256::new();
    hasher.update(text.as_bytes());
    hasher.update(arch.as_bytes());
    let key = hex::encode(hasher.finalize());
    let path = cache_dir().join(format!(
        "{}-sm{major}{minor}-{}.ptx",
        source.name,
        &key[..16]
    ));
    if let Ok(ptx) = std::fs::read_to_string(&path) {
        return Ok(Ptx::from_src(ptx));
    }
    let options = CompileOptions {
        options: vec![arch, "--std=c++17".into()],
        name: Some(format!("{}.cu", source.name)),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(&text, options).map_err(|err| match err {
        CompileError::CompileError { log, .. } => GpuError::Compile {
            module: source.name,
            log: log.to_string_lossy().into_owned(),
        },
        other => GpuError::Compile {
            module: source.name,
            log: format!("{other:?}"),
        },
    })?;
    // A cache that cannot be written only costs a compile next time.
    if let Some(dir) = path.parent() {
        if std::fs::create_dir_all(dir).is_ok() {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, ptx.to_src()).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
    }
    tracing::info!(module = source.name, cache = %path.display(), "compiled CUDA module");
    Ok(ptx)
}
