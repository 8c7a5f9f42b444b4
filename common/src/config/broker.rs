//! `[broker]`: the RabbitMQ URL (a secret: its credentials never print), the queue prefix,
//! the delivery limit and the connection's timing.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    /// A secret (its credentials): never serialised (see `Config::to_toml_exposing_secrets`).
    #[serde(skip_serializing)]
    pub url: AmqpUrl,
    /// Queue and exchange name prefix, so two fleets can share one broker.
    pub prefix: String,
    /// Deliveries of one message before the quorum queue dead-letters it.
    pub delivery_limit: u32,
    pub heartbeat_secs: u16,
    /// How long a role waits for the broker at start before giving up.
    pub connect_timeout_secs: u64,
    /// Longest pause between reconnect tries after the broker goes away.
    pub reconnect_max_delay_secs: u64,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            url: AmqpUrl::new("amqp://guest:guest@127.0.0.1:5672/%2f"),
            prefix: "splatfleet".into(),
            delivery_limit: 5,
            heartbeat_secs: 30,
            connect_timeout_secs: 30,
            reconnect_max_delay_secs: 10,
        }
    }
}

impl BrokerSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| {
            Err(ConfigError::Invalid {
                key: format!("broker.{key}"),
                problem,
            })
        };
        match url::Url::parse(self.url.expose()) {
            Ok(url) if matches!(url.scheme(), "amqp" | "amqps") => {}
            Ok(url) => {
                return invalid(
                    "url",
                    format!("scheme must be amqp or amqps, not `{}`", url.scheme()),
                )
            }
            Err(err) => return invalid("url", format!("not a URL: {err}")),
        }
        let prefix = &self.prefix;
        if prefix.is_empty()
            || prefix.len() > 100
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return invalid(
                "prefix",
                format!("`{prefix}` must be 1-100 characters of letters, digits, '.', '-' or '_'"),
            );
        }
        if self.delivery_limit == 0 {
            return invalid("delivery_limit", "must be at least 1".into());
        }
        if self.connect_timeout_secs == 0 {
            return invalid("connect_timeout_secs", "must be at least 1".into());
        }
        if self.reconnect_max_delay_secs == 0 {
            return invalid("reconnect_max_delay_secs", "must be at least 1".into());
        }
        Ok(())
    }
}

/// An AMQP URL whose credentials never print: `Display` and `Debug` mask the password.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct AmqpUrl(SecretString);

impl AmqpUrl {
    pub fn new(url: &str) -> Self {
        Self(SecretString::from(url))
    }

    /// The URL with credentials, for the client library only.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with the password replaced by `***`.
    pub fn redacted(&self) -> String {
        match url::Url::parse(self.expose()) {
            Ok(mut url) => {
                if url.password().is_some() {
                    // Setting a password only fails for URLs that cannot carry one.
                    let _ = url.set_password(Some("***"));
                }
                url.to_string()
            }
            Err(_) => "<unparsable AMQP URL>".into(),
        }
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpUrl({})", self.redacted())
    }
}

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}
