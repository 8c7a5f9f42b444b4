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

/// The axon SDK versions the puller pulls from (`puller.axon_versions`), a semver range such
/// as `">=9.9.0, <10.0.0"`. Written as text in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxonVersions(pub semver::VersionReq);

impl AxonVersions {
    /// SN17's validator v45 (`neurons/validator/version.py` at three-gen-subnet 5fc61f1) pins
    /// the Bittensor SDK 9.9.0 (`neurons/requirements.txt`), as v44 did; v36 to v43 pinned
    /// 9.0.0 and older ones 8.x. SDK 10.0.0 came out on 2025-12-09, the day before mainnet
    /// SN17 moved to its competition model, which has no pull/submit. So SDK 9.9 up to (not
    /// including) 10 is what a validator speaking v45 announces. The chain cannot tell v44
    /// from v45 (the subnet's own `GetVersion` synapse can, but validators answer it only for
    /// other validators).
    pub const SPEAKS_V45: &'static str = ">=9.9.0, <10.0.0";

    /// Whether `standing`'s axon announced an accepted version.
    pub fn accepts(&self, standing: &ChainStanding) -> bool {
        self.0.matches(&standing.axon_sdk_version())
    }
}

impl Default for AxonVersions {
    fn default() -> Self {
        Self(semver::VersionReq::parse(Self::SPEAKS_V45).unwrap_or(semver::VersionReq::STAR))
    }
}

impl std::fmt::Display for AxonVersions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for AxonVersions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl std::str::FromStr for AxonVersions {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        semver::VersionReq::parse(text).map(Self).map_err(|err| {
            format!(
                "{text:?} is not a version range such as \"{}\": {err}",
                Self::SPEAKS_V45
            )
        })
    }
}

impl<'de> Deserialize<'de> for AxonVersions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
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
