//! Bittensor transport without Python: SS58 addresses, sr25519 hotkeys, wallet keyfiles, the
//! synapse wire format (headers, body hash, signed message), nonces, and the dendrite client
//! that calls validator axons over HTTP as SDK 9.9.0 does.

pub mod dendrite;
pub mod keyfile_crypto;
pub mod keys;
pub mod nonce;
pub mod ss58;
pub mod synapse;
pub mod wallet;

pub use dendrite::{AxonTarget, Dendrite, DendriteError, DendriteSettings};
pub use keys::{Hotkey, KeyError, Verifier};
pub use synapse::{Synapse, SynapseBody, TerminalInfo};
pub use wallet::{load_hotkey, WalletError};
