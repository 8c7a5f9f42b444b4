//! `[database]`: where PostgreSQL is (the password is a secret) and the pool's size and
//! timeouts.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// A secret: never serialised (see `Config::to_toml_exposing_secrets`).
    #[serde(skip_serializing)]
    pub password: Option<SecretString>,
    pub dbname: String,
    pub pool_max_size: usize,
    /// Longest wait for a free pooled connection.
    pub wait_timeout_ms: u64,
    /// Longest wait to open a new connection (also the TCP connect timeout).
    pub create_timeout_ms: u64,
    /// Longest wait to check a returned connection before reuse.
    pub recycle_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 5432,
            user: "postgres".into(),
            password: None,
            dbname: "splatfleet".into(),
            pool_max_size: 8,
            wait_timeout_ms: 5_000,
            create_timeout_ms: 5_000,
            recycle_timeout_ms: 2_000,
        }
    }
}

impl DatabaseSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: &str| {
            Err(ConfigError::Invalid {
                key: format!("database.{key}"),
                problem: problem.into(),
            })
        };
        if self.pool_max_size == 0 {
            return invalid("pool_max_size", "must be at least 1");
        }
        for (key, value) in [
            ("wait_timeout_ms", self.wait_timeout_ms),
            ("create_timeout_ms", self.create_timeout_ms),
            ("recycle_timeout_ms", self.recycle_timeout_ms),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if self.host.is_empty() {
            return invalid("host", "must not be empty");
        }
        if self.dbname.is_empty() {
            return invalid("dbname", "must not be empty");
        }
        Ok(())
    }
}
