//! A fixed validator list read from TOML (`[[validators]]` entries with uid, hotkey, ip, port,
//! stake), as `splatfleet-sim validators` writes it for test fleets and private deployments.
//! The configured list (inline entries plus a file) is assembled by
//! `config::DiscoverySettings::static_validators`: this module does not read the config.

use std::{collections::HashSet, path::Path};

use serde::Deserialize;

use super::ValidatorInfo;
use crate::bittensor::ss58;

/// Why a static list was refused.
#[derive(Debug, thiserror::Error)]
pub enum StaticListError {
    #[error("validator list {path} could not be read: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("validator list is not valid TOML: {0}")]
    Syntax(String),
    #[error("validator entry uid {uid}: hotkey {hotkey:?} is not an SS58 address: {source}")]
    BadHotkey {
        uid: u16,
        hotkey: String,
        source: ss58::Ss58Error,
    },
    #[error("validator entry uid {uid}: ip {ip:?} is not an IP address")]
    BadIp { uid: u16, ip: String },
    #[error("validator uid {0} is listed twice")]
    DuplicateUid(u16),
}

/// The file form: `validators = [...]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticValidatorList {
    #[serde(default)]
    pub validators: Vec<ValidatorInfo>,
}

impl StaticValidatorList {
    /// Parses and checks a TOML document.
    pub fn parse(text: &str) -> Result<Self, StaticListError> {
        let list: Self =
            toml::from_str(text).map_err(|e| StaticListError::Syntax(e.to_string()))?;
        list.validate()?;
        Ok(list)
    }

    pub fn load(path: &Path) -> Result<Self, StaticListError> {
        let text = std::fs::read_to_string(path).map_err(|source| StaticListError::Unreadable {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Every hotkey is a prefix-42 address, every ip parses, uids are unique.
    pub fn validate(&self) -> Result<(), StaticListError> {
        let mut seen = HashSet::new();
        for v in &self.validators {
            ss58::decode_bittensor(&v.hotkey).map_err(|source| StaticListError::BadHotkey {
                uid: v.uid,
                hotkey: v.hotkey.clone(),
                source,
            })?;
            if v.ip.parse::<std::net::IpAddr>().is_err() {
                return Err(StaticListError::BadIp {
                    uid: v.uid,
                    ip: v.ip.clone(),
                });
            }
            if !seen.insert(v.uid) {
                return Err(StaticListError::DuplicateUid(v.uid));
            }
        }
        Ok(())
    }

    /// Writes the list as TOML (what the simulator hands the fleet).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for v in &self.validators {
            out.push_str("[[validators]]\n");
            out.push_str(&format!("uid = {}\n", v.uid));
            out.push_str(&format!("hotkey = \"{}\"\n", v.hotkey));
            out.push_str(&format!("ip = \"{}\"\n", v.ip));
            out.push_str(&format!("port = {}\n", v.port));
            out.push_str(&format!("stake = {:?}\n", v.stake));
            out.push_str(&format!("validator_permit = {}\n\n", v.validator_permit));
        }
        out
    }
}
