//! `[object_store]`: where artifacts live, a local directory or an S3 bucket (its secret key
//! is a secret).

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Where artifacts (PLY, SPZ, previews) live (`[object_store]`): a local directory by
/// default, or an S3 bucket when `s3_bucket` is set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectStoreSettings {
    /// Local directory of the filesystem store (created if missing); every worker and
    /// submitter of a host must see the same one.
    pub root: PathBuf,
    /// Largest object stored or loaded, bytes.
    pub max_object_bytes: u64,
    /// S3 bucket; when set the store is S3 and `root` is ignored (needs the `s3` feature).
    pub s3_bucket: Option<String>,
    pub s3_region: Option<String>,
    /// Endpoint of an S3-compatible service (MinIO, Ceph); unset means AWS.
    pub s3_endpoint: Option<String>,
    pub s3_access_key_id: Option<String>,
    /// A secret; unset means the usual AWS environment and instance credentials.
    /// Never serialised (see `Config::to_toml_exposing_secrets`).
    #[serde(skip_serializing)]
    pub s3_secret_access_key: Option<SecretString>,
    /// Allow `http://` endpoints (local S3-compatible services).
    pub s3_allow_http: bool,
}

impl Default for ObjectStoreSettings {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/var/lib/splatfleet/artifacts"),
            max_object_bytes: 256 * 1024 * 1024,
            s3_bucket: None,
            s3_region: None,
            s3_endpoint: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_allow_http: false,
        }
    }
}

impl ObjectStoreSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| {
            Err(ConfigError::Invalid {
                key: format!("object_store.{key}"),
                problem,
            })
        };
        if self.root.as_os_str().is_empty() {
            return invalid("root", "must not be empty".into());
        }
        if self.max_object_bytes == 0 {
            return invalid("max_object_bytes", "must be at least 1".into());
        }
        if let Some(bucket) = &self.s3_bucket {
            let valid = (3..=63).contains(&bucket.len())
                && bucket.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-')
                });
            if !valid {
                return invalid(
                    "s3_bucket",
                    format!("`{bucket}` is not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')"),
                );
            }
        }
        if let Some(endpoint) = &self.s3_endpoint {
            match url::Url::parse(endpoint) {
                Ok(url) if url.scheme() == "https" => {}
                Ok(url) if url.scheme() == "http" && self.s3_allow_http => {}
                Ok(url) if url.scheme() == "http" => {
                    return invalid(
                        "s3_endpoint",
                        "is http: set object_store.s3_allow_http = true to allow it".into(),
                    )
                }
                Ok(url) => {
                    return invalid(
                        "s3_endpoint",
                        format!("scheme must be http or https, not `{}`", url.scheme()),
                    )
                }
                Err(err) => return invalid("s3_endpoint", format!("not a URL: {err}")),
            }
        }
        Ok(())
    }
}
