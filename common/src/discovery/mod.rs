//! Finding validators to pull from: a static list from configuration ([`static_list`]) or the
//! chain itself through a subtensor node's JSON-RPC ([`subtensor`]). Both yield
//! [`DiscoveredValidator`]s: where to reach a validator ([`ValidatorInfo`]) and, from the
//! chain, the figures selection ranks by and the version its axon announced
//! ([`ChainStanding`]). The puller decides whom to use.

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

/// What the chain says of a validator besides where to reach it and its stake.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChainStanding {
    /// Yuma trust, 0 to 1 (the SDK metagraph's `T`).
    pub trust: f64,
    /// Yuma consensus, 0 to 1 (`C`).
    pub consensus: f64,
    /// Validator trust, 0 to 1 (`Tv`).
    pub validator_trust: f64,
    /// The `version` its axon announced when it was served (see
    /// [`ChainStanding::axon_sdk_version`]).
    pub axon_version: u32,
}

impl ChainStanding {
    /// The SDK version the axon's `version` spells. The Bittensor SDK serves every axon with
    /// its own `settings.version_as_int` (`core/extrinsics/serving.py`), not the subnet's
    /// protocol version: `major·1000² + minor·1000 + patch` (`core/settings.py`, base 1000
    /// since SDK 8, September 2024), so SDK 9.9.0 announces 9 009 000.
    pub fn axon_sdk_version(&self) -> semver::Version {
        semver::Version::new(
            u64::from(self.axon_version / 1_000_000),
            u64::from(self.axon_version / 1_000 % 1_000),
            u64::from(self.axon_version % 1_000),
        )
    }
}

/// A validator as discovery found it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveredValidator {
    pub info: ValidatorInfo,
    /// `None` for static entries: the operator listed them, the chain says nothing of them.
    pub chain: Option<ChainStanding>,
}

impl DiscoveredValidator {
    /// A static entry.
    pub fn listed(info: ValidatorInfo) -> Self {
        Self { info, chain: None }
    }

    /// One ranking factor's value. Static entries have no trust or consensus to rank by, so
    /// those factors are 1 for them and they rank by stake.
    pub fn rank_factor(&self, factor: RankFactor) -> f64 {
        match (factor, &self.chain) {
            (RankFactor::Stake, _) => self.info.stake,
            (_, None) => 1.0,
            (RankFactor::Trust, Some(chain)) => chain.trust,
            (RankFactor::Consensus, Some(chain)) => chain.consensus,
            (RankFactor::ValidatorTrust, Some(chain)) => chain.validator_trust,
        }
    }
}

/// A figure validators are ranked by: selection keeps those with the largest product of the
/// configured factors (`puller.rank_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankFactor {
    Stake,
    Trust,
    Consensus,
    ValidatorTrust,
}

impl RankFactor {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stake => "stake",
            Self::Trust => "trust",
            Self::Consensus => "consensus",
            Self::ValidatorTrust => "validator_trust",
        }
    }
}
