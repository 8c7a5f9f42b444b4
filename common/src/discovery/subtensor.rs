//! Validator discovery from a subtensor node's JSON-RPC: `state_call` of
//! `NeuronInfoRuntimeApi_get_neurons_lite` and `SubnetInfoRuntimeApi_get_subnet_state`, both
//! SCALE-decoded with the layouts in [`super::chain_types`], over `ws://`, `wss://` (what public
//! endpoints such as `wss://entrypoint-finney.opentensor.ai:443` speak), `http://` or
//! `https://`. TLS trusts the system's roots; answers are size-capped.
//!
//! The transport is jsonrpsee, the JSON-RPC client subxt itself is built on. subxt would also
//! decode the answers from the chain's own metadata, but only through code generated from a
//! metadata snapshot (regenerated at each runtime upgrade, and a large build) or through
//! untyped dynamic values, for two calls whose layouts `chain_types` already spells and
//! `common/tests/discovery_transports.rs` checks against answers recorded from the chain. What
//! subxt would add is the message when a layout changes: a change shows here as
//! [`SubtensorError::Layout`], naming the call and the runtime's spec version, and the puller
//! keeps the last good validator set.

use std::time::Duration;

use jsonrpsee::{
    core::{client::ClientT, ClientError},
    http_client::{HttpClient, HttpClientBuilder},
    rpc_params,
    ws_client::{WsClient, WsClientBuilder},
};
use parity_scale_codec::{Compact, DecodeAll as _, Encode as _};
use serde::Deserialize;

use super::{
    chain_types::{NeuronInfoLite, SubnetState},
    ChainStanding, DiscoveredValidator, ValidatorInfo,
};
use crate::{bittensor::ss58, http_client::error_chain};

/// Rao per TAO.
pub const RAO_PER_TAO: f64 = 1e9;

const NEURONS_LITE: &str = "NeuronInfoRuntimeApi_get_neurons_lite";
const SUBNET_STATE: &str = "SubnetInfoRuntimeApi_get_subnet_state";
const RUNTIME_VERSION: &str = "state_getRuntimeVersion";

/// The largest answer taken: a subnet of 1024 neurons answers about 220 KB per call.
const MAX_RESPONSE_BYTES: u32 = 64 * 1024 * 1024;

/// Why discovery from the chain failed.
#[derive(Debug, thiserror::Error)]
pub enum SubtensorError {
    #[error("subtensor endpoint {0:?} is not a ws://, wss://, http:// or https:// URL")]
    BadEndpoint(String),
    #[error("subtensor {endpoint}: {reason}")]
    Transport { endpoint: String, reason: String },
    #[error("subtensor {endpoint}: no answer within {after:?}")]
    Timeout { endpoint: String, after: Duration },
    #[error("subtensor {endpoint}: {method}: JSON-RPC error {code}: {message}")]
    Rpc {
        endpoint: String,
        method: &'static str,
        code: i32,
        message: String,
    },
    #[error("subtensor {endpoint}: {method}: malformed answer: {reason}")]
    Malformed {
        endpoint: String,
        method: &'static str,
        reason: String,
    },
    /// The answer is well-formed JSON-RPC, but its bytes are not the layout this build
    /// decodes: the runtime changed the type.
    #[error("subtensor {endpoint}: {method}: the answer of runtime {runtime} does not decode as this build's layout of it ({reason}); a runtime upgrade changed the type: update splatfleet (common/src/discovery/chain_types.rs)")]
    Layout {
        endpoint: String,
        method: &'static str,
        /// `<specName> spec version <N>`, or `of unknown version` when that could not be read.
        runtime: String,
        reason: String,
    },
    #[error("subtensor {endpoint}: subnet {netuid} does not exist")]
    NoSubnet { endpoint: String, netuid: u16 },
}

/// The part of `state_getRuntimeVersion` an error names.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeVersion {
    spec_name: String,
    spec_version: u32,
}

/// The connection: jsonrpsee's clients for both kinds of endpoint share [`ClientT`].
#[derive(Debug)]
enum Rpc {
    WebSocket(WsClient),
    Http(HttpClient),
}

/// A JSON-RPC client for one subtensor node.
#[derive(Debug)]
pub struct SubtensorClient {
    endpoint: String,
    timeout: Duration,
    rpc: Rpc,
}

impl SubtensorClient {
    /// Connects to `endpoint` (ws:// and wss:// open the WebSocket here; http:// and https://
    /// connect per call), trusting the system's TLS roots.
    pub async fn connect(endpoint: &str, timeout: Duration) -> Result<Self, SubtensorError> {
        Self::connect_with_tls(endpoint, timeout, None).await
    }

    /// As [`Self::connect`], with the TLS settings given instead of the system's roots (tests
    /// trust their own certificate authority; a node behind a private CA could too).
    pub async fn connect_with_tls(
        endpoint: &str,
        timeout: Duration,
        tls: Option<rustls::ClientConfig>,
    ) -> Result<Self, SubtensorError> {
        // rustls refuses to pick a crypto provider when a build enables two (the `s3`
        // feature's dependencies may bring aws-lc-rs beside jsonrpsee's ring): name ring once
        // for the process. Failing means one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let transport = |err: ClientError| SubtensorError::Transport {
            endpoint: endpoint.to_owned(),
            reason: error_chain(&err),
        };
        let scheme = endpoint.split_once("://").map(|(scheme, _)| scheme);
        let rpc = match scheme {
            Some("ws" | "wss") => {
                let mut builder = WsClientBuilder::new()
                    .connection_timeout(timeout)
                    .request_timeout(timeout)
                    .max_response_size(MAX_RESPONSE_BYTES);
                if let Some(tls) = tls {
                    builder = builder.with_custom_cert_store(tls);
                }
                let connecting = builder.build(endpoint);
                match tokio::time::timeout(timeout, connecting).await {
                    Ok(client) => Rpc::WebSocket(client.map_err(transport)?),
                    Err(_) => {
                        return Err(SubtensorError::Timeout {
                            endpoint: endpoint.to_owned(),
                            after: timeout,
                        })
                    }
                }
            }
            Some("http" | "https") => {
                let mut builder = HttpClientBuilder::new()
                    .request_timeout(timeout)
                    .max_response_size(MAX_RESPONSE_BYTES);
                if let Some(tls) = tls {
                    builder = builder.with_custom_cert_store(tls);
                }
                Rpc::Http(builder.build(endpoint).map_err(transport)?)
            }
            _ => return Err(SubtensorError::BadEndpoint(endpoint.to_owned())),
        };
        Ok(Self {
            endpoint: endpoint.to_owned(),
            timeout,
            rpc,
        })
    }

    async fn request<R: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        params: jsonrpsee::core::params::ArrayParams,
    ) -> Result<R, SubtensorError> {
        let answer = match &self.rpc {
            Rpc::WebSocket(client) => client.request(method, params).await,
            Rpc::Http(client) => client.request(method, params).await,
        };
        answer.map_err(|err| self.error(method, err))
    }

    fn error(&self, method: &'static str, err: ClientError) -> SubtensorError {
        let endpoint = self.endpoint.clone();
        match err {
            ClientError::Call(call) => SubtensorError::Rpc {
                endpoint,
                method,
                code: call.code(),
                message: call.message().to_owned(),
            },
            ClientError::RequestTimeout => SubtensorError::Timeout {
                endpoint,
                after: self.timeout,
            },
            ClientError::ParseError(err) => SubtensorError::Malformed {
                endpoint,
                method,
                reason: err.to_string(),
            },
            other => SubtensorError::Transport {
                endpoint,
                reason: format!("{method}: {}", error_chain(&other)),
            },
        }
    }

    /// `state_call(method, 0x<args>)`, returning the result's bytes.
    pub async fn state_call(
        &self,
        method: &'static str,
        args: &[u8],
    ) -> Result<Vec<u8>, SubtensorError> {
        let result: String = self
            .request(
                "state_call",
                rpc_params![method, format!("0x{}", hex::encode(args))],
            )
            .await
            .map_err(|err| match err {
                // Name the runtime API, not `state_call`, in what the operator reads.
                SubtensorError::Rpc {
                    endpoint,
                    code,
                    message,
                    ..
                } => SubtensorError::Rpc {
                    endpoint,
                    method,
                    code,
                    message,
                },
                other => other,
            })?;
        let text = result.strip_prefix("0x").unwrap_or(&result);
        hex::decode(text).map_err(|_| SubtensorError::Malformed {
            endpoint: self.endpoint.clone(),
            method,
            reason: "the result is not hex".into(),
        })
    }

    /// The error for an answer of `method` whose bytes do not decode, naming the runtime.
    async fn layout_error(&self, method: &'static str, reason: String) -> SubtensorError {
        let runtime = match self
            .request::<RuntimeVersion>(RUNTIME_VERSION, rpc_params![])
            .await
        {
            Ok(version) => format!(
                "{} spec version {}",
                version.spec_name, version.spec_version
            ),
            Err(_) => "of unknown version".into(),
        };
        SubtensorError::Layout {
            endpoint: self.endpoint.clone(),
            method,
            runtime,
            reason,
        }
    }

    pub async fn neurons_lite(&self, netuid: u16) -> Result<Vec<NeuronInfoLite>, SubtensorError> {
        let raw = self.state_call(NEURONS_LITE, &netuid.encode()).await?;
        match decode_neurons_lite(&raw) {
            Ok(neurons) => Ok(neurons),
            Err(reason) => Err(self.layout_error(NEURONS_LITE, reason).await),
        }
    }

    pub async fn subnet_state(&self, netuid: u16) -> Result<Option<SubnetState>, SubtensorError> {
        let raw = self.state_call(SUBNET_STATE, &netuid.encode()).await?;
        match Option::<SubnetState>::decode_all(&mut raw.as_slice()) {
            Ok(state) => Ok(state),
            Err(err) => Err(self.layout_error(SUBNET_STATE, err.to_string()).await),
        }
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
