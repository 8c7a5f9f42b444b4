//! SCALE: a `Vec<NeuronInfoLite>` and an `Option<SubnetState>` written byte by byte following
//! subtensor's struct definitions decode into the expected validators; the JSON-RPC client
//! fetches them from a stub node on 127.0.0.1 (answers recorded from the chain, over every
//! transport: `common/tests/discovery_transports.rs`).

use std::time::Duration;

use parity_scale_codec::{Compact, Encode as _};
use splatfleet_common::{
    bittensor::ss58,
    discovery::subtensor::{decode_neurons_lite, to_validators, SubtensorClient},
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const HOTKEY: [u8; 32] = [0xAA; 32];
const COLDKEY: [u8; 32] = [0xBB; 32];

/// SCALE compact integer, written by hand (single-, two- and four-byte modes).
fn compact(v: u64, out: &mut Vec<u8>) {
    if v < 1 << 6 {
        out.push((v as u8) << 2);
    } else if v < 1 << 14 {
        out.extend_from_slice(&(((v as u16) << 2) | 0b01).to_le_bytes());
    } else if v < 1 << 30 {
        out.extend_from_slice(&(((v as u32) << 2) | 0b10).to_le_bytes());
    } else {
        let bytes = v.to_le_bytes();
        let len = 8 - (v.leading_zeros() / 8) as usize;
        out.push((((len - 4) as u8) << 2) | 0b11);
        out.extend_from_slice(&bytes[..len]);
    }
}

/// One `NeuronInfoLite`, field by field in subtensor's declaration order.
fn neuron(uid: u16, ip: u32, port: u16, permit: bool, stake_rao: u64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&HOTKEY); // hotkey
    b.extend_from_slice(&COLDKEY); // coldkey
    compact(u64::from(uid), &mut b); // uid: Compact<u16>
    compact(17, &mut b); // netuid: Compact<NetUid>
    b.push(1); // active: bool
               // axon_info: AxonInfo { block u64, version u32, ip u128, port u16, ip_type u8, protocol u8,
               //                       placeholder1 u8, placeholder2 u8 }
    b.extend_from_slice(&5_000_000u64.to_le_bytes());
    b.extend_from_slice(&9_009_000u32.to_le_bytes());
    b.extend_from_slice(&u128::from(ip).to_le_bytes());
    b.extend_from_slice(&port.to_le_bytes());
    b.extend_from_slice(&[4, 4, 0, 0]);
    // prometheus_info: PrometheusInfo { block u64, version u32, ip u128, port u16, ip_type u8 }
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&0u128.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.push(0);
    // stake: Vec<(AccountId, Compact<AlphaBalance>)>, one entry
    compact(1, &mut b);
    b.extend_from_slice(&COLDKEY);
    compact(stake_rao, &mut b);
    compact(100, &mut b); // rank
    compact(123_456_789, &mut b); // emission: Compact<AlphaBalance>
    compact(7, &mut b); // incentive
    compact(8, &mut b); // consensus
    compact(9, &mut b); // trust
    compact(65_535, &mut b); // validator_trust
    compact(10, &mut b); // dividends
    compact(4_999_990, &mut b); // last_update: Compact<u64>
    b.push(u8::from(permit)); // validator_permit
    compact(11, &mut b); // pruning_score
    b
}

fn neurons_vector() -> Vec<u8> {
    let mut v = Vec::new();
    compact(2, &mut v);
    v.extend(neuron(
        0,
        u32::from(std::net::Ipv4Addr::new(10, 1, 2, 3)),
        8091,
        true,
        2_500 * 1_000_000_000,
    ));
    v.extend(neuron(1, 0, 0, false, 5_000_000_000));
    v
}

fn subnet_state(total_stake_rao: &[u64]) -> Vec<u8> {
    let n = total_stake_rao.len() as u64;
    let mut b = vec![1u8]; // Option::Some
    compact(17, &mut b); // netuid
    compact(n, &mut b); // hotkeys
    for _ in 0..n {
        b.extend_from_slice(&HOTKEY);
    }
    compact(n, &mut b); // coldkeys
    for _ in 0..n {
        b.extend_from_slice(&COLDKEY);
    }
    compact(n, &mut b); // active
    b.extend(std::iter::repeat_n(1u8, n as usize));
    compact(n, &mut b); // validator_permit
    b.extend(std::iter::repeat_n(1u8, n as usize));
    // pruning_score, last_update, emission, dividends, incentives, consensus, trust, rank,
    // block_at_registration, alpha_stake, tao_stake: all zero vectors of compacts
    for _ in 0..11 {
        compact(n, &mut b);
        for _ in 0..n {
            compact(0, &mut b);
        }
    }
    compact(n, &mut b); // total_stake
    for &s in total_stake_rao {
        compact(s, &mut b);
    }
    compact(0, &mut b); // emission_history: empty
    b
}

#[test]
fn hand_written_compacts_match_the_codec() {
    for v in [
        0u64,
        63,
        64,
        16_383,
        16_384,
        (1 << 30) - 1,
        1 << 30,
        u64::MAX,
    ] {
        let mut ours = Vec::new();
        compact(v, &mut ours);
        assert_eq!(ours, Compact(v).encode(), "compact {v}");
    }
}

#[test]
fn neuron_info_lite_vector_decodes_field_by_field() {
    let neurons = decode_neurons_lite(&neurons_vector()).expect("decode");
    assert_eq!(neurons.len(), 2);
    let n0 = &neurons[0];
    assert_eq!(n0.hotkey, HOTKEY);
    assert_eq!(n0.coldkey, COLDKEY);
    assert_eq!(n0.uid.0, 0);
    assert_eq!(n0.netuid.0, 17);
    assert!(n0.active);
    assert_eq!(n0.axon_info.port, 8091);
    assert_eq!(n0.axon_info.ip_string(), "10.1.2.3");
    assert_eq!(n0.axon_info.version, 9_009_000);
    assert_eq!(n0.stake, vec![(COLDKEY, Compact(2_500 * 1_000_000_000))]);
    assert_eq!(n0.emission.0, 123_456_789);
    assert_eq!(n0.validator_trust.0, 65_535);
    assert_eq!(n0.last_update.0, 4_999_990);
    assert!(n0.validator_permit);
    assert_eq!(n0.pruning_score.0, 11);
    assert!(!neurons[1].validator_permit);

    let validators = to_validators(&neurons, None);
    assert_eq!(validators[0].info.hotkey, ss58::encode(&HOTKEY, 42));
    assert_eq!(validators[0].info.stake, 2_500.0);
    assert_eq!(validators[1].info.ip, "0.0.0.0");
    assert!(validators[0].info.is_serving());
    assert!(!validators[1].info.is_serving());
    let chain = validators[0].chain.expect("from the chain");
    assert_eq!(chain.consensus, 8.0 / 65_535.0);
    assert_eq!(chain.trust, 9.0 / 65_535.0);
    assert_eq!(chain.validator_trust, 1.0);
    assert_eq!(chain.axon_version, 9_009_000);
    assert_eq!(chain.axon_sdk_version().to_string(), "9.9.0");

    // Trailing or missing bytes are errors, not silent truncation.
    let mut extra = neurons_vector();
    extra.push(0);
    assert!(decode_neurons_lite(&extra).is_err());
    let short = neurons_vector();
    assert!(decode_neurons_lite(&short[..short.len() - 1]).is_err());
}

/// A one-shot JSON-RPC stub: answers each `state_call` with the given SCALE bytes by method.
async fn stub_node(answers: Vec<(&'static str, Vec<u8>)>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut len = 0;
                loop {
                    let Ok(n) = stream.read(&mut buf[len..]).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    len += n;
                    let text = String::from_utf8_lossy(&buf[..len]).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let body = &text[end + 4..];
                        if body.ends_with('}') {
                            let (_, bytes) = answers
                                .iter()
                                .find(|(m, _)| body.contains(m))
                                .expect("known method");
                            // Answer with the request's own id, as a node does.
                            let id = serde_json::from_str::<serde_json::Value>(body)
                                .map(|request| request["id"].clone())
                                .unwrap_or_default();
                            let reply = format!(
                                r#"{{"jsonrpc":"2.0","id":{id},"result":"0x{}"}}"#,
                                hex::encode(bytes)
                            );
                            let response = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}",
                                reply.len()
                            );
                            let _ = stream.write_all(response.as_bytes()).await;
                            len = 0;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn subtensor_client_reads_validators_over_json_rpc() {
    let addr = stub_node(vec![
        ("NeuronInfoRuntimeApi_get_neurons_lite", neurons_vector()),
        (
            "SubnetInfoRuntimeApi_get_subnet_state",
            subnet_state(&[3_000 * 1_000_000_000, 0]),
        ),
    ])
    .await;
    let client = SubtensorClient::connect(&format!("http://{addr}"), Duration::from_secs(5))
        .await
        .expect("client");
    let validators = client.validators(17).await.expect("validators");
    assert_eq!(validators.len(), 2);
    assert_eq!(
        validators[0].info.stake, 3_000.0,
        "stake comes from SubnetState.total_stake"
    );
    assert_eq!(validators[0].info.port, 8091);
    assert!(validators[0].info.validator_permit);
    assert!(
        SubtensorClient::connect("ftp://example.invalid", Duration::from_secs(1))
            .await
            .is_err()
    );
}
