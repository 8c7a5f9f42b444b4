//! The validator set: discovery (static list or subtensor) and the selection that decides who
//! may be pulled from, as the seeds select: a validator permit (`require_validator_permit`),
//! minimum stake, a served axon that speaks our protocol version (`axon_versions`; only the
//! chain reports it), the configured blacklist of uids and hotkeys (and ours: the
//! automatic blacklist from Postgres, validators that answered 401), then the rest ranked by
//! the product of `rank_by` (stake × trust × consensus) and the best `top_validators` kept.
//! Every validator left out carries its [`ExclusionReason`].

use std::{collections::HashMap, time::Duration};

use splatfleet_common::{
    config::{Config, DiscoverySource},
    discovery::{
        static_list::StaticListError,
        subtensor::{SubtensorClient, SubtensorError},
        AxonVersions, DiscoveredValidator, RankFactor, ValidatorInfo,
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
    /// Its axon announces an SDK version outside `axon_versions`: it does not speak v45.
    ProtocolVersion,
    /// It passed every filter but ranked below `top_validators`.
    BelowTopN,
}

impl ExclusionReason {
    pub const ALL: [ExclusionReason; 8] = [
        Self::NotServing,
        Self::ProtocolVersion,
        Self::LowStake,
        Self::NoPermit,
        Self::ConfigBlacklist,
        Self::AutoBlacklist,
        Self::Unauthorized,
        Self::BelowTopN,
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
            Self::ProtocolVersion => "protocol_version",
            Self::BelowTopN => "below_top_n",
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
#[derive(Debug, Clone)]
pub struct SetFilters {
    pub min_stake: f64,
    pub require_permit: bool,
    pub top_validators: usize,
    pub rank_by: Vec<RankFactor>,
    pub axon_versions: AxonVersions,
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
            top_validators: config.puller.top_validators,
            rank_by: config.puller.rank_by.clone(),
            axon_versions: config.puller.axon_versions.clone(),
            blacklist_uids: config.puller.blacklist_uids.clone(),
            blacklist_hotkeys: config.puller.blacklist_hotkeys.clone(),
            auto_blacklist: HashMap::new(),
            unauthorized: HashMap::new(),
        }
    }

    fn exclusion(&self, discovered: &DiscoveredValidator) -> Option<(ExclusionReason, String)> {
        let v = &discovered.info;
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
        if let Some(chain) = discovered
            .chain
            .filter(|chain| !self.axon_versions.accepts(chain))
        {
            return Some((
                ExclusionReason::ProtocolVersion,
                format!(
                    "axon announces SDK {} ({}); axon_versions accepts {}",
                    chain.axon_sdk_version(),
                    chain.axon_version,
                    self.axon_versions
                ),
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

    /// The product of the `rank_by` factors.
    fn rank_score(&self, v: &DiscoveredValidator) -> f64 {
        self.rank_by.iter().map(|f| v.rank_factor(*f)).product()
    }

    /// Splits `discovered` into eligible and excluded validators, both in discovery order:
    /// the filters first, then the survivors ranked and all but the best `top_validators`
    /// left out.
    pub fn apply(&self, discovered: &[DiscoveredValidator]) -> ValidatorSet {
        let mut verdicts: Vec<Option<(ExclusionReason, String)>> =
            discovered.iter().map(|v| self.exclusion(v)).collect();
        let mut ranked: Vec<(usize, f64)> = verdicts
            .iter()
            .enumerate()
            .filter(|(_, verdict)| verdict.is_none())
            .map(|(index, _)| (index, self.rank_score(&discovered[index])))
            .collect();
        // Best first; equal products (all 0 when no validator has consensus) go by stake, then
        // the lower uid, so the cut is the same on every refresh.
        ranked.sort_by(|(a, a_score), (b, b_score)| {
            let (a, b) = (&discovered[*a].info, &discovered[*b].info);
            b_score
                .total_cmp(a_score)
                .then(b.stake.total_cmp(&a.stake))
                .then(a.uid.cmp(&b.uid))
        });
        let ranked_by = self
            .rank_by
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(" x ");
        let candidates = ranked.len();
        for (rank, (index, score)) in ranked.iter().enumerate().skip(self.top_validators) {
            verdicts[*index] = Some((
                ExclusionReason::BelowTopN,
                format!(
                    "rank {} of {candidates} by {ranked_by} = {score:.4}; top_validators = {}",
                    rank + 1,
                    self.top_validators
                ),
            ));
        }
        let mut set = ValidatorSet::default();
        for (v, verdict) in discovered.iter().zip(verdicts) {
            match verdict {
                None => set.eligible.push(v.info.clone()),
                Some((reason, detail)) => set.excluded.push(Exclusion {
                    validator: v.info.clone(),
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
    /// An empty answer is taken as a failure: replacing the set with nobody would stop every
    /// pull, where the last good set keeps the fleet working until the source recovers.
    #[error("{0} discovery found no validator")]
    NoneFound(&'static str),
}

/// Reads the validators from the configured source; finding none is an error.
pub async fn discover(config: &Config) -> Result<Vec<DiscoveredValidator>, DiscoveryError> {
    let found = read_source(config).await?;
    if found.is_empty() {
        return Err(DiscoveryError::NoneFound(source_name(config)));
    }
    Ok(found)
}

async fn read_source(config: &Config) -> Result<Vec<DiscoveredValidator>, DiscoveryError> {
    match config.discovery.source {
        DiscoverySource::Static => Ok(config
            .discovery
            .static_validators()?
            .validators
            .into_iter()
            .map(DiscoveredValidator::listed)
            .collect()),
        DiscoverySource::Subtensor => {
            let client =
                SubtensorClient::connect(&config.discovery.subtensor_url, Duration::from_secs(30))
                    .await?;
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
    use splatfleet_common::discovery::ChainStanding;

    use super::*;

    fn filters() -> SetFilters {
        SetFilters::from_config(&Config::default())
    }

    fn validator(uid: u16, stake: f64) -> DiscoveredValidator {
        DiscoveredValidator::listed(ValidatorInfo {
            uid,
            hotkey: format!("hk{uid}"),
            ip: "10.0.0.1".into(),
            port: 8091,
            stake,
            validator_permit: uid != 3,
        })
    }

    /// What a v45 validator's neuron says: SDK 9.9.0, full trust and consensus.
    fn standing() -> ChainStanding {
        ChainStanding {
            trust: 1.0,
            consensus: 1.0,
            validator_trust: 0.0,
            axon_version: 9_009_000,
        }
    }

    fn on_chain(uid: u16, stake: f64, trust: f64, consensus: f64) -> DiscoveredValidator {
        DiscoveredValidator {
            chain: Some(ChainStanding {
                trust,
                consensus,
                ..standing()
            }),
            ..validator(uid, stake)
        }
    }

    fn with_axon_version(uid: u16, axon_version: u32) -> DiscoveredValidator {
        DiscoveredValidator {
            chain: Some(ChainStanding {
                axon_version,
                ..standing()
            }),
            ..validator(uid, 5000.0)
        }
    }

    fn uids(validators: &[ValidatorInfo]) -> Vec<u16> {
        validators.iter().map(|v| v.uid).collect()
    }

    #[test]
    fn every_exclusion_has_its_reason() {
        let mut filters = SetFilters {
            min_stake: 1000.0,
            require_permit: true,
            blacklist_uids: vec![1],
            blacklist_hotkeys: vec!["hk2".into()],
            top_validators: 1,
            ..filters()
        };
        filters
            .auto_blacklist
            .insert("hk5".into(), "acceptance 0.1".into());
        filters.unauthorized.insert("hk6".into(), "401".into());
        let mut not_serving = validator(4, 5000.0);
        not_serving.info.ip = "0.0.0.0".into();
        let set = filters.apply(&[
            validator(0, 5000.0),
            validator(1, 5000.0),
            validator(2, 5000.0),
            validator(3, 5000.0),
            not_serving,
            validator(5, 5000.0),
            validator(6, 5000.0),
            validator(7, 10.0),
            validator(8, 4000.0),
            DiscoveredValidator {
                chain: Some(ChainStanding {
                    axon_version: 8_005_000,
                    ..standing()
                }),
                ..validator(9, 5000.0)
            },
        ]);
        assert_eq!(uids(&set.eligible), vec![0]);
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
                (8, ExclusionReason::BelowTopN),
                (9, ExclusionReason::ProtocolVersion),
            ]
        );
        let below = &set.excluded[7];
        assert_eq!(
            below.detail,
            "rank 2 of 2 by stake x trust x consensus = 4000.0000; top_validators = 1"
        );
        let listed: Vec<_> = ExclusionReason::ALL.iter().map(|r| r.as_str()).collect();
        let migration = include_str!("../../sql/migrations/0009_selection_reasons.sql");
        for reason in listed {
            assert!(
                migration.contains(&format!("'{reason}'")),
                "the database refuses exclusion reason {reason}"
            );
        }
    }

    #[test]
    fn the_top_n_by_stake_times_trust_times_consensus_are_kept() {
        let filters = SetFilters {
            top_validators: 3,
            ..filters()
        };
        let set = filters.apply(&[
            on_chain(0, 10_000.0, 0.1, 0.1), // 100
            on_chain(1, 2_000.0, 1.0, 1.0),  // 2000
            on_chain(2, 50_000.0, 0.0, 1.0), // 0: all the stake, no trust
            on_chain(3, 4_000.0, 0.5, 0.5),  // 1000, and no permit
            on_chain(4, 3_000.0, 0.5, 1.0),  // 1500
            on_chain(5, 1_500.0, 1.0, 0.5),  // 750
            on_chain(6, 900.0, 1.0, 1.0),    // under min_stake
        ]);
        assert_eq!(uids(&set.eligible), vec![1, 4, 5]);
        let reasons: Vec<_> = set
            .excluded
            .iter()
            .map(|e| (e.validator.uid, e.reason, e.detail.as_str()))
            .collect();
        let by = "by stake x trust x consensus";
        assert_eq!(
            reasons,
            vec![
                (
                    0,
                    ExclusionReason::BelowTopN,
                    &*format!("rank 4 of 5 {by} = 100.0000; top_validators = 3")
                ),
                (
                    2,
                    ExclusionReason::BelowTopN,
                    &*format!("rank 5 of 5 {by} = 0.0000; top_validators = 3")
                ),
                (3, ExclusionReason::NoPermit, ""),
                (6, ExclusionReason::LowStake, "stake 900 < 1000"),
            ]
        );
    }

    #[test]
    fn equal_scores_rank_by_stake_then_uid_and_rank_by_is_configurable() {
        // No validator has consensus: every product is 0, so stake decides, then the uid.
        let zero = [
            on_chain(7, 3_000.0, 0.0, 0.0),
            on_chain(2, 3_000.0, 0.0, 0.0),
            on_chain(4, 9_000.0, 0.0, 0.0),
            on_chain(1, 2_000.0, 0.0, 0.0),
        ];
        let two = SetFilters {
            top_validators: 2,
            ..filters()
        };
        assert_eq!(uids(&two.apply(&zero).eligible), vec![2, 4]);
        // Static entries have no trust or consensus: they rank by stake.
        let listed = [
            validator(0, 1_000.0),
            validator(1, 8_000.0),
            validator(2, 5_000.0),
        ];
        assert_eq!(uids(&two.apply(&listed).eligible), vec![1, 2]);
        // Ranked by validator trust alone, the order follows it, not stake.
        let by_vtrust = SetFilters {
            top_validators: 1,
            rank_by: vec![RankFactor::ValidatorTrust],
            ..filters()
        };
        let mut trusted = on_chain(5, 1_000.0, 0.0, 0.0);
        if let Some(chain) = trusted.chain.as_mut() {
            chain.validator_trust = 0.9;
        }
        let set = by_vtrust.apply(&[on_chain(4, 9_000.0, 1.0, 1.0), trusted]);
        assert_eq!(uids(&set.eligible), vec![5]);
        // Fewer survivors than top_validators: all kept.
        let fifty = filters();
        assert_eq!(fifty.top_validators, 50);
        assert_eq!(fifty.apply(&zero).eligible.len(), 4);
    }

    #[test]
    fn validators_whose_axon_does_not_speak_v45_are_excluded_with_the_version() {
        let announced = [
            with_axon_version(0, 9_009_000),  // 9.9.0: what v45 pins
            with_axon_version(1, 9_012_002),  // 9.12.2
            with_axon_version(2, 9_000_000),  // 9.0.0: v36 to v43
            with_axon_version(4, 10_000_001), // 10.0.1: after the competition switch
            with_axon_version(5, 8_005_000),  // 8.5.0
        ];
        let set = filters().apply(&announced);
        assert_eq!(uids(&set.eligible), vec![0, 1]);
        let excluded: Vec<_> = set
            .excluded
            .iter()
            .map(|e| (e.validator.uid, e.reason, e.detail.as_str()))
            .collect();
        let accepts = "axon_versions accepts >=9.9.0, <10.0.0";
        assert_eq!(
            excluded,
            vec![
                (
                    2,
                    ExclusionReason::ProtocolVersion,
                    &*format!("axon announces SDK 9.0.0 (9000000); {accepts}")
                ),
                (
                    4,
                    ExclusionReason::ProtocolVersion,
                    &*format!("axon announces SDK 10.0.1 (10000001); {accepts}")
                ),
                (
                    5,
                    ExclusionReason::ProtocolVersion,
                    &*format!("axon announces SDK 8.5.0 (8005000); {accepts}")
                ),
            ]
        );
        // The accepted range is the operator's: `*` accepts every version.
        let any = SetFilters {
            axon_versions: "*".parse().expect("a version range"),
            ..filters()
        };
        assert_eq!(any.apply(&announced).eligible.len(), 5);
        // A static entry reports no version and is not judged by one.
        assert_eq!(filters().apply(&[validator(6, 5000.0)]).eligible.len(), 1);
    }

    #[tokio::test]
    async fn finding_no_validator_is_an_error_so_the_last_good_set_stays() {
        // The control loop keeps its last good set on any discovery error; an empty answer
        // must be one, or a source that suddenly lists nobody would stop every pull.
        let err = discover(&Config::default())
            .await
            .expect_err("the default static list is empty");
        assert!(matches!(err, DiscoveryError::NoneFound("static")), "{err}");
    }
}
