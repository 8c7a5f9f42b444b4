//! Discovery against a local JSON-RPC node replaying answers recorded from the chain
//! (`fixtures/chain/`): over `wss://` and `https://` (TLS with a test certificate from rcgen)
//! and over `ws://` and `http://`, the recorded metagraph decodes into the validators it
//! holds; an answer whose layout changed is a typed error naming the call and the runtime; a
//! node's JSON-RPC error names the runtime API; TLS is verified.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use jsonrpsee::{
    server::{stop_channel, Server, ServerHandle},
    types::ErrorObjectOwned,
    RpcModule,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use splatfleet_common::discovery::subtensor::{SubtensorClient, SubtensorError};

const NEURONS_LITE: &str = "NeuronInfoRuntimeApi_get_neurons_lite";
const SUBNET_STATE: &str = "SubnetInfoRuntimeApi_get_subnet_state";
const TIMEOUT: Duration = Duration::from_secs(10);

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/chain")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn recorded(name: &str) -> Vec<u8> {
    zstd::decode_all(fixture(name).as_slice()).expect("a zstd fixture")
}

/// `state_call` answers by (runtime API, argument hex without `0x`), and the runtime version.
#[derive(Clone)]
struct Recording {
    state_calls: HashMap<(String, String), Vec<u8>>,
    runtime_version: serde_json::Value,
}

impl Recording {
    /// What the chain answered for netuid 1 at block 6852690.
    fn netuid_1() -> Self {
        let mut state_calls = HashMap::new();
        state_calls.insert(
            (NEURONS_LITE.into(), "0100".into()),
            recorded("neurons_lite_netuid1.scale.zst"),
        );
        state_calls.insert(
            (SUBNET_STATE.into(), "0100".into()),
            recorded("subnet_state_netuid1.scale.zst"),
        );
        let runtime_version = serde_json::from_slice(&fixture("runtime_version.json"))
            .expect("the recorded runtime version is JSON");
        Self {
            state_calls,
            runtime_version,
        }
    }
}

/// The test certificate for 127.0.0.1 and its key, made once per test binary.
fn certificate() -> &'static (CertificateDer<'static>, Vec<u8>) {
    static CERTIFICATE: OnceLock<(CertificateDer<'static>, Vec<u8>)> = OnceLock::new();
    CERTIFICATE.get_or_init(|| {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
            .expect("a test certificate");
        (
            certified.cert.der().clone(),
            certified.signing_key.serialize_der(),
        )
    })
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Client TLS that trusts the test certificate only.
fn trusting_the_test_certificate() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(certificate().0.clone())
        .expect("the test certificate as a root");
    rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A JSON-RPC node on 127.0.0.1 replaying `recording` over WebSocket and HTTP on one port, with
/// TLS when `tls`. Runs until the handle is dropped.
async fn replaying_node(recording: Recording, tls: bool) -> (SocketAddr, ServerHandle) {
    let mut module = RpcModule::new(recording);
    module
        .register_method("state_call", |params, recording, _| {
            let mut args = params.sequence();
            let method: String = args.next()?;
            let data: String = args.next()?;
            let key = (method, data.trim_start_matches("0x").to_owned());
            match recording.state_calls.get(&key) {
                Some(bytes) => Ok(format!("0x{}", hex::encode(bytes))),
                // What a node answers for a runtime API it does not have.
                None => Err(ErrorObjectOwned::owned(
                    4003,
                    "Client error: Execution failed: Other: Exported method is not found",
                    None::<()>,
                )),
            }
        })
        .expect("register state_call");
    module
        .register_method("state_getRuntimeVersion", |_, recording, _| {
            recording.runtime_version.clone()
        })
        .expect("register state_getRuntimeVersion");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tls.then(|| {
        let (cert, key) = certificate();
        let config = rustls::ServerConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone())),
            )
            .expect("server TLS");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let (stop, handle) = stop_channel();
    let services = Server::builder().to_service_builder();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = stop.clone().shutdown() => return,
            };
            let Ok((tcp, _)) = accepted else { continue };
            let service = services.clone().build(module.clone(), stop.clone());
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        // A client that refused our certificate ends its handshake here.
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            let _ = jsonrpsee::server::serve(stream, service).await;
                        }
                    }
                    None => {
                        let _ = jsonrpsee::server::serve(tcp, service).await;
                    }
                }
            });
        }
    });
    (addr, handle)
}

#[tokio::test]
async fn the_recorded_metagraph_is_read_over_wss_https_ws_and_http() {
    for (scheme, tls) in [
        ("wss", true),
        ("https", true),
        ("ws", false),
        ("http", false),
    ] {
        let (addr, _node) = replaying_node(Recording::netuid_1(), tls).await;
        let endpoint = format!("{scheme}://{addr}");
        let client = SubtensorClient::connect_with_tls(
            &endpoint,
            TIMEOUT,
            Some(trusting_the_test_certificate()),
        )
        .await
        .unwrap_or_else(|err| panic!("{endpoint}: {err}"));
        let validators = client
            .validators(1)
            .await
            .unwrap_or_else(|err| panic!("{endpoint}: {err}"));
        assert_eq!(validators.len(), 1024, "{endpoint}");
        let first = &validators[0];
        assert_eq!(first.info.uid, 0);
        assert_eq!(
            first.info.hotkey,
            "5DkMmXtWf16RNdusZGCrJ7ca7ADPgRnZLVWCWbgA7s7sy1AQ"
        );
        assert_eq!(
            (first.info.ip.as_str(), first.info.port),
            ("192.222.59.109", 6028)
        );
        let chain = first.chain.expect("from the chain");
        assert_eq!(chain.axon_sdk_version().to_string(), "9.11.1");
        assert!(validators
            .iter()
            .enumerate()
            .all(|(i, v)| usize::from(v.info.uid) == i));
        let serving = validators.iter().filter(|v| v.info.is_serving()).count();
        assert_eq!(serving, 827, "{endpoint}");
        let permits: Vec<_> = validators
            .iter()
            .filter(|v| v.info.validator_permit)
            .collect();
        assert_eq!(permits.len(), 12, "{endpoint}");
        // Yuma gives trust and consensus to miners: of these validators only one holds any,
        // while ten hold validator trust (why puller.rank_by ties fall back to stake).
        let holding = |f: fn(&splatfleet_common::discovery::ChainStanding) -> f64| {
            permits
                .iter()
                .filter(|v| v.chain.as_ref().is_some_and(|c| f(c) > 0.0))
                .count()
        };
        assert_eq!(holding(|c| c.trust * c.consensus), 1);
        assert_eq!(holding(|c| c.validator_trust), 10);
        assert!(permits.iter().all(|v| v.info.stake >= 1000.0));
    }
}

#[tokio::test]
async fn a_layout_the_runtime_changed_is_a_typed_error_naming_the_call_and_the_runtime() {
    let mut recording = Recording::netuid_1();
    // A runtime that grew a field at the end of NeuronInfoLite: the bytes no longer match.
    if let Some(bytes) = recording
        .state_calls
        .get_mut(&(NEURONS_LITE.to_owned(), "0100".to_owned()))
    {
        bytes.push(0);
    }
    let (addr, _node) = replaying_node(recording, false).await;
    let client = SubtensorClient::connect(&format!("ws://{addr}"), TIMEOUT)
        .await
        .expect("connects");
    let err = client.validators(1).await.expect_err("the layout changed");
    match &err {
        SubtensorError::Layout {
            method, runtime, ..
        } => {
            assert_eq!(*method, NEURONS_LITE);
            assert_eq!(runtime, "node-subtensor spec version 343");
        }
        other => panic!("expected a layout error, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(NEURONS_LITE), "{message}");
    assert!(message.contains("runtime upgrade"), "{message}");
}

#[tokio::test]
async fn a_node_error_names_the_runtime_api_and_tls_is_verified() {
    let (addr, _node) = replaying_node(Recording::netuid_1(), true).await;
    let client = SubtensorClient::connect_with_tls(
        &format!("wss://{addr}"),
        TIMEOUT,
        Some(trusting_the_test_certificate()),
    )
    .await
    .expect("connects");
    // Netuid 17 was not recorded: the node answers as for a call it cannot serve.
    match client.validators(17).await {
        Err(SubtensorError::Rpc { method, code, .. }) => {
            assert_eq!(method, NEURONS_LITE);
            assert_eq!(code, 4003);
        }
        other => panic!("expected the node's error, got {other:?}"),
    }
    // With the system's roots, the test certificate is refused.
    for scheme in ["wss", "https"] {
        let endpoint = format!("{scheme}://{addr}");
        let refused = match SubtensorClient::connect(&endpoint, TIMEOUT).await {
            Err(err) => err,
            Ok(client) => client
                .validators(1)
                .await
                .expect_err("an untrusted certificate is refused"),
        };
        assert!(
            matches!(refused, SubtensorError::Transport { .. })
                && refused.to_string().to_lowercase().contains("certificate"),
            "{endpoint}: {refused:?}"
        );
    }
    assert!(matches!(
        SubtensorClient::connect("ftp://127.0.0.1:9944", TIMEOUT).await,
        Err(SubtensorError::BadEndpoint(_))
    ));
}
