//! SN17 protocol JSON: bodies written by hand from the SDK's `Synapse`/`TerminalInfo` field lists
//! and `neurons/common/protocol.py` parse, keep every value, and serialize back to the same JSON.

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use splatfleet_common::{
    bittensor::{
        synapse::{Synapse, SynapseBody},
        AxonTarget, Dendrite, DendriteSettings, Hotkey,
    },
    protocol::sn17::{
        license_message, sign_license, verify_license, ProtocolTask, PullTask, SubmitResults,
        TaskType, MINER_LICENSE_CONSENT_DECLARATION,
    },
};

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/sn17/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

fn round_trip<S: Synapse>(name: &str) -> SynapseBody<S> {
    let original = fixture(name);
    let parsed: SynapseBody<S> = serde_json::from_value(original.clone()).expect("parse");
    let back = serde_json::to_value(&parsed).expect("serialize");
    assert_eq!(back, original, "{name} does not round-trip");
    parsed
}

#[test]
fn pull_task_bodies_parse_and_round_trip() {
    let request = round_trip::<PullTask>("pull_task_request");
    assert_eq!(request.synapse, PullTask::default());
    assert_eq!(
        request.dendrite.as_ref().and_then(|d| d.nonce),
        Some(1_733_800_000_123_456_789)
    );

    let text = round_trip::<PullTask>("pull_task_response_text");
    let task = text.synapse.task.expect("task");
    assert_eq!(task.task_type(), TaskType::Text);
    assert_eq!(task.prompt(), "a red wooden chair with a curved back");
    assert_eq!(text.synapse.throttle_period, 30);
    assert_eq!(text.axon.as_ref().and_then(|a| a.status_code), Some(200));

    let image = round_trip::<PullTask>("pull_task_response_image");
    assert_eq!(
        image.synapse.task.as_ref().map(ProtocolTask::task_type),
        Some(TaskType::Image)
    );

    let cooldown = round_trip::<PullTask>("pull_task_response_cooldown");
    assert!(cooldown.synapse.task.is_none());
    assert_eq!(cooldown.synapse.cooldown_until, 1_733_800_290);
    assert_eq!(cooldown.synapse.cooldown_violations, 3);
}

#[test]
fn submit_results_bodies_parse_and_round_trip() {
    let request = round_trip::<SubmitResults>("submit_results_request");
    assert_eq!(request.synapse.compression, 2);
    assert_eq!(request.synapse.data_format, "ply");
    assert_eq!(request.synapse.submit_time, 1_733_800_012_345_678_901);
    assert!(request.synapse.feedback.is_none());

    let response = round_trip::<SubmitResults>("submit_results_response");
    let feedback = response.synapse.feedback.expect("feedback");
    assert_eq!(feedback.generations_within_the_window, 12);
    assert!((feedback.task_fidelity_score - 0.8125).abs() < 1e-12);
    assert_eq!(response.synapse.cooldown_until, 1_733_800_290);

    let deprecated = round_trip::<SubmitResults>("submit_results_request_deprecated_task");
    assert_eq!(
        deprecated.synapse.effective_task_id(),
        "0b1c4f5e-2d7a-4c1e-9a51-3f8b2e6d9c10"
    );
}

#[test]
fn defaults_fill_missing_fields_as_pydantic_does() {
    let pull: SynapseBody<PullTask> = serde_json::from_str("{}").expect("empty pull");
    assert_eq!(pull.synapse.validation_threshold, 0.6);
    assert_eq!(pull.timeout, Some(12.0));
    assert_eq!(pull.computed_body_hash.as_deref(), Some(""));
    // A task without `type` is a text task, as pydantic's union tries TextTask first.
    let task: ProtocolTask = serde_json::from_str(r#"{"id": "x", "prompt": "p"}"#).expect("task");
    assert_eq!(task.task_type(), TaskType::Text);
    let bad: Result<ProtocolTask, _> = serde_json::from_str(r#"{"type": "video", "id": "x"}"#);
    assert!(bad.is_err());
    // results, submit_time and signature are required.
    let missing: Result<SynapseBody<SubmitResults>, _> =
        serde_json::from_str(r#"{"task_id": "t", "results": ""}"#);
    assert!(missing.is_err());
}

#[test]
fn dendrite_request_has_exactly_the_sdk_fields_and_headers() {
    let miner = Arc::new(Hotkey::from_seed_bytes(&[0x11; 32]).expect("seed"));
    let validator = Hotkey::from_seed_bytes(&[0x22; 32]).expect("seed");
    let dendrite = Dendrite::new(miner.clone(), DendriteSettings::default());
    let target = AxonTarget {
        ip: "198.51.100.20".into(),
        port: 8091,
        hotkey: validator.ss58().into(),
    };
    let prepared = dendrite
        .prepare(&target, PullTask::default(), Duration::from_secs(12))
        .expect("prepare");
    assert_eq!(prepared.url, "http://198.51.100.20:8091/PullTask");
    let body: Value = serde_json::from_slice(&prepared.body).expect("body JSON");
    assert_same_keys(&body, &fixture("pull_task_request"), "$");
    assert_eq!(body["computed_body_hash"], "");
    assert_eq!(body["dendrite"]["version"], 9_009_000);
    assert_eq!(body["axon"]["hotkey"], validator.ss58());

    let names: Vec<&str> = prepared.headers.iter().map(|(k, _)| k.as_str()).collect();
    let header = |n: &str| {
        prepared
            .headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    for expected in [
        "name",
        "timeout",
        "bt_header_axon_ip",
        "bt_header_axon_port",
        "bt_header_axon_hotkey",
        "bt_header_dendrite_ip",
        "bt_header_dendrite_version",
        "bt_header_dendrite_nonce",
        "bt_header_dendrite_uuid",
        "bt_header_dendrite_hotkey",
        "bt_header_dendrite_signature",
        "header_size",
        "total_size",
        "computed_body_hash",
    ] {
        assert!(names.contains(&expected), "missing header {expected}");
    }
    assert_eq!(names.len(), 14, "unexpected headers: {names:?}");
    assert_eq!(header("name"), Some("PullTask"));
    assert_eq!(header("timeout"), Some("12.0"));
    assert_eq!(
        header("computed_body_hash"),
        Some("a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a")
    );
    let signature = header("bt_header_dendrite_signature").expect("signature");
    assert!(signature.starts_with("0x") && signature.len() == 130);
    let message = format!(
        "{}.{}.{}.{}.{}",
        prepared.nonce,
        miner.ss58(),
        validator.ss58(),
        dendrite.uuid(),
        "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"
    );
    let verifier = splatfleet_common::bittensor::Verifier::from_ss58(miner.ss58()).expect("v");
    assert!(verifier
        .verify_hex(message.as_bytes(), signature)
        .expect("hex"));

    let submit = SubmitResults::new("t", String::new(), 1, String::new());
    let prepared = dendrite
        .prepare(&target, submit, Duration::from_secs(300))
        .expect("prepare");
    let header = |n: &str| {
        prepared
            .headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("timeout"), Some("300.0"));
    assert_eq!(header("bt_header_input_obj_results"), Some("IiI="));
    assert_eq!(header("bt_header_input_obj_submit_time"), Some("MA=="));
    assert_eq!(header("bt_header_input_obj_signature"), Some("IiI="));
    let body: Value = serde_json::from_slice(&prepared.body).expect("body JSON");
    assert_same_keys(&body, &fixture("submit_results_request"), "$");
}

fn assert_same_keys(actual: &Value, expected: &Value, at: &str) {
    if let (Some(a), Some(e)) = (actual.as_object(), expected.as_object()) {
        let ak: Vec<&String> = a.keys().collect();
        let ek: Vec<&String> = e.keys().collect();
        assert_eq!(ak, ek, "keys differ at {at}");
        for (k, v) in a {
            if let Some(ev) = e.get(k) {
                assert_same_keys(v, ev, &format!("{at}.{k}"));
            }
        }
    }
}

#[test]
fn license_signature_covers_declaration_time_prompt_and_both_hotkeys() {
    let miner = Hotkey::from_seed_bytes(&[0x11; 32]).expect("seed");
    let validator = Hotkey::from_seed_bytes(&[0x22; 32]).expect("seed");
    let message = license_message(42, "a chair", validator.ss58(), miner.ss58());
    assert_eq!(
        message,
        format!(
            "{MINER_LICENSE_CONSENT_DECLARATION}42a chair{}{}",
            validator.ss58(),
            miner.ss58()
        )
    );
    let signature = sign_license(&miner, 42, "a chair", validator.ss58());
    assert!(verify_license(&signature, 42, "a chair", validator.ss58(), miner.ss58()).expect("ok"));
    assert!(
        !verify_license(&signature, 43, "a chair", validator.ss58(), miner.ss58()).expect("ok")
    );
    assert!(
        !verify_license(&signature, 42, "a table", validator.ss58(), miner.ss58()).expect("ok")
    );
    assert!(verify_license("not base64!", 42, "a chair", validator.ss58(), miner.ss58()).is_err());
}
