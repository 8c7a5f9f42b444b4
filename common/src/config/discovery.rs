//! `[discovery]`: where the validators come from (a static list inline or in a file, or the
//! chain through a subtensor node) and the stake a validator needs. The configured static
//! list is assembled here ([`DiscoverySettings::static_validators`]): the config depends on
//! `discovery`, never the other way round.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::discovery::{
    static_list::{StaticListError, StaticValidatorList},
    ValidatorInfo,
};

/// Where the validators come from.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DiscoverySource {
    /// `validators` below plus those in `validators_file`.
    #[default]
    Static,
    /// The metagraph, read from a subtensor node's JSON-RPC.
    Subtensor,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoverySettings {
    pub source: DiscoverySource,
    /// Static validators written inline as `[[discovery.validators]]`.
    pub validators: Vec<ValidatorInfo>,
    /// A file of `[[validators]]` entries (what `splatfleet-sim validators` writes).
    pub validators_file: Option<PathBuf>,
    /// Subtensor JSON-RPC endpoint: ws://, wss://, http:// or https://.
    pub subtensor_url: String,
    pub netuid: u16,
    /// Validators with less stake (TAO) are not pulled from, as the base miner does.
    pub min_stake: f64,
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        Self {
            source: DiscoverySource::Static,
            validators: Vec::new(),
            validators_file: None,
            subtensor_url: "http://127.0.0.1:9944".into(),
            netuid: 17,
            min_stake: 1000.0,
        }
    }
}

impl DiscoverySettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| {
            Err(ConfigError::Invalid {
                key: format!("discovery.{key}"),
                problem,
            })
        };
        let inline = StaticValidatorList {
            validators: self.validators.clone(),
        };
        if let Err(err) = inline.validate() {
            return invalid("validators", err.to_string());
        }
        if self.min_stake.is_nan() || self.min_stake < 0.0 {
            return invalid("min_stake", "must be a number at least 0".into());
        }
        Ok(())
    }

    /// Refuses a discovery that can never yield a validator: `source = "static"` with no
    /// inline entry and no `validators_file` entry (the default config), or a file that cannot
    /// be read. Only the puller asks: the other roles share the file but never discover, so
    /// this is not part of [`Self::validate`].
    pub fn check_can_yield_validators(&self) -> Result<(), ConfigError> {
        if self.source != DiscoverySource::Static {
            return Ok(());
        }
        let invalid = |key: &str, problem: String| ConfigError::Invalid {
            key: format!("discovery.{key}"),
            problem,
        };
        let list = self
            .static_validators()
            .map_err(|err| invalid("validators_file", err.to_string()))?;
        if list.validators.is_empty() {
            return Err(invalid(
                "source",
                "is \"static\" but neither `discovery.validators` nor the file in \
                 `discovery.validators_file` lists a validator, so there is no one to pull \
                 from: list validators there, or set `discovery.source = \"subtensor\"` \
                 and `discovery.subtensor_url`"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The configured static validators: the inline `[[discovery.validators]]` entries plus
    /// those in `validators_file`, checked together (a uid listed in both is an error).
    pub fn static_validators(&self) -> Result<StaticValidatorList, StaticListError> {
        let mut list = StaticValidatorList {
            validators: self.validators.clone(),
        };
        if let Some(path) = &self.validators_file {
            list.validators
                .extend(StaticValidatorList::load(path)?.validators);
        }
        list.validate()?;
        Ok(list)
    }
}
