//! The artifact store: PLY, SPZ and preview bytes kept in an object store (the local
//! filesystem by default, S3 with the `s3` feature) under content-addressed keys
//! (`<kind>/<sha256[..2]>/<sha256>.<ext>`). Workers put, submitters get; every get checks the
//! size cap, the recorded size and the sha256 before the bytes are used, and every failure is
//! an [`ArtifactError`] naming the key.

use std::sync::Arc;

use bytes::Bytes;
use object_store::{path::Path as StorePath, ObjectStore, ObjectStoreExt as _, PutPayload};
use sha2::{Digest, Sha256};

use crate::{config::ObjectStoreSettings, messages::ArtifactRef};

/// Why an artifact could not be stored or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot open the artifact store at {location}: {reason}")]
    Open { location: String, reason: String },
    #[error("artifact key `{key}` is not a valid object key: {reason}")]
    BadKey { key: String, reason: String },
    #[error("artifact `{key}` is not in the store")]
    NotFound { key: String },
    #[error("artifact `{key}` is {bytes} bytes, over the {limit}-byte limit")]
    TooLarge { key: String, bytes: u64, limit: u64 },
    #[error("artifact `{key}` is {actual} bytes, but {expected} were recorded")]
    SizeMismatch {
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("artifact `{key}` has sha256 {actual}, but {expected} was recorded")]
    HashMismatch {
        key: String,
        expected: String,
        actual: String,
    },
    #[error("artifact store failed on `{key}`: {reason}")]
    Store { key: String, reason: String },
}

/// An opened artifact store.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    max_object_bytes: u64,
    location: String,
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The content-addressed key of `bytes` of a kind (`ply`, `spz`, `preview`) and extension.
pub fn content_key(kind: &str, sha256: &str, extension: &str) -> String {
    let fan_out = sha256.get(..2).unwrap_or("00");
    format!("{kind}/{fan_out}/{sha256}.{extension}")
}

impl ArtifactStore {
    /// Opens the store the settings name: S3 when `s3_bucket` is set, otherwise the local
    /// directory `root` (created if missing).
    pub fn open(settings: &ObjectStoreSettings) -> Result<Self, ArtifactError> {
        let max_object_bytes = settings.max_object_bytes;
        if let Some(bucket) = &settings.s3_bucket {
            return Self::open_s3(settings, bucket);
        }
        let location = settings.root.display().to_string();
        let open_error = |reason: String| ArtifactError::Open {
            location: location.clone(),
            reason,
        };
        std::fs::create_dir_all(&settings.root).map_err(|e| open_error(e.to_string()))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&settings.root)
            .map_err(|e| open_error(e.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            max_object_bytes,
            location,
        })
    }

    #[cfg(feature = "s3")]
    fn open_s3(settings: &ObjectStoreSettings, bucket: &str) -> Result<Self, ArtifactError> {
        use secrecy::ExposeSecret as _;
        let location = format!("s3://{bucket}");
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(settings.s3_allow_http);
        if let Some(region) = &settings.s3_region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &settings.s3_endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(key) = &settings.s3_access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &settings.s3_secret_access_key {
            builder = builder.with_secret_access_key(secret.expose_secret());
        }
        let store = builder.build().map_err(|e| ArtifactError::Open {
            location: location.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            store: Arc::new(store),
            max_object_bytes: settings.max_object_bytes,
            location,
        })
    }

    #[cfg(not(feature = "s3"))]
    fn open_s3(_settings: &ObjectStoreSettings, bucket: &str) -> Result<Self, ArtifactError> {
        Err(ArtifactError::Open {
            location: format!("s3://{bucket}"),
            reason: "this build has no S3 support (build splatfleet-common with the `s3` feature)"
                .into(),
        })
    }

    /// Where the store is, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn path(key: &str) -> Result<StorePath, ArtifactError> {
        StorePath::parse(key).map_err(|e| ArtifactError::BadKey {
            key: key.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Stores `bytes` under their content-addressed key and returns the reference.
    pub async fn put(
        &self,
        kind: &str,
        extension: &str,
        bytes: Bytes,
    ) -> Result<ArtifactRef, ArtifactError> {
        let sha256 = sha256_hex(&bytes);
        let key = content_key(kind, &sha256, extension);
        let size = bytes.len() as u64;
        if size > self.max_object_bytes {
            return Err(ArtifactError::TooLarge {
                key,
                bytes: size,
                limit: self.max_object_bytes,
            });
        }
        self.store
            .put(&Self::path(&key)?, PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| ArtifactError::Store {
                key: key.clone(),
                reason: e.to_string(),
            })?;
        Ok(ArtifactRef {
            key,
            sha256,
            bytes: size,
        })
    }

    /// Loads the artifact `reference` names and checks its size and sha256.
    pub async fn get(&self, reference: &ArtifactRef) -> Result<Bytes, ArtifactError> {
        let key = &reference.key;
        if reference.bytes > self.max_object_bytes {
            return Err(ArtifactError::TooLarge {
                key: key.clone(),
                bytes: reference.bytes,
                limit: self.max_object_bytes,
            });
        }
        let path = Self::path(key)?;
        let store_error = |e: object_store::Error| match e {
            object_store::Error::NotFound { .. } => ArtifactError::NotFound { key: key.clone() },
            other => ArtifactError::Store {
                key: key.clone(),
                reason: other.to_string(),
            },
        };
        let found = self.store.get(&path).await.map_err(store_error)?;
        let actual_size = found.meta.size;
        if actual_size > self.max_object_bytes {
            return Err(ArtifactError::TooLarge {
                key: key.clone(),
                bytes: actual_size,
                limit: self.max_object_bytes,
            });
        }
        if actual_size != reference.bytes {
            return Err(ArtifactError::SizeMismatch {
                key: key.clone(),
                expected: reference.bytes,
                actual: actual_size,
            });
        }
        let bytes = found.bytes().await.map_err(store_error)?;
        let actual = sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(&reference.sha256) {
            return Err(ArtifactError::HashMismatch {
                key: key.clone(),
                expected: reference.sha256.clone(),
                actual,
            });
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &std::path::Path, max: u64) -> ArtifactStore {
        ArtifactStore::open(&ObjectStoreSettings {
            root: dir.join("artifacts"),
            max_object_bytes: max,
            ..ObjectStoreSettings::default()
        })
        .expect("open")
    }

    #[tokio::test]
    async fn put_then_get_round_trips_and_checks_size_and_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(dir.path(), 1024);
        let reference = store
            .put("spz", "spz", Bytes::from_static(b"splat bytes"))
            .await
            .expect("put");
        assert!(reference.key.starts_with("spz/"));
        assert_eq!(reference.sha256, sha256_hex(b"splat bytes"));
        assert_eq!(
            &store.get(&reference).await.expect("get")[..],
            b"splat bytes"
        );

        let wrong_hash = ArtifactRef {
            sha256: sha256_hex(b"other"),
            ..reference.clone()
        };
        assert!(matches!(
            store.get(&wrong_hash).await,
            Err(ArtifactError::HashMismatch { .. })
        ));
        let wrong_size = ArtifactRef {
            bytes: 3,
            ..reference.clone()
        };
        assert!(matches!(
            store.get(&wrong_size).await,
            Err(ArtifactError::SizeMismatch { .. })
        ));
        let missing = ArtifactRef {
            key: "spz/00/missing.spz".into(),
            ..reference.clone()
        };
        assert!(matches!(
            store.get(&missing).await,
            Err(ArtifactError::NotFound { .. })
        ));
        let bad_key = ArtifactRef {
            key: "../escape".into(),
            ..reference
        };
        assert!(matches!(
            store.get(&bad_key).await,
            Err(ArtifactError::BadKey { .. })
        ));
        assert!(matches!(
            store.put("ply", "ply", Bytes::from(vec![0u8; 2048])).await,
            Err(ArtifactError::TooLarge { .. })
        ));
    }
}
