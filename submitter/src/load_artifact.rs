//! Loading what a result submits: the worker's SPZ from the artifact store (checked against
//! its recorded size and sha256, and decoded once so the validator is never sent bytes it
//! cannot read), or, when the worker stored only the PLY, the PLY encoded to SN17's SPZ here.

use bytes::Bytes;
use splatfleet_common::{
    artifacts::{ArtifactError, ArtifactStore},
    messages::ArtifactRef,
    splat::{decode_spz, encode_spz, read_ply, PlyError, PlyLimits, SpzError, SpzLimits},
};

/// Why a result's model could not be loaded; the result is recorded and dead-lettered.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("artifact: {0}")]
    Artifact(#[from] ArtifactError),
    #[error("artifact `{key}` is over submitter.max_artifact_bytes ({bytes} > {limit})")]
    TooLarge { key: String, bytes: u64, limit: u64 },
    #[error("PLY `{key}` does not parse: {source}")]
    Ply { key: String, source: PlyError },
    #[error("SPZ `{key}` does not decode: {source}")]
    Spz { key: String, source: SpzError },
    #[error("encoding `{key}` to SPZ failed: {source}")]
    Encode { key: String, source: SpzError },
    #[error("the decoding task failed: {0}")]
    Join(String),
}

fn check_size(reference: &ArtifactRef, limit: u64) -> Result<(), LoadError> {
    if reference.bytes > limit {
        return Err(LoadError::TooLarge {
            key: reference.key.clone(),
            bytes: reference.bytes,
            limit,
        });
    }
    Ok(())
}

/// The SPZ bytes to submit for a ready result.
pub async fn load_spz(
    store: &ArtifactStore,
    ply: &ArtifactRef,
    spz: Option<&ArtifactRef>,
    max_bytes: u64,
) -> Result<Bytes, LoadError> {
    if let Some(spz) = spz {
        check_size(spz, max_bytes)?;
        let bytes = store.get(spz).await?;
        let key = spz.key.clone();
        let checked = bytes.clone();
        tokio::task::spawn_blocking(move || {
            decode_spz(&checked, &SpzLimits::default())
                .map(|_| ())
                .map_err(|source| LoadError::Spz { key, source })
        })
        .await
        .map_err(|e| LoadError::Join(e.to_string()))??;
        return Ok(bytes);
    }
    check_size(ply, max_bytes)?;
    let bytes = store.get(ply).await?;
    let key = ply.key.clone();
    tokio::task::spawn_blocking(move || {
        let decoded = read_ply(&bytes, &PlyLimits::default()).map_err(|source| LoadError::Ply {
            key: key.clone(),
            source,
        })?;
        encode_spz(&decoded.splat)
            .map(Bytes::from)
            .map_err(|source| LoadError::Encode { key, source })
    })
    .await
    .map_err(|e| LoadError::Join(e.to_string()))?
}
