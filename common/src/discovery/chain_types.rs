//! SCALE layouts of the subtensor runtime-API results the fleet reads, field for field from
//! subtensor's `pallets/subtensor/src/rpc_info/neuron_info.rs` (`NeuronInfoLite`),
//! `show_subnet.rs` (`SubnetState`) and `lib.rs` (`AxonInfo`, `PrometheusInfo`).
//! `NetUid` is a `u16`, `AlphaBalance` and `TaoBalance` are `u64` (rao) on the wire.

use parity_scale_codec::{Compact, Decode, Encode};

/// A 32-byte account id (public key).
pub type AccountId = [u8; 32];

#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct AxonInfo {
    pub block: u64,
    pub version: u32,
    /// IPv4 in the low 32 bits, or IPv6.
    pub ip: u128,
    pub port: u16,
    /// 4 or 6.
    pub ip_type: u8,
    pub protocol: u8,
    pub placeholder1: u8,
    pub placeholder2: u8,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode)]
pub struct PrometheusInfo {
    pub block: u64,
    pub version: u32,
    pub ip: u128,
    pub port: u16,
    pub ip_type: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct NeuronInfoLite {
    pub hotkey: AccountId,
    pub coldkey: AccountId,
    pub uid: Compact<u16>,
    pub netuid: Compact<u16>,
    pub active: bool,
    pub axon_info: AxonInfo,
    pub prometheus_info: PrometheusInfo,
    /// (coldkey, stake in rao) pairs.
    pub stake: Vec<(AccountId, Compact<u64>)>,
    pub rank: Compact<u16>,
    pub emission: Compact<u64>,
    pub incentive: Compact<u16>,
    pub consensus: Compact<u16>,
    pub trust: Compact<u16>,
    pub validator_trust: Compact<u16>,
    pub dividends: Compact<u16>,
    pub last_update: Compact<u64>,
    pub validator_permit: bool,
    pub pruning_score: Compact<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SubnetState {
    pub netuid: Compact<u16>,
    pub hotkeys: Vec<AccountId>,
    pub coldkeys: Vec<AccountId>,
    pub active: Vec<bool>,
    pub validator_permit: Vec<bool>,
    pub pruning_score: Vec<Compact<u16>>,
    pub last_update: Vec<Compact<u64>>,
    pub emission: Vec<Compact<u64>>,
    pub dividends: Vec<Compact<u16>>,
    pub incentives: Vec<Compact<u16>>,
    pub consensus: Vec<Compact<u16>>,
    pub trust: Vec<Compact<u16>>,
    pub rank: Vec<Compact<u16>>,
    pub block_at_registration: Vec<Compact<u64>>,
    pub alpha_stake: Vec<Compact<u64>>,
    pub tao_stake: Vec<Compact<u64>>,
    /// Per-uid total stake in rao (the SDK metagraph's `S`).
    pub total_stake: Vec<Compact<u64>>,
    pub emission_history: Vec<Vec<Compact<u64>>>,
}

impl AxonInfo {
    /// The axon's address as text, `0.0.0.0` when none is served.
    pub fn ip_string(&self) -> String {
        if self.ip_type == 6 {
            std::net::Ipv6Addr::from(self.ip).to_string()
        } else {
            // IPv4 lives in the low 32 bits; higher bits would be a malformed entry.
            let v4 = u32::try_from(self.ip).unwrap_or(0);
            std::net::Ipv4Addr::from(v4).to_string()
        }
    }
}
