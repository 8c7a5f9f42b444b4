//! The one configuration shared by every role: a TOML file (`ops/splatfleet.example.toml`
//! documents every key) overridden by `SPLATFLEET__SECTION__KEY` environment variables.
//!
//! One file per section owns its keys, defaults and checks; [`load`] reads the file, lays the
//! environment over it and runs the checks. Loading is strict: a missing file, bad TOML, an
//! unknown key, a wrong type or a value out of range fails at start with an error naming the
//! key. Secrets (database and wallet passwords, AMQP credentials, the S3 secret key) are
//! wrapped so `Debug` and logs never show them, and `Serialize` leaves them out; only
//! [`Config::to_toml_exposing_secrets`] writes them, for a config file a role will load.

mod broker;
mod database;
mod dendrite;
mod discovery;
pub mod load;
mod log;
mod object_store;
mod puller;
mod shutdown;
mod submitter;
mod wallet;
mod worker;

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

pub use self::{
    broker::{AmqpUrl, BrokerSettings},
    database::DatabaseSettings,
    dendrite::DendriteConfig,
    discovery::{DiscoverySettings, DiscoverySource},
    load::{ConfigError, ENV_PREFIX},
    log::{LogFormat, LogSettings},
    object_store::ObjectStoreSettings,
    puller::PullerSettings,
    shutdown::ShutdownSettings,
    submitter::SubmitterSettings,
    wallet::WalletSettings,
    worker::{GateMode, ScorerSettings, ValidationUnavailable, WorkerSettings, DEFAULT_MODELS_DIR},
};

/// Every role's settings. Sections a role does not use are still validated, so one file
/// serves the whole fleet.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub log: LogSettings,
    pub broker: BrokerSettings,
    pub database: DatabaseSettings,
    pub shutdown: ShutdownSettings,
    pub puller: PullerSettings,
    pub worker: WorkerSettings,
    pub submitter: SubmitterSettings,
    pub object_store: ObjectStoreSettings,
    pub wallet: WalletSettings,
    pub discovery: DiscoverySettings,
    pub dendrite: DendriteConfig,
}

impl Config {
    /// The configuration as TOML that [`Config::from_toml_with_env`] reads back as this value,
    /// secrets written in clear: for a config file a role will load (the test fleets, tools),
    /// never for logs. `Serialize` alone leaves every secret out.
    pub fn to_toml_exposing_secrets(&self) -> Result<String, toml::ser::Error> {
        let mut table = toml::Table::try_from(self)?;
        let exposed =
            |s: &Option<secrecy::SecretString>| s.as_ref().map(|s| s.expose_secret().to_owned());
        let secrets = [
            ("broker", "url", Some(self.broker.url.expose().to_owned())),
            ("database", "password", exposed(&self.database.password)),
            ("wallet", "password", exposed(&self.wallet.password)),
            (
                "object_store",
                "s3_secret_access_key",
                exposed(&self.object_store.s3_secret_access_key),
            ),
        ];
        for (section, key, value) in secrets {
            let (Some(value), Some(toml::Value::Table(section))) = (value, table.get_mut(section))
            else {
                continue;
            };
            section.insert(key.to_owned(), toml::Value::String(value));
        }
        toml::to_string(&table)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::{ExposeSecret, SecretString};

    use super::{AmqpUrl, Config};

    #[test]
    fn serialising_leaves_secrets_out_and_the_exposing_writer_round_trips_them() {
        let mut config = Config::default();
        config.broker.url = AmqpUrl::new("amqp://u:broker-secret@example:5672/%2f");
        config.database.password = Some(SecretString::from("db-secret"));
        config.wallet.password = Some(SecretString::from("wallet-secret"));
        config.object_store.s3_secret_access_key = Some(SecretString::from("s3-secret"));
        let plain = toml::to_string(&config).expect("serialises");
        assert!(!plain.contains("secret"), "{plain}");
        let text = config.to_toml_exposing_secrets().expect("serialises");
        let back = Config::from_toml_with_env(&text, "t.toml".as_ref(), std::iter::empty())
            .expect("reads back");
        assert_eq!(back.broker.url.expose(), config.broker.url.expose());
        let secret = |s: &Option<SecretString>| s.as_ref().map(|s| s.expose_secret().to_owned());
        assert_eq!(
            secret(&back.database.password).as_deref(),
            Some("db-secret")
        );
        assert_eq!(
            secret(&back.wallet.password).as_deref(),
            Some("wallet-secret")
        );
        assert_eq!(
            secret(&back.object_store.s3_secret_access_key).as_deref(),
            Some("s3-secret")
        );
        assert_eq!(
            toml::to_string(&back).expect("serialises"),
            plain,
            "every other key reads back as written"
        );
    }
}
