//! The wire format: a bincode 1.3 `{ schema, body }` envelope, size-capped, so a message
//! from an older or newer fleet is recognised instead of misread.

use bincode::Options;
use serde::{Deserialize, Serialize};

use crate::messages::Message;

/// AMQP `content_type` of every splatfleet message.
pub const CONTENT_TYPE: &str = "application/x-bincode";

/// Largest message accepted either way (image prompts are a few hundred KB).
pub const MAX_MESSAGE_BYTES: u64 = 16 * 1024 * 1024;

/// The versioned wrapper around every message body.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub schema: u16,
    pub body: T,
}

/// Why bytes from the broker are not a message of the expected type.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("envelope schema {found} is not the {expected} this build reads")]
    Schema { found: u16, expected: u16 },
    #[error("malformed message body: {0}")]
    Malformed(String),
}

fn options() -> impl Options {
    // Fixed-width little-endian integers: the same layout as `bincode::serialize` in 1.3.
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(MAX_MESSAGE_BYTES)
        .reject_trailing_bytes()
}

/// Encodes `body` inside an envelope carrying `M::SCHEMA`.
pub fn encode<M: Message>(body: &M) -> Result<Vec<u8>, bincode::Error> {
    options().serialize(&Envelope {
        schema: M::SCHEMA,
        body,
    })
}

/// Decodes an envelope, checking its schema before the body.
pub fn decode<M: Message>(bytes: &[u8]) -> Result<M, DecodeError> {
    let schema_bytes: [u8; 2] =
        bytes
            .get(..2)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                DecodeError::Malformed(format!(
                    "{} bytes is too short for an envelope",
                    bytes.len()
                ))
            })?;
    let found = u16::from_le_bytes(schema_bytes);
    if found != M::SCHEMA {
        return Err(DecodeError::Schema {
            found,
            expected: M::SCHEMA,
        });
    }
    let envelope: Envelope<M> = options()
        .deserialize(bytes)
        .map_err(|err| DecodeError::Malformed(err.to_string()))?;
    Ok(envelope.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{TaskKind, TaskMsg, ValidatorRef};

    fn task() -> TaskMsg {
        TaskMsg {
            task_id: "t-1".into(),
            validator: ValidatorRef {
                uid: 3,
                hotkey: "5Hk".into(),
                ip: "127.0.0.1".into(),
                port: 8091,
            },
            kind: TaskKind::Text,
            prompt: "a red chair".into(),
            validation_threshold: 0.6,
            throttle_period_secs: 30,
            pulled_at_unix_ms: 1,
            deadline_unix_ms: 2,
        }
    }

    #[test]
    fn round_trips_and_starts_with_the_schema() {
        let bytes = encode(&task()).expect("encodes");
        assert_eq!(&bytes[..2], &1u16.to_le_bytes());
        assert_eq!(decode::<TaskMsg>(&bytes).expect("decodes"), task());
    }

    #[test]
    fn other_schema_is_named() {
        let mut bytes = encode(&task()).expect("encodes");
        bytes[0] = 9;
        assert!(matches!(
            decode::<TaskMsg>(&bytes),
            Err(DecodeError::Schema {
                found: 9,
                expected: 1
            })
        ));
    }

    #[test]
    fn garbage_and_huge_length_claims_are_errors_not_allocations() {
        assert!(matches!(
            decode::<TaskMsg>(b"\x01"),
            Err(DecodeError::Malformed(_))
        ));
        let mut bytes = 1u16.to_le_bytes().to_vec();
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode::<TaskMsg>(&bytes),
            Err(DecodeError::Malformed(_))
        ));
        let mut trailing = encode(&task()).expect("encodes");
        trailing.push(0);
        assert!(matches!(
            decode::<TaskMsg>(&trailing),
            Err(DecodeError::Malformed(_))
        ));
    }
}
