//! The validator set: discovery (static list or subtensor) and the filters that decide who
//! may be pulled from: a served axon, minimum stake, optionally a validator permit, the
//! configured blacklist of uids and hotkeys, and the automatic blacklist from Postgres.
//! Every validator left out carries its [`ExclusionReason`].

use std::{collections::HashMap, time::Duration};

use splatfleet_common::{
    config::{Config, DiscoverySource},
    discovery::{
        static_list::StaticListError,
        subtensor::{SubtensorClient, SubtensorError},
        ValidatorInfo,
    },
};

/// Why a validator is not pulled from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExclusionReason {
    NotServing,
    LowStake,
    NoPermit,
    ConfigBlacklist,
    AutoBlacklist,
    /// It answered 401: our signature or nonce was refused.
    Unauthorized,
}

impl ExclusionReason {
    pub const ALL: [ExclusionReason; 6] = [
        Self::NotServing,
        Self::LowStake,
        Self::NoPermit,
        Self::ConfigBlacklist,
        Self::AutoBlacklist,
        Self::Unauthorized,
    ];

    /// The name used in Postgres and as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotServing => "not_serving",
            Self::LowStake => "low_stake",
            Self::NoPermit => "no_permit",
            Self::ConfigBlacklist => "config_blacklist",
            Self::AutoBlacklist => "auto_blacklist",
            Self::Unauthorized => "unauthorized",
        }
    }
}

/// A validator left out, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Exclusion {
    pub validator: ValidatorInfo,
    pub reason: ExclusionReason,
    pub detail: String,
}

/// The outcome of one pass of the filters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValidatorSet {
    pub eligible: Vec<ValidatorInfo>,
    pub excluded: Vec<Exclusion>,
}

/// What the filters need besides the discovered validators.
#[derive(Debug, Clone, Default)]
pub struct SetFilters {
    pub min_stake: f64,
    pub require_permit: bool,
    pub blacklist_uids: Vec<u16>,
    pub blacklist_hotkeys: Vec<String>,
    /// Automatic blacklist (hotkey → why), read from Postgres.
    pub auto_blacklist: HashMap<String, String>,
    /// Validators that answered 401 (hotkey → the answer).
    pub unauthorized: HashMap<String, String>,
}

impl SetFilters {
    pub fn from_config(config: &Config) -> Self {
        Self {
            min_stake: config.discovery.min_stake,
            require_permit: config.puller.require_validator_permit,
            blacklist_uids: config.puller.blacklist_uids.clone(),
            blacklist_hotkeys: config.puller.blacklist_hotkeys.clone(),
            auto_blacklist: HashMap::new(),
            unauthorized: HashMap::new(),
        }
    }

    fn exclusion(&self, v: &ValidatorInfo) -> Option<(ExclusionReason, String)> {
        if self.blacklist_uids.contains(&v.uid) {
            return Some((ExclusionReason::ConfigBlacklist, format!("uid {}", v.uid)));
        }
        if self.blacklist_hotkeys.iter().any(|h| h == &v.hotkey) {
            return Some((ExclusionReason::ConfigBlacklist, "hotkey".into()));
        }
        if let Some(answer) = self.unauthorized.get(&v.hotkey) {
            return Some((ExclusionReason::Unauthorized, answer.clone()));
        }
        if !v.is_serving() {
            return Some((
                ExclusionReason::NotServing,
                format!("axon {}:{}", v.ip, v.port),
            ));
        }
        if v.stake < self.min_stake {
            return Some((
                ExclusionReason::LowStake,
                format!("stake {} < {}", v.stake, self.min_stake),
            ));
        }
        if self.require_permit && !v.validator_permit {
            return Some((ExclusionReason::NoPermit, String::new()));
        }
        if let Some(why) = self.auto_blacklist.get(&v.hotkey) {
            return Some((ExclusionReason::AutoBlacklist, why.clone()));
        }
        None
    }

    /// Splits `discovered` into eligible and excluded validators.
    pub fn apply(&self, discovered: &[ValidatorInfo]) -> ValidatorSet {
        let mut set = ValidatorSet::default();
        for v in discovered {
            match self.exclusion(v) {
                None => set.eligible.push(v.clone()),
                Some((reason, detail)) => set.excluded.push(Exclusion {
                    validator: v.clone(),
                    reason,
                    detail,
                }),
            }
        }
        set
    }
}

/// Why validators could not be discovered.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("static validator list: {0}")]
    Static(#[from] StaticListError),
    #[error("subtensor discovery: {0}")]
    Subtensor(#[from] SubtensorError),
}

/// Reads the validators from the configured source.
pub async fn discover(config: &Config) -> Result<Vec<ValidatorInfo>, DiscoveryError> {
    match config.discovery.source {
        DiscoverySource::Static => Ok(config.discovery.static_validators()?.validators),
        DiscoverySource::Subtensor => {
            let client =
                SubtensorClient::new(&config.discovery.subtensor_url, Duration::from_secs(30))?;
            Ok(client.validators(config.discovery.netuid).await?)
        }
    }
}

/// `"static"` or `"subtensor"`, as the `validators.source` column spells it.
pub fn source_name(config: &Config) -> &'static str {
    match config.discovery.source {
        DiscoverySource::Static => "static",
        DiscoverySource::Subtensor => "subtensor",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator(uid: u16, stake: f64) -> ValidatorInfo {
        ValidatorInfo {
            uid,
            hotkey: format!("hk{uid}"),
            ip: "10.0.0.1".into(),
            port: 8091,
            stake,
            validator_permit: uid != 3,
        }
    }

    #[test]
    fn every_exclusion_has_its_reason() {
        let mut filters = SetFilters {
            min_stake: 1000.0,
            require_permit: true,
            blacklist_uids: vec![1],
            blacklist_hotkeys: vec!["hk2".into()],
            ..SetFilters::default()
        };
        filters
            .auto_blacklist
            .insert("hk5".into(), "acceptance 0.1".into());
        filters.unauthorized.insert("hk6".into(), "401".into());
        let mut not_serving = validator(4, 5000.0);
        not_serving.ip = "0.0.0.0".into();
        let set = filters.apply(&[
            validator(0, 5000.0),
            validator(1, 5000.0),
            validator(2, 5000.0),
            validator(3, 5000.0),
            not_serving,
            validator(5, 5000.0),
            validator(6, 5000.0),
            validator(7, 10.0),
        ]);
        assert_eq!(set.eligible.len(), 1);
        let reasons: Vec<_> = set
            .excluded
            .iter()
            .map(|e| (e.validator.uid, e.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (1, ExclusionReason::ConfigBlacklist),
                (2, ExclusionReason::ConfigBlacklist),
                (3, ExclusionReason::NoPermit),
                (4, ExclusionReason::NotServing),
                (5, ExclusionReason::AutoBlacklist),
                (6, ExclusionReason::Unauthorized),
                (7, ExclusionReason::LowStake),
            ]
        );
    }
}
