//! `[wallet]`: the hotkey that signs, where it lies, and the password of an encrypted one (a
//! secret, inline or in a file).

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalletSettings {
    /// Directory holding `<name>/hotkeys/<hotkey>`, as the Bittensor SDK lays it out.
    pub path: PathBuf,
    pub name: String,
    pub hotkey: String,
    /// Password of an encrypted (`$NACL`) hotkey file; also settable as the
    /// `SPLATFLEET__WALLET__PASSWORD` environment variable. At most one of this and
    /// `password_file`.
    /// Never serialised (see `Config::to_toml_exposing_secrets`).
    #[serde(skip_serializing)]
    pub password: Option<SecretString>,
    /// A file (mode 600) holding the password of an encrypted hotkey file; one trailing
    /// newline is ignored. Read only when the hotkey file is encrypted.
    pub password_file: Option<PathBuf>,
}

impl Default for WalletSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("~/.bittensor/wallets"),
            name: "default".into(),
            hotkey: "default".into(),
            password: None,
            password_file: None,
        }
    }
}

impl WalletSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.password.is_some() && self.password_file.is_some() {
            return Err(ConfigError::Invalid {
                key: "wallet.password_file".into(),
                problem: "set either wallet.password (or SPLATFLEET__WALLET__PASSWORD) or \
                          wallet.password_file, not both"
                    .into(),
            });
        }
        Ok(())
    }
}
