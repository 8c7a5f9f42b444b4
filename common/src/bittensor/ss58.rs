//! SS58 addresses: the base58 text form of a 32-byte public key with a network prefix and a
//! blake2b-512 checksum (`"SS58PRE" ‖ prefix ‖ key`, first two bytes), as Substrate writes them.
//! Bittensor uses the generic prefix 42.

use blake2::{Blake2b512, Digest};

/// The network prefix Bittensor addresses use.
pub const BITTENSOR_SS58_PREFIX: u16 = 42;

const CHECKSUM_PREAMBLE: &[u8] = b"SS58PRE";
const CHECKSUM_LEN: usize = 2;
const KEY_LEN: usize = 32;

/// Why a string is not a valid SS58 address for a 32-byte key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ss58Error {
    #[error("SS58 address is not valid base58")]
    NotBase58,
    #[error("SS58 address has {0} bytes after base58 decoding; a 32-byte key needs 35 or 36")]
    BadLength(usize),
    #[error("SS58 address uses a reserved prefix byte {0:#04x}")]
    ReservedPrefix(u8),
    #[error("SS58 address checksum does not match (mistyped or truncated address)")]
    BadChecksum,
    #[error("SS58 address has network prefix {found}, expected {expected}")]
    WrongPrefix { found: u16, expected: u16 },
}

fn checksum(payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut hasher = Blake2b512::new();
    hasher.update(CHECKSUM_PREAMBLE);
    hasher.update(payload);
    let digest = hasher.finalize();
    [digest[0], digest[1]]
}

fn prefix_bytes(prefix: u16) -> Vec<u8> {
    // Substrate's encoding: one byte below 64, otherwise a two-byte form with the 0b01 marker.
    if prefix < 64 {
        vec![prefix as u8]
    } else {
        let ident = prefix & 0b0011_1111_1111_1111;
        let first = (((ident & 0b0000_0000_1111_1100) as u8) >> 2) | 0b0100_0000;
        let second = ((ident >> 8) as u8) | (((ident & 0b0000_0000_0000_0011) as u8) << 6);
        vec![first, second]
    }
}

/// Encodes a 32-byte public key with the given network prefix (only values below 16384 exist).
pub fn encode(public_key: &[u8; KEY_LEN], prefix: u16) -> String {
    let mut payload = prefix_bytes(prefix);
    payload.extend_from_slice(public_key);
    let sum = checksum(&payload);
    payload.extend_from_slice(&sum);
    bs58::encode(payload).into_string()
}

/// Decodes an address into its network prefix and 32-byte public key, verifying the checksum.
pub fn decode(address: &str) -> Result<(u16, [u8; KEY_LEN]), Ss58Error> {
    let data = bs58::decode(address)
        .into_vec()
        .map_err(|_| Ss58Error::NotBase58)?;
    let (prefix, prefix_len) = match data.first() {
        Some(&b) if b < 64 => (u16::from(b), 1),
        Some(&b) if b < 128 => {
            let second = *data.get(1).ok_or(Ss58Error::BadLength(data.len()))?;
            let lower = (b << 2) | (second >> 6);
            let upper = second & 0b0011_1111;
            (u16::from(lower) | (u16::from(upper) << 8), 2)
        }
        Some(&b) => return Err(Ss58Error::ReservedPrefix(b)),
        None => return Err(Ss58Error::BadLength(0)),
    };
    if data.len() != prefix_len + KEY_LEN + CHECKSUM_LEN {
        return Err(Ss58Error::BadLength(data.len()));
    }
    let body_end = prefix_len + KEY_LEN;
    let expected = checksum(&data[..body_end]);
    if data[body_end..] != expected {
        return Err(Ss58Error::BadChecksum);
    }
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(&data[prefix_len..body_end]);
    Ok((prefix, key))
}

/// Decodes an address that must carry Bittensor's prefix 42.
pub fn decode_bittensor(address: &str) -> Result<[u8; KEY_LEN], Ss58Error> {
    let (prefix, key) = decode(address)?;
    if prefix != BITTENSOR_SS58_PREFIX {
        return Err(Ss58Error::WrongPrefix {
            found: prefix,
            expected: BITTENSOR_SS58_PREFIX,
        });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_prefix_forms() {
        let key = [7u8; 32];
        for prefix in [0u16, 42, 63, 64, 255, 1000, 16383] {
            let address = encode(&key, prefix);
            assert_eq!(decode(&address), Ok((prefix, key)), "prefix {prefix}");
        }
    }
}
