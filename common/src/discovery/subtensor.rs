//! Validator discovery from a subtensor node over JSON-RPC (HTTP): `state_call` of
//! `NeuronInfoRuntimeApi_get_neurons_lite` and `SubnetInfoRuntimeApi_get_subnet_state`, both
//! SCALE-decoded with the layouts in [`super::chain_types`]. Plain `http://` endpoints only (a
//! local or LAN subtensor lite node); the response size is capped.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{header, Request};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use parity_scale_codec::{Compact, DecodeAll as _, Encode as _};
use serde::Deserialize;

use super::{
    chain_types::{NeuronInfoLite, SubnetState},
    ChainStanding, DiscoveredValidator, ValidatorInfo,
};
use crate::bittensor::ss58;

/// Rao per TAO.
pub const RAO_PER_TAO: f64 = 1e9;

const NEURONS_LITE: &str = "NeuronInfoRuntimeApi_get_neurons_lite";
const SUBNET_STATE: &str = "SubnetInfoRuntimeApi_get_subnet_state";

/// Why discovery from the chain failed.
#[derive(Debug, thiserror::Error)]
pub enum SubtensorError {
    #[error("subtensor endpoint {0:?} is not an http:// URL")]
    BadEndpoint(String),
    #[error("subtensor {endpoint}: request failed: {reason}")]
    Transport { endpoint: String, reason: String },
    #[error("subtensor {endpoint}: no answer within {after:?}")]
    Timeout { endpoint: String, after: Duration },
    #[error("subtensor {endpoint}: HTTP {status}")]
    Status { endpoint: String, status: u16 },
    #[error("subtensor {endpoint}: response over the {limit}-byte cap")]
    TooLarge { endpoint: String, limit: usize },
    #[error("subtensor {endpoint}: {method}: JSON-RPC error {code}: {message}")]
    Rpc {
        endpoint: String,
        method: &'static str,
        code: i64,
        message: String,
    },
    #[error("subtensor {endpoint}: {method}: malformed answer: {reason}")]
    Malformed {
        endpoint: String,
        method: &'static str,
        reason: String,
    },
    #[error("subtensor {endpoint}: subnet {netuid} does not exist")]
    NoSubnet { endpoint: String, netuid: u16 },
}

#[derive(Deserialize)]
struct RpcResponse {
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    error: Option<RpcErrorBody>,
}

#[derive(Deserialize)]
struct RpcErrorBody {
    code: i64,
    #[serde(default)]
    message: String,
}

/// A JSON-RPC client for one subtensor node.
#[derive(Debug, Clone)]
pub struct SubtensorClient {
    endpoint: String,
    timeout: Duration,
    max_response_bytes: usize,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl SubtensorClient {
    pub fn new(endpoint: &str, timeout: Duration) -> Result<Self, SubtensorError> {
        if !endpoint.starts_with("http://") {
            return Err(SubtensorError::BadEndpoint(endpoint.to_owned()));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        Ok(Self {
            endpoint: endpoint.to_owned(),
            timeout,
            max_response_bytes: 64 * 1024 * 1024,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// `state_call(method, 0x<args>)`, returning the decoded result bytes.
    pub async fn state_call(
        &self,
        method: &'static str,
        args: &[u8],
    ) -> Result<Vec<u8>, SubtensorError> {
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "state_call",
            "params": [method, format!("0x{}", hex::encode(args))],
        });
        let fut = self.post(method, body.to_string());
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(SubtensorError::Timeout {
                endpoint: self.endpoint.clone(),
                after: self.timeout,
            }),
        }
    }

    async fn post(&self, method: &'static str, body: String) -> Result<Vec<u8>, SubtensorError> {
        let endpoint = self.endpoint.clone();
        let request = Request::post(&self.endpoint)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| SubtensorError::BadEndpoint(endpoint.clone()))?;
        let response =
            self.client
                .request(request)
                .await
                .map_err(|e| SubtensorError::Transport {
                    endpoint: endpoint.clone(),
                    reason: e.to_string(),
                })?;
        if !response.status().is_success() {
            return Err(SubtensorError::Status {
                endpoint,
                status: response.status().as_u16(),
            });
        }
        let limit = self.max_response_bytes;
        let bytes = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    SubtensorError::TooLarge {
                        endpoint: endpoint.clone(),
                        limit,
                    }
                } else {
                    SubtensorError::Transport {
                        endpoint: endpoint.clone(),
                        reason: e.to_string(),
                    }
                }
            })?
            .to_bytes();
        let malformed = |reason: String| SubtensorError::Malformed {
            endpoint: endpoint.clone(),
            method,
            reason,
        };
        let parsed: RpcResponse =
            serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
        if let Some(err) = parsed.error {
            return Err(SubtensorError::Rpc {
                endpoint,
                method,
                code: err.code,
                message: err.message,
            });
        }
        let result = parsed.result.ok_or_else(|| malformed("no result".into()))?;
        let text = result.strip_prefix("0x").unwrap_or(&result);
        hex::decode(text).map_err(|_| malformed("result is not hex".into()))
    }

    pub async fn neurons_lite(&self, netuid: u16) -> Result<Vec<NeuronInfoLite>, SubtensorError> {
        let raw = self.state_call(NEURONS_LITE, &netuid.encode()).await?;
        decode_neurons_lite(&raw).map_err(|reason| SubtensorError::Malformed {
            endpoint: self.endpoint.clone(),
            method: NEURONS_LITE,
            reason,
        })
    }

    pub async fn subnet_state(&self, netuid: u16) -> Result<Option<SubnetState>, SubtensorError> {
        let raw = self.state_call(SUBNET_STATE, &netuid.encode()).await?;
        Option::<SubnetState>::decode_all(&mut raw.as_slice()).map_err(|e| {
            SubtensorError::Malformed {
                endpoint: self.endpoint.clone(),
                method: SUBNET_STATE,
                reason: e.to_string(),
            }
        })
    }

    /// Every neuron of the subnet, stake from the subnet state's `total_stake` (the SDK
    /// metagraph's `S`). The puller's selection decides whom to pull from.
    pub async fn validators(
        &self,
        netuid: u16,
    ) -> Result<Vec<DiscoveredValidator>, SubtensorError> {
        let neurons = self.neurons_lite(netuid).await?;
        let state = self
            .subnet_state(netuid)
            .await?
            .ok_or_else(|| SubtensorError::NoSubnet {
                endpoint: self.endpoint.clone(),
                netuid,
            })?;
        Ok(to_validators(&neurons, Some(&state)))
    }
}

/// Decodes a `Vec<NeuronInfoLite>` that must use every byte.
pub fn decode_neurons_lite(raw: &[u8]) -> Result<Vec<NeuronInfoLite>, String> {
    Vec::<NeuronInfoLite>::decode_all(&mut &raw[..]).map_err(|e| e.to_string())
}

/// The chain stores trust and consensus as `u16` fixed point; the SDK divides by `u16::MAX`
/// (`u16_normalized_float`).
fn normalized(value: Compact<u16>) -> f64 {
    f64::from(value.0) / f64::from(u16::MAX)
}

/// Joins neurons with the subnet state's stake. Without a state, stake is the sum of the
/// neuron's own `(coldkey, stake)` pairs.
pub fn to_validators(
    neurons: &[NeuronInfoLite],
    state: Option<&SubnetState>,
) -> Vec<DiscoveredValidator> {
    neurons
        .iter()
        .map(|n| {
            let uid = n.uid.0;
            let rao = state
                .and_then(|s| s.total_stake.get(usize::from(uid)))
                .map(|c| c.0)
                .unwrap_or_else(|| {
                    n.stake
                        .iter()
                        .map(|(_, c)| c.0)
                        .fold(0u64, u64::saturating_add)
                });
            DiscoveredValidator {
                info: ValidatorInfo {
                    uid,
                    hotkey: ss58::encode(&n.hotkey, ss58::BITTENSOR_SS58_PREFIX),
                    ip: n.axon_info.ip_string(),
                    port: n.axon_info.port,
                    stake: rao as f64 / RAO_PER_TAO,
                    validator_permit: n.validator_permit,
                },
                chain: Some(ChainStanding {
                    trust: normalized(n.trust),
                    consensus: normalized(n.consensus),
                    validator_trust: normalized(n.validator_trust),
                    axon_version: n.axon_info.version,
                }),
            }
        })
        .collect()
}
