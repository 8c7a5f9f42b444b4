//! The synapse wire format of Bittensor SDK 9.9.0 (`bittensor/core/synapse.py`): the JSON body
//! (common fields, `dendrite` and `axon` terminal objects, then the synapse's own fields), the
//! `bt_header_*` headers, the body hash and the message a dendrite signs. Both the dendrite
//! client and the simulated validators' axon use these, so they cannot drift apart.

use base64::Engine as _;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha3::{Digest, Sha3_256};

/// SDK version 9.9.0 as the SDK writes it into `version` (`major·10⁶ + minor·10³ + patch`).
pub const SDK_VERSION_AS_INT: u64 = 9_009_000;

/// The axon checks nonce freshness only for dendrites at or above this version (7.2.0).
pub const NONCE_WINDOW_MIN_VERSION: u64 = 7_002_000;

/// Default query timeout of a synapse, seconds.
pub const DEFAULT_TIMEOUT_SECS: f64 = 12.0;

/// One end of a call (`TerminalInfo`): every field optional, serialized as `null` when unset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TerminalInfo {
    #[serde(default)]
    pub status_code: Option<i64>,
    #[serde(default)]
    pub status_message: Option<String>,
    #[serde(default)]
    pub process_time: Option<f64>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub version: Option<u64>,
    #[serde(default)]
    pub nonce: Option<u64>,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub hotkey: Option<String>,
    #[serde(default)]
    pub signature: Option<String>,
}

impl TerminalInfo {
    /// `(field, value)` pairs for every set field, values written as Python's `str()` would.
    pub fn header_pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(v) = self.status_code {
            out.push(("status_code", v.to_string()));
        }
        if let Some(v) = &self.status_message {
            out.push(("status_message", v.clone()));
        }
        if let Some(v) = self.process_time {
            out.push(("process_time", python_float(v)));
        }
        if let Some(v) = &self.ip {
            out.push(("ip", v.clone()));
        }
        if let Some(v) = self.port {
            out.push(("port", v.to_string()));
        }
        if let Some(v) = self.version {
            out.push(("version", v.to_string()));
        }
        if let Some(v) = self.nonce {
            out.push(("nonce", v.to_string()));
        }
        if let Some(v) = &self.uuid {
            out.push(("uuid", v.clone()));
        }
        if let Some(v) = &self.hotkey {
            out.push(("hotkey", v.clone()));
        }
        if let Some(v) = &self.signature {
            out.push(("signature", v.clone()));
        }
        out
    }
}

/// What a synapse type must say about itself to travel.
pub trait Synapse: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The class name: the URL path and the `name` field.
    const NAME: &'static str;
    /// Fields without a default in the SDK model, with the JSON of their type's zero value
    /// (`str()` → `""`, `int()` → `0`), in declaration order: the SDK sends each as
    /// `bt_header_input_obj_<field>` = base64 of that JSON.
    const REQUIRED_FIELDS: &'static [(&'static str, &'static str)];
    /// Values of `required_hash_fields`, stringified as Python `str()` would, in order. SN17's
    /// synapses declare none, so their body hash is the hash of the empty string.
    fn hash_field_values(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A synapse as it travels in a JSON body: the SDK's common fields, then the synapse's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynapseBody<S> {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout: Option<f64>,
    #[serde(default = "zero")]
    pub total_size: Option<u64>,
    #[serde(default = "zero")]
    pub header_size: Option<u64>,
    #[serde(default = "default_terminal")]
    pub dendrite: Option<TerminalInfo>,
    #[serde(default = "default_terminal")]
    pub axon: Option<TerminalInfo>,
    #[serde(default = "empty_string")]
    pub computed_body_hash: Option<String>,
    #[serde(flatten)]
    pub synapse: S,
}

fn default_timeout() -> Option<f64> {
    Some(DEFAULT_TIMEOUT_SECS)
}
fn zero() -> Option<u64> {
    Some(0)
}
fn default_terminal() -> Option<TerminalInfo> {
    Some(TerminalInfo::default())
}
fn empty_string() -> Option<String> {
    Some(String::new())
}

impl<S: Synapse> SynapseBody<S> {
    /// A body with the SDK's defaults around `synapse`.
    pub fn new(synapse: S) -> Self {
        Self {
            name: Some(S::NAME.to_owned()),
            timeout: default_timeout(),
            total_size: zero(),
            header_size: zero(),
            dendrite: default_terminal(),
            axon: default_terminal(),
            computed_body_hash: empty_string(),
            synapse,
        }
    }

    /// sha3-256 hex of the concatenated sha3-256 hex digests of the hash fields (`body_hash`).
    pub fn body_hash(&self) -> String {
        body_hash(&self.synapse.hash_field_values())
    }

    pub fn dendrite_hotkey(&self) -> Option<&str> {
        self.dendrite.as_ref().and_then(|d| d.hotkey.as_deref())
    }

    pub fn axon_hotkey(&self) -> Option<&str> {
        self.axon.as_ref().and_then(|a| a.hotkey.as_deref())
    }
}

/// sha3-256 hex digest of a UTF-8 string (the SDK's `get_hash`).
pub fn sha3_hex(text: &str) -> String {
    hex::encode(Sha3_256::digest(text.as_bytes()))
}

/// The SDK's `body_hash` over already-stringified hash field values.
pub fn body_hash(values: &[String]) -> String {
    let joined: String = values.iter().map(|v| sha3_hex(v)).collect();
    sha3_hex(&joined)
}

/// The message a dendrite signs: `{nonce}.{dendrite_hotkey}.{axon_hotkey}.{uuid}.{body_hash}`.
pub fn dendrite_signed_message(
    nonce: u64,
    dendrite_hotkey: &str,
    axon_hotkey: &str,
    uuid: &str,
    body_hash: &str,
) -> String {
    format!("{nonce}.{dendrite_hotkey}.{axon_hotkey}.{uuid}.{body_hash}")
}

/// Python's `str(float)` for the values the SDK writes (`12.0`, `0.25`, `1e-05`).
pub fn python_float(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Builds the headers the SDK's `Synapse.to_headers()` produces for `body`, in its order:
/// `name`, `timeout`, `bt_header_axon_*`, `bt_header_dendrite_*`, `bt_header_input_obj_*`,
/// `header_size`, `total_size`, `computed_body_hash`.
pub fn to_headers<S: Synapse>(body: &SynapseBody<S>) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    headers.push((
        "name".to_owned(),
        body.name.clone().unwrap_or_else(|| S::NAME.to_owned()),
    ));
    let timeout = body
        .timeout
        .map(python_float)
        .unwrap_or_else(|| "None".to_owned());
    headers.push(("timeout".to_owned(), timeout));
    if let Some(axon) = &body.axon {
        for (k, v) in axon.header_pairs() {
            headers.push((format!("bt_header_axon_{k}"), v));
        }
    }
    if let Some(dendrite) = &body.dendrite {
        for (k, v) in dendrite.header_pairs() {
            headers.push((format!("bt_header_dendrite_{k}"), v));
        }
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    for (field, zero_json) in S::REQUIRED_FIELDS {
        headers.push((
            format!("bt_header_input_obj_{field}"),
            b64.encode(zero_json),
        ));
    }
    // The SDK writes Python object sizes here; no axon reads them back for checks.
    headers.push(("header_size".to_owned(), "640".to_owned()));
    headers.push((
        "total_size".to_owned(),
        body.total_size.unwrap_or(0).to_string(),
    ));
    headers.push(("computed_body_hash".to_owned(), body.body_hash()));
    headers
}

/// The request-side terminal infos the SDK parses from headers (`Synapse.from_headers`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderSynapse {
    pub name: Option<String>,
    pub timeout: Option<f64>,
    pub computed_body_hash: Option<String>,
    pub dendrite: TerminalInfo,
    pub axon: TerminalInfo,
}

/// Why headers could not be read into a synapse (the axon answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header {header} has an invalid value")]
pub struct HeaderParseError {
    pub header: String,
}

/// Parses headers (names compared case-insensitively) as the SDK's `from_headers` does,
/// keeping the fields an axon checks. Unknown headers are ignored.
pub fn from_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<HeaderSynapse, HeaderParseError> {
    let mut out = HeaderSynapse::default();
    for (name, value) in headers {
        let key = name.to_ascii_lowercase();
        if let Some(field) = key.strip_prefix("bt_header_axon_") {
            set_terminal_field(&mut out.axon, field, value, &key)?;
        } else if let Some(field) = key.strip_prefix("bt_header_dendrite_") {
            set_terminal_field(&mut out.dendrite, field, value, &key)?;
        } else {
            match key.as_str() {
                "name" => out.name = Some(value.to_owned()),
                "timeout" => out.timeout = Some(parse_float(value, &key)?),
                "computed_body_hash" => out.computed_body_hash = Some(value.to_owned()),
                _ => {}
            }
        }
    }
    Ok(out)
}

fn parse_float(value: &str, key: &str) -> Result<f64, HeaderParseError> {
    value.trim().parse::<f64>().map_err(|_| HeaderParseError {
        header: key.to_owned(),
    })
}

fn parse_int<T: std::str::FromStr>(value: &str, key: &str) -> Result<T, HeaderParseError> {
    value.trim().parse::<T>().map_err(|_| HeaderParseError {
        header: key.to_owned(),
    })
}

fn set_terminal_field(
    t: &mut TerminalInfo,
    field: &str,
    value: &str,
    key: &str,
) -> Result<(), HeaderParseError> {
    match field {
        "status_code" => t.status_code = Some(parse_int(value, key)?),
        "status_message" => t.status_message = Some(value.to_owned()),
        "process_time" => t.process_time = Some(parse_float(value, key)?),
        "ip" => t.ip = Some(value.to_owned()),
        "port" => t.port = Some(parse_int(value, key)?),
        "version" => t.version = Some(parse_int(value, key)?),
        "nonce" => t.nonce = Some(parse_int(value, key)?),
        "uuid" => t.uuid = Some(value.to_owned()),
        "hotkey" => t.hotkey = Some(value.to_owned()),
        "signature" => t.signature = Some(value.to_owned()),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_body_hash_is_sha3_of_empty_string() {
        assert_eq!(
            body_hash(&[]),
            "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"
        );
    }

    #[test]
    fn python_float_matches_str() {
        assert_eq!(python_float(12.0), "12.0");
        assert_eq!(python_float(300.0), "300.0");
        assert_eq!(python_float(0.25), "0.25");
    }
}
