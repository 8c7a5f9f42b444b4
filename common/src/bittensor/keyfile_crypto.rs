//! Decrypting `$NACL` keyfiles, the encryption `bittensor-wallet` (btwallet `src/keyfile.rs`)
//! applies when a hotkey is created with a password.
//!
//! Layout: `b"$NACL"`, a 24-byte nonce, then a NaCl `crypto_secretbox` box (XSalsa20-Poly1305,
//! 16-byte Poly1305 tag first, then the ciphertext). The plaintext is the JSON keyfile. The box
//! key is libsodium `crypto_pwhash_argon2i` (Argon2i v1.3, `OPSLIMIT_SENSITIVE` = 8 passes,
//! `MEMLIMIT_SENSITIVE` = 512 MiB, one lane, 32-byte output) of the password's UTF-8 bytes with
//! btwallet's fixed 16-byte salt.
//!
//! Deriving the key takes 512 MiB of memory and a few seconds; it happens once, at start.
//! The derived key and the plaintext are wiped when dropped; neither appears in any error.

use argon2::{Algorithm, Argon2, Params, Version};
use crypto_secretbox::{
    aead::{Aead as _, KeyInit as _},
    Key, Nonce, XSalsa20Poly1305,
};
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

/// What every encrypted keyfile starts with.
pub const NACL_PREFIX: &[u8] = b"$NACL";
/// btwallet's `NACL_SALT` (also the salt of the Python SDK before it).
const NACL_SALT: [u8; 16] = *b"\x13q\x83\xdf\xf1Z\t\xbc\x9c\x90\xb5Q\x879\xe9\xb1";
/// libsodium `crypto_pwhash_argon2i_OPSLIMIT_SENSITIVE`.
const ARGON2I_PASSES: u32 = 8;
/// libsodium `crypto_pwhash_argon2i_MEMLIMIT_SENSITIVE` (536,870,912 bytes), in KiB.
const ARGON2I_MEMORY_KIB: u32 = 512 * 1024;
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
const KEY_BYTES: usize = 32;

/// Why a `$NACL` keyfile did not decrypt. Carries no key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NaclError {
    #[error("does not start with $NACL")]
    NotNacl,
    #[error(
        "is {len} bytes, too short for $NACL, a {NONCE_BYTES}-byte nonce and a \
         {TAG_BYTES}-byte tag; the file is truncated or corrupt"
    )]
    Truncated { len: usize },
    /// The Poly1305 tag did not verify: the password is wrong (or the box was altered).
    #[error("authentication failed")]
    WrongPassword,
    #[error("argon2i key derivation failed: {0}")]
    Kdf(String),
}

/// True when `bytes` is an encrypted (`$NACL`) keyfile.
pub fn is_nacl(bytes: &[u8]) -> bool {
    bytes.starts_with(NACL_PREFIX)
}

/// Decrypts a whole `$NACL` keyfile with `password`, returning the keyfile JSON.
pub fn decrypt_nacl(
    bytes: &[u8],
    password: &SecretString,
) -> Result<Zeroizing<Vec<u8>>, NaclError> {
    let body = bytes.strip_prefix(NACL_PREFIX).ok_or(NaclError::NotNacl)?;
    if body.len() < NONCE_BYTES + TAG_BYTES {
        return Err(NaclError::Truncated { len: bytes.len() });
    }
    let (nonce, sealed) = body.split_at(NONCE_BYTES);
    let key = derive_key(password)?;
    let cipher = XSalsa20Poly1305::new(Key::from_slice(key.as_slice()));
    cipher
        .decrypt(Nonce::from_slice(nonce), sealed)
        .map(Zeroizing::new)
        .map_err(|_| NaclError::WrongPassword)
}

/// libsodium `crypto_pwhash_argon2i(..., OPSLIMIT_SENSITIVE, MEMLIMIT_SENSITIVE)`.
fn derive_key(password: &SecretString) -> Result<Zeroizing<[u8; KEY_BYTES]>, NaclError> {
    let params = Params::new(ARGON2I_MEMORY_KIB, ARGON2I_PASSES, 1, Some(KEY_BYTES))
        .map_err(|e| NaclError::Kdf(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2i, Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    argon
        .hash_password_into(
            password.expose_secret().as_bytes(),
            &NACL_SALT,
            key.as_mut_slice(),
        )
        .map_err(|e| NaclError::Kdf(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_foreign_input_fails_before_key_derivation() {
        let password = SecretString::from("x");
        assert_eq!(
            decrypt_nacl(b"{}", &password).err(),
            Some(NaclError::NotNacl)
        );
        let short = [NACL_PREFIX, &[0u8; NONCE_BYTES + TAG_BYTES - 1]].concat();
        assert_eq!(
            decrypt_nacl(&short, &password).err(),
            Some(NaclError::Truncated { len: short.len() })
        );
    }
}
