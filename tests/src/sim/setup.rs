//! Preparing a simulated network on disk: one wallet per validator (reused when present), a
//! miner wallet for the fleet, and `validators.toml`, the static validator list the fleet reads.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use splatfleet_common::{
    bittensor::{
        wallet::{load_hotkey_file, write_seed_keyfile},
        AxonTarget, Dendrite, DendriteSettings, Hotkey,
    },
    discovery::{static_list::StaticValidatorList, ValidatorInfo},
};
use tokio::net::TcpListener;

use super::{
    axon::{spawn_validator, SimValidator},
    events::EventLog,
    pacer::TaskPacer,
    rules::{RuleSettings, ValidatorRules},
    scorer::ScoreSettings,
    tasks::TaskFactory,
};

/// Everything `splatfleet-sim validators` takes.
#[derive(Debug, Clone)]
pub struct NetworkSettings {
    pub count: u16,
    /// First port; validator `i` listens on `base_port + i`. 0 picks free ports.
    pub base_port: u16,
    pub keys_dir: PathBuf,
    pub rules: RuleSettings,
    pub scoring: ScoreSettings,
    pub image_fraction: f64,
    pub seed: u64,
    /// Stake written into the validator list, TAO.
    pub stake: f64,
}

/// A running simulated network.
#[derive(Debug)]
pub struct Network {
    pub validators: Vec<Arc<SimValidator>>,
    pub list: StaticValidatorList,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    pub events: EventLog,
}

impl Drop for Network {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// `<keys_dir>/<wallet>/hotkeys/default`.
pub fn hotkey_file(keys_dir: &Path, wallet: &str) -> PathBuf {
    keys_dir.join(wallet).join("hotkeys").join("default")
}

/// Loads the wallet's hotkey if its file exists, otherwise creates one with a random seed.
pub fn load_or_create(keys_dir: &Path, wallet: &str) -> Result<Hotkey, String> {
    let path = hotkey_file(keys_dir, wallet);
    if path.exists() {
        return load_hotkey_file(&path).map_err(|e| e.to_string());
    }
    let (_, seed) = Hotkey::generate();
    write_seed_keyfile(&path, &seed).map_err(|e| format!("{}: {e}", path.display()))
}

/// Binds, writes wallets and the validator list, and starts serving.
pub async fn start(settings: &NetworkSettings, events: EventLog) -> Result<Network, String> {
    start_with(settings, events, None).await
}

/// [`start`], with the whole network's PullTask answers limited to `task_rate` per second
/// (see [`TaskPacer`]; `None`: unlimited).
pub async fn start_with(
    settings: &NetworkSettings,
    events: EventLog,
    task_rate: Option<f64>,
) -> Result<Network, String> {
    let pacer = task_rate.map(|rate| Arc::new(TaskPacer::new(rate)));
    std::fs::create_dir_all(&settings.keys_dir)
        .map_err(|e| format!("{}: {e}", settings.keys_dir.display()))?;
    load_or_create(&settings.keys_dir, "miner")?;
    let mut validators = Vec::new();
    let mut list = StaticValidatorList::default();
    let mut tasks = Vec::new();
    for i in 0..settings.count {
        let port = if settings.base_port == 0 {
            0
        } else {
            settings
                .base_port
                .checked_add(i)
                .ok_or("port range overflows 65535")?
        };
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| format!("bind 127.0.0.1:{port}: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let hotkey = load_or_create(&settings.keys_dir, &format!("validator-{i}"))?;
        let rules = ValidatorRules::new(
            i,
            hotkey.ss58().to_owned(),
            settings.rules.clone(),
            settings.scoring.clone(),
            TaskFactory::new(
                settings.seed.wrapping_add(u64::from(i)),
                settings.image_fraction,
            ),
            events.clone(),
        );
        list.validators.push(ValidatorInfo {
            uid: i,
            hotkey: hotkey.ss58().to_owned(),
            ip: "127.0.0.1".into(),
            port,
            stake: settings.stake,
            validator_permit: true,
        });
        let validator =
            Arc::new(SimValidator::new(i, hotkey, rules, events.clone()).with_pacer(pacer.clone()));
        tasks.push(spawn_validator(listener, validator.clone()));
        validators.push(validator);
    }
    let list_path = settings.keys_dir.join("validators.toml");
    let text = format!(
        "# Simulated validators written by splatfleet-sim. The fleet's miner wallet:\n\
         # [wallet] path = {:?}, name = \"miner\", hotkey = \"default\"\n\n{}",
        settings.keys_dir.display().to_string(),
        list.to_toml()
    );
    std::fs::write(&list_path, text).map_err(|e| format!("{}: {e}", list_path.display()))?;
    Ok(Network {
        validators,
        list,
        tasks,
        events,
    })
}

/// A started network with a miner wallet and a dendrite aimed at validator 0: where tests that
/// talk to one simulated validator through the real transport begin. Its keys directory
/// (`settings.keys_dir`) is removed on drop.
#[derive(Debug)]
pub struct MinerFixture {
    pub network: Network,
    pub dendrite: Dendrite,
    pub target: AxonTarget,
    pub keys_dir: PathBuf,
}

impl MinerFixture {
    /// Starts the network of `settings` and the miner's dendrite (panics on failure: tests).
    pub async fn start(settings: &NetworkSettings) -> Self {
        let network = start(settings, EventLog::in_memory())
            .await
            .expect("sim starts");
        let miner = load_or_create(&settings.keys_dir, "miner").expect("miner wallet");
        let dendrite = Dendrite::new(Arc::new(miner), DendriteSettings::default());
        let target = network.list.validators[0].axon();
        Self {
            network,
            dendrite,
            target,
            keys_dir: settings.keys_dir.clone(),
        }
    }
}

impl Drop for MinerFixture {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.keys_dir).ok();
    }
}
