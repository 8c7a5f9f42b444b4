//! Finding validators to pull from: a static list from configuration ([`static_list`]) or the
//! chain itself through a subtensor node's JSON-RPC ([`subtensor`]). Both yield
//! [`ValidatorInfo`]s; the puller decides whom to use.

pub mod chain_types;
pub mod static_list;
pub mod subtensor;

use serde::{Deserialize, Serialize};

use crate::bittensor::AxonTarget;

/// A validator as the fleet needs to know it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorInfo {
    pub uid: u16,
    pub hotkey: String,
    pub ip: String,
    pub port: u16,
    /// Stake in TAO (not rao).
    #[serde(default)]
    pub stake: f64,
    /// Whether the chain grants a validator permit (static entries: assumed true).
    #[serde(default = "yes")]
    pub validator_permit: bool,
}

fn yes() -> bool {
    true
}

impl ValidatorInfo {
    /// Whether an axon is served (the SDK's `is_serving`: ip not `0.0.0.0`).
    pub fn is_serving(&self) -> bool {
        !self.ip.is_empty() && self.ip != "0.0.0.0" && self.port != 0
    }

    pub fn axon(&self) -> AxonTarget {
        AxonTarget {
            ip: self.ip.clone(),
            port: self.port,
            hotkey: self.hotkey.clone(),
        }
    }
}

/// The base miner's filter: validators that serve an axon and hold at least `min_stake` TAO.
pub fn pullable(validators: &[ValidatorInfo], min_stake: f64) -> Vec<ValidatorInfo> {
    validators
        .iter()
        .filter(|v| v.is_serving() && v.stake >= min_stake)
        .cloned()
        .collect()
}
