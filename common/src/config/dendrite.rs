//! `[dendrite]`: the HTTP client that calls validators' axons (the IP it announces, the
//! largest answer it reads, its connect timeout).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Settings of the Bittensor dendrite (the HTTP client that calls validators' axons).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DendriteConfig {
    /// The IP announced in `bt_header_dendrite_ip`.
    pub external_ip: String,
    /// Largest validator response accepted, bytes.
    pub max_response_bytes: usize,
    pub connect_timeout_secs: u64,
}

impl Default for DendriteConfig {
    fn default() -> Self {
        let defaults = crate::bittensor::DendriteSettings::default();
        Self {
            external_ip: defaults.external_ip,
            max_response_bytes: defaults.max_response_bytes,
            connect_timeout_secs: defaults.connect_timeout.as_secs(),
        }
    }
}

impl DendriteConfig {
    pub fn settings(&self) -> crate::bittensor::DendriteSettings {
        crate::bittensor::DendriteSettings {
            external_ip: self.external_ip.clone(),
            max_response_bytes: self.max_response_bytes,
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
        }
    }
}

impl DendriteConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| {
            Err(ConfigError::Invalid {
                key: format!("dendrite.{key}"),
                problem,
            })
        };
        if self.external_ip.parse::<std::net::IpAddr>().is_err() {
            return invalid(
                "external_ip",
                format!("`{}` is not an IP address", self.external_ip),
            );
        }
        if self.max_response_bytes == 0 {
            return invalid("max_response_bytes", "must be at least 1".into());
        }
        if self.connect_timeout_secs == 0 {
            return invalid("connect_timeout_secs", "must be at least 1".into());
        }
        Ok(())
    }
}
