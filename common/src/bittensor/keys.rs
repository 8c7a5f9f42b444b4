//! sr25519 hotkeys: building a keypair the way Substrate and `bittensor-wallet` do (32-byte
//! mini-secret seeds expanded in Ed25519 mode, 64-byte secret keys, BIP-39 phrases), signing
//! with the `substrate` signing context, and verifying signatures from an SS58 address.

use std::fmt;

use schnorrkel::{ExpansionMode, Keypair, MiniSecretKey, PublicKey, SecretKey, Signature};

use super::ss58::{self, Ss58Error, BITTENSOR_SS58_PREFIX};

/// The signing context Substrate (and so the Bittensor SDK) uses for sr25519.
pub const SIGNING_CONTEXT: &[u8] = b"substrate";

/// Length of an sr25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// Why key material could not be turned into a keypair, or a signature checked.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("secret seed must be 32 bytes (a mini-secret) or 64 bytes (a secret key), got {0}")]
    SeedLength(usize),
    #[error("secret key bytes are not a valid sr25519 secret key")]
    InvalidSecretKey,
    #[error("secret phrase is not a valid English BIP-39 mnemonic")]
    InvalidPhrase,
    #[error("signature must be {SIGNATURE_LEN} bytes, got {0}")]
    SignatureLength(usize),
    #[error("signature is not an sr25519 signature")]
    MalformedSignature,
    #[error("signature text is not hex (optionally 0x-prefixed)")]
    SignatureNotHex,
    #[error("public key is not a valid sr25519 point")]
    InvalidPublicKey,
    #[error(transparent)]
    Address(#[from] Ss58Error),
}

/// An sr25519 keypair. `Debug` shows only the SS58 address; the secret never prints.
pub struct Hotkey {
    pair: Keypair,
    ss58: String,
}

impl fmt::Debug for Hotkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hotkey")
            .field("ss58", &self.ss58)
            .finish_non_exhaustive()
    }
}

impl Hotkey {
    fn from_pair(pair: Keypair) -> Self {
        let ss58 = ss58::encode(&pair.public.to_bytes(), BITTENSOR_SS58_PREFIX);
        Self { pair, ss58 }
    }

    /// A keypair from seed bytes as `sr25519::Pair::from_seed_slice` reads them: 32 bytes are a
    /// mini-secret expanded in Ed25519 mode, 64 bytes are a secret key (scalar ‖ nonce).
    pub fn from_seed_bytes(seed: &[u8]) -> Result<Self, KeyError> {
        match seed.len() {
            32 => {
                let mini = MiniSecretKey::from_bytes(seed).map_err(|_| KeyError::SeedLength(32))?;
                Ok(Self::from_pair(
                    mini.expand_to_keypair(ExpansionMode::Ed25519),
                ))
            }
            64 => {
                let secret = SecretKey::from_bytes(seed).map_err(|_| KeyError::InvalidSecretKey)?;
                Ok(Self::from_pair(secret.to_keypair()))
            }
            n => Err(KeyError::SeedLength(n)),
        }
    }

    /// A keypair from an English BIP-39 phrase, as `sr25519::Pair::from_phrase(phrase, None)`:
    /// the mnemonic's entropy through Substrate's PBKDF2 derivation, then Ed25519-mode expansion.
    pub fn from_phrase(phrase: &str) -> Result<Self, KeyError> {
        let mnemonic = bip39::Mnemonic::parse_in(bip39::Language::English, phrase)
            .map_err(|_| KeyError::InvalidPhrase)?;
        let mini = substrate_bip39::mini_secret_from_entropy(&mnemonic.to_entropy(), "")
            .map_err(|_| KeyError::InvalidPhrase)?;
        Ok(Self::from_pair(
            mini.expand_to_keypair(ExpansionMode::Ed25519),
        ))
    }

    /// A fresh random keypair (for simulated validators and tests).
    pub fn generate() -> (Self, [u8; 32]) {
        let seed: [u8; 32] = rand::random();
        let mini = match MiniSecretKey::from_bytes(&seed) {
            Ok(mini) => mini,
            // 32 bytes are always a valid mini-secret.
            Err(_) => unreachable!("32-byte mini secret"),
        };
        (
            Self::from_pair(mini.expand_to_keypair(ExpansionMode::Ed25519)),
            seed,
        )
    }

    /// The SS58 address (prefix 42).
    pub fn ss58(&self) -> &str {
        &self.ss58
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.pair.public.to_bytes()
    }

    /// Signs `message` with the substrate signing context.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.pair.sign_simple(SIGNING_CONTEXT, message).to_bytes()
    }

    /// The signature as the SDK writes it into headers: `0x` followed by lowercase hex.
    pub fn sign_hex(&self, message: &[u8]) -> String {
        format!("0x{}", hex::encode(self.sign(message)))
    }
}

/// A public key that can verify signatures, usually parsed from an SS58 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verifier {
    public: PublicKey,
}

impl Verifier {
    pub fn from_ss58(address: &str) -> Result<Self, KeyError> {
        let bytes = ss58::decode_bittensor(address)?;
        Self::from_public_bytes(&bytes)
    }

    pub fn from_public_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let public = PublicKey::from_bytes(bytes).map_err(|_| KeyError::InvalidPublicKey)?;
        Ok(Self { public })
    }

    /// Verifies a raw 64-byte signature over `message` (substrate context).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<bool, KeyError> {
        if signature.len() != SIGNATURE_LEN {
            return Err(KeyError::SignatureLength(signature.len()));
        }
        let signature =
            Signature::from_bytes(signature).map_err(|_| KeyError::MalformedSignature)?;
        Ok(self
            .public
            .verify_simple(SIGNING_CONTEXT, message, &signature)
            .is_ok())
    }

    /// Verifies a signature written as hex, with or without `0x`, as the SDK's
    /// `Keypair.verify` accepts it in headers.
    pub fn verify_hex(&self, message: &[u8], signature: &str) -> Result<bool, KeyError> {
        let text = signature.strip_prefix("0x").unwrap_or(signature);
        let bytes = hex::decode(text).map_err(|_| KeyError::SignatureNotHex)?;
        self.verify(message, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_of_ones_gives_the_substrate_test_vector() {
        let hotkey = Hotkey::from_seed_bytes(&[0x11; 32]).expect("valid seed");
        assert_eq!(
            hotkey.ss58(),
            "5DtDLm5rQHShDqojQpsvcN8tRXHVFaecfDoRet1SU6BFD9Fi"
        );
    }
}
