//! The dendrite against `splatfleet-sim validators` in-process on 127.0.0.1 with free ports:
//! pull, submit (accepted, rejected with penalty, empty, bad license), the axon's 401/403/404/500
//! answers, the response cap, timeouts, refused connections, and the cooldown with time scaling.

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use serde_json::Value;
use splatfleet_common::{
    bittensor::{
        nonce::wall_clock_ns, synapse::Synapse, AxonTarget, Dendrite, DendriteError,
        DendriteSettings, Hotkey,
    },
    discovery::static_list::StaticValidatorList,
    protocol::sn17::{ProtocolTask, PullTask, SubmitResults},
};
use splatfleet_tests::sim::{
    events::EventLog,
    setup::{self, MinerFixture, NetworkSettings},
    RuleSettings, ScoreMode, ScoreSettings,
};

const CALL: Duration = Duration::from_secs(5);

/// The shared fixture, so this file can give it its own methods.
struct Fixture(MinerFixture);

impl std::ops::Deref for Fixture {
    type Target = MinerFixture;
    fn deref(&self) -> &MinerFixture {
        &self.0
    }
}

async fn start(count: u16, time_scale: f64) -> Fixture {
    let keys_dir = std::env::temp_dir().join(format!("splatfleet-sim-{}", uuid::Uuid::new_v4()));
    let settings = NetworkSettings {
        count,
        base_port: 0,
        keys_dir,
        rules: RuleSettings {
            time_scale,
            ..RuleSettings::default()
        },
        // These tests send arbitrary bytes of chosen sizes: score by size.
        scoring: ScoreSettings {
            mode: ScoreMode::PayloadSize,
            reference_bytes: 100_000.0,
            noise: 0.0,
            ..ScoreSettings::default()
        },
        image_fraction: 0.5,
        seed: 7,
        stake: 5_000.0,
    };
    Fixture(MinerFixture::start(&settings).await)
}

impl Fixture {
    async fn pull(&self) -> PullTask {
        self.dendrite
            .call(&self.target, PullTask::default(), CALL)
            .await
            .expect("pull")
            .body
            .synapse
    }

    /// Signed as the fleet signs (the one constructor); tests that forge change it after.
    fn submission(&self, task: &ProtocolTask, payload: &[u8]) -> SubmitResults {
        SubmitResults::signed(
            self.dendrite.hotkey(),
            &self.target.hotkey,
            task.id(),
            task.prompt(),
            (!payload.is_empty()).then_some(payload),
        )
    }

    async fn submit(&self, submission: SubmitResults) -> SubmitResults {
        let response = self
            .dendrite
            .call(&self.target, submission, CALL)
            .await
            .expect("submit");
        response.body.synapse
    }

    fn events(&self, kind: &str) -> Vec<Value> {
        self.network.events.of_kind(kind)
    }
}

fn expect_status(result: Result<impl std::fmt::Debug, DendriteError>, status: u16) -> String {
    match result {
        Err(e) if e.status() == Some(status) => match e {
            DendriteError::Rejected { message, .. }
            | DendriteError::ServerError { message, .. } => message,
            _ => String::new(),
        },
        other => panic!("expected HTTP {status}, got {other:?}"),
    }
}

#[tokio::test]
async fn sim_writes_wallets_and_a_loadable_validator_list() {
    let f = start(3, 1.0).await;
    let list = StaticValidatorList::load(&f.keys_dir.join("validators.toml")).expect("list");
    assert_eq!(list.validators.len(), 3);
    for (i, v) in list.validators.iter().enumerate() {
        assert_eq!(v.hotkey, f.network.validators[i].hotkey.ss58());
        assert_eq!(v.ip, "127.0.0.1");
    }
    let reloaded = setup::load_or_create(&f.keys_dir, "validator-1").expect("reload");
    assert_eq!(reloaded.ss58(), list.validators[1].hotkey);
}

#[tokio::test]
async fn events_are_appended_to_the_json_lines_file() {
    let keys_dir = std::env::temp_dir().join(format!("splatfleet-ev-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&keys_dir).expect("dir");
    let path = keys_dir.join("events.jsonl");
    let settings = NetworkSettings {
        count: 1,
        base_port: 0,
        keys_dir: keys_dir.clone(),
        rules: RuleSettings::default(),
        scoring: ScoreSettings::default(),
        image_fraction: 0.0,
        seed: 1,
        stake: 1.0,
    };
    let network = setup::start(&settings, EventLog::to_file(&path).expect("log"))
        .await
        .expect("sim");
    let miner = setup::load_or_create(&keys_dir, "miner").expect("miner");
    let dendrite = Dendrite::new(Arc::new(miner), DendriteSettings::default());
    let target = network.list.validators[0].axon();
    let task = dendrite
        .call(&target, PullTask::default(), CALL)
        .await
        .expect("pull");
    let task = task.body.synapse.task.expect("task");
    let _ = dendrite
        .call(&target, PullTask::default(), CALL)
        .await
        .expect("pull again");
    let text = std::fs::read_to_string(&path).expect("events file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["event"], "pull");
    assert_eq!(lines[0]["task_id"], task.id());
    assert_eq!(lines[0]["task_type"], "text");
    assert_eq!(lines[1]["outcome"], "same");
    assert_eq!(lines[0]["miner"], dendrite.hotkey().ss58());
    drop(network);
    std::fs::remove_dir_all(&keys_dir).ok();
}

#[tokio::test]
async fn pull_returns_one_task_per_miner_until_it_is_submitted() {
    let f = start(1, 1.0).await;
    let first = f.pull().await;
    let task = first.task.clone().expect("task");
    assert_eq!(first.validation_threshold, 0.6);
    assert_eq!(first.throttle_period, 30);
    if let ProtocolTask::Image(image) = &task {
        let png = base64::engine::general_purpose::STANDARD
            .decode(&image.prompt)
            .expect("b64");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    }
    let again = f.pull().await;
    assert_eq!(again.task.as_ref().map(ProtocolTask::id), Some(task.id()));
    let pulls = f.events("pull");
    assert_eq!(pulls[0]["outcome"], "new");
    assert_eq!(pulls[1]["outcome"], "same");
    assert_eq!(pulls[1]["task_id"], task.id());
}

#[tokio::test]
async fn accepted_submission_gets_feedback_and_the_throttled_cooldown() {
    let f = start(1, 1.0).await;
    let task = f.pull().await.task.expect("task");
    let before = wall_clock_ns() / 1_000_000_000;
    let out = f.submit(f.submission(&task, &vec![7u8; 400_000])).await;
    let feedback = out.feedback.expect("feedback");
    assert!(!feedback.validation_failed);
    assert!(feedback.task_fidelity_score > 0.9, "{feedback:?}");
    assert_eq!(feedback.generations_within_the_window, 1);
    assert!(out.results.is_empty() && out.signature.is_empty());
    // Finished within the throttle: cooldown_until = assigned + 300.
    let until = out.cooldown_until as u64;
    assert!(
        (before + 299..=before + 301).contains(&until),
        "cooldown_until {until} vs now {before}"
    );
    let verdicts = f.events("verdict");
    assert_eq!(verdicts.last().expect("verdict")["outcome"], "accepted");
    assert!(f.events("penalty").is_empty());

    // Pulling during the cooldown counts a violation and hands out nothing.
    let during = f.pull().await;
    assert!(during.task.is_none());
    assert_eq!(during.cooldown_violations, 1);
    assert_eq!(during.cooldown_until, out.cooldown_until);
    assert_eq!(f.events("violation").len(), 1);
}

#[tokio::test]
async fn low_score_and_bad_license_cost_the_penalty_but_empty_results_do_not() {
    let f = start(1, 1.0).await;
    let now = wall_clock_ns() / 1_000_000_000;

    let task = f.pull().await.task.expect("task");
    let out = f.submit(f.submission(&task, &[1u8; 1_000])).await;
    assert!(out.feedback.is_some());
    assert!(
        out.cooldown_until as u64 >= now + 899,
        "low score: 300 + 600 s"
    );
    let penalty = f.events("penalty");
    assert_eq!(penalty.len(), 1);
    assert_eq!(penalty[0]["reason"], "low_score");

    let f = start(1, 1.0).await;
    let task = f.pull().await.task.expect("task");
    let mut forged = f.submission(&task, &vec![7u8; 400_000]);
    forged.submit_time += 1; // signature no longer covers the sent time
    let out = f.submit(forged).await;
    assert!(
        out.cooldown_until as u64 >= now + 899,
        "bad signature: 300 + 600 s"
    );
    assert_eq!(f.events("penalty")[0]["reason"], "bad_signature");

    let f = start(1, 1.0).await;
    let task = f.pull().await.task.expect("task");
    let out = f.submit(f.submission(&task, &[])).await;
    let until = out.cooldown_until as u64;
    assert!(
        until <= now + 302,
        "empty result: normal cooldown only, got {until}"
    );
    assert!(f.events("penalty").is_empty());
    assert_eq!(f.events("verdict")[0]["outcome"], "empty");
}

#[tokio::test]
async fn replayed_nonce_is_401() {
    let f = start(1, 1.0).await;
    let prepared = f
        .dendrite
        .prepare(&f.target, PullTask::default(), CALL)
        .expect("prepare");
    f.dendrite
        .send_prepared::<PullTask>(&f.target, prepared.clone(), CALL)
        .await
        .expect("first use");
    let message = expect_status(
        f.dendrite
            .send_prepared::<PullTask>(&f.target, prepared, CALL)
            .await,
        401,
    );
    assert_eq!(
        message,
        "Not Verified with error: Nonce is too old, a newer one was last processed"
    );
}

#[tokio::test]
async fn wrong_validator_hotkey_is_401() {
    let f = start(2, 1.0).await;
    let mut wrong = f.target.clone();
    wrong.hotkey = f.network.validators[1].hotkey.ss58().to_owned();
    let message = expect_status(
        f.dendrite.call(&wrong, PullTask::default(), CALL).await,
        401,
    );
    assert!(
        message.starts_with("Not Verified with error: Signature mismatch with "),
        "{message}"
    );
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Forward {}

impl Synapse for Forward {
    const NAME: &'static str = "Forward";
    const REQUIRED_FIELDS: &'static [(&'static str, &'static str)] = &[];
}

#[tokio::test]
async fn unknown_synapse_is_404() {
    let f = start(1, 1.0).await;
    let message = expect_status(f.dendrite.call(&f.target, Forward {}, CALL).await, 404);
    assert_eq!(
        message,
        "Synapse name 'Forward' not found. Available synapses ['Synapse', 'PullTask', 'SubmitResults']"
    );
}

#[tokio::test]
async fn submit_without_a_task_is_blacklisted_403() {
    let f = start(1, 1.0).await;
    let submission = SubmitResults::new("nope", String::new(), 1, String::new());
    let message = expect_status(f.dendrite.call(&f.target, submission, CALL).await, 403);
    assert!(
        message.starts_with(
            "Forbidden. Key is blacklisted: [0] submitted results while having no task"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn response_over_the_cap_is_an_error() {
    let f = start(1, 1.0).await;
    let settings = DendriteSettings {
        max_response_bytes: 256,
        ..DendriteSettings::default()
    };
    let miner = setup::load_or_create(&f.keys_dir, "miner").expect("miner");
    let small = Dendrite::new(Arc::new(miner), settings);
    match small.call(&f.target, PullTask::default(), CALL).await {
        Err(DendriteError::ResponseTooLarge { limit: 256, .. }) => {}
        other => panic!("expected ResponseTooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn silent_server_times_out_and_closed_port_is_a_connect_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream); // accept, never answer
        }
    });
    let hotkey = Arc::new(Hotkey::from_seed_bytes(&[0x11; 32]).expect("seed"));
    let dendrite = Dendrite::new(hotkey, DendriteSettings::default());
    let validator = Hotkey::from_seed_bytes(&[0x22; 32]).expect("seed");
    let target = AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey: validator.ss58().into(),
    };
    let started = std::time::Instant::now();
    match dendrite
        .call(&target, PullTask::default(), Duration::from_millis(300))
        .await
    {
        Err(DendriteError::Timeout { .. }) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    holder.abort();

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    let target = AxonTarget {
        port: closed_port,
        ..target
    };
    match dendrite.call(&target, PullTask::default(), CALL).await {
        Err(DendriteError::Connect { .. }) => {}
        other => panic!("expected Connect, got {other:?}"),
    }
}

#[tokio::test]
async fn tampered_body_hash_header_is_500_and_stale_nonce_is_401() {
    let f = start(1, 1.0).await;
    let mut prepared = f
        .dendrite
        .prepare(&f.target, PullTask::default(), CALL)
        .expect("prepare");
    // Change the body-hash header: the signature no longer matches it.
    for (k, v) in prepared.headers.iter_mut() {
        if k == "computed_body_hash" {
            *v = "00".repeat(32);
        }
    }
    expect_status(
        f.dendrite
            .send_prepared::<PullTask>(&f.target, prepared, CALL)
            .await,
        401,
    );

    // A correctly signed request whose body hash header disagrees with the body: the axon's
    // body-integrity dependency raises, which the SDK answers with 500.
    let mut prepared = f
        .dendrite
        .prepare(&f.target, PullTask::default(), CALL)
        .expect("prepare");
    let miner = setup::load_or_create(&f.keys_dir, "miner").expect("miner");
    let fake_hash = "ff".repeat(32);
    let message = format!(
        "{}.{}.{}.{}.{}",
        prepared.nonce,
        miner.ss58(),
        f.target.hotkey,
        f.dendrite.uuid(),
        fake_hash
    );
    for (k, v) in prepared.headers.iter_mut() {
        if k == "computed_body_hash" {
            v.clone_from(&fake_hash);
        }
        if k == "bt_header_dendrite_signature" {
            *v = miner.sign_hex(message.as_bytes());
        }
    }
    let message = expect_status(
        f.dendrite
            .send_prepared::<PullTask>(&f.target, prepared, CALL)
            .await,
        500,
    );
    assert!(message.starts_with("Internal Server Error #"), "{message}");

    // A fresh dendrite identity with a nonce older than 4 s + timeout.
    let mut stale = f
        .dendrite
        .prepare(&f.target, PullTask::default(), CALL)
        .expect("prepare");
    let old = wall_clock_ns() - 60_000_000_000;
    let other = Dendrite::new(Arc::new(miner), DendriteSettings::default());
    let uuid = other.uuid().to_owned();
    let sign_message = format!(
        "{old}.{}.{}.{uuid}.{}",
        other.hotkey().ss58(),
        f.target.hotkey,
        sha3_empty()
    );
    for (k, v) in stale.headers.iter_mut() {
        match k.as_str() {
            "bt_header_dendrite_nonce" => *v = old.to_string(),
            "bt_header_dendrite_uuid" => v.clone_from(&uuid),
            "bt_header_dendrite_signature" => *v = other.hotkey().sign_hex(sign_message.as_bytes()),
            _ => {}
        }
    }
    let message = expect_status(
        other
            .send_prepared::<PullTask>(&f.target, stale, CALL)
            .await,
        401,
    );
    assert!(
        message.starts_with(
            "Not Verified with error: Nonce is too old: acceptable delta is 9.00 seconds"
        ),
        "{message}"
    );
}

fn sha3_empty() -> &'static str {
    "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"
}

#[tokio::test]
async fn time_scale_shortens_the_cooldown() {
    // 300 s / 150 = 2 s cooldown, 0.2 s throttle.
    let f = start(1, 150.0).await;
    let task = f.pull().await.task.expect("task");
    let out = f.submit(f.submission(&task, &vec![7u8; 400_000])).await;
    assert!(f.pull().await.task.is_none(), "still cooling down");
    let wait_until = out.cooldown_until as u64 * 1_000_000_000;
    let now = wall_clock_ns();
    tokio::time::sleep(Duration::from_nanos(
        wait_until.saturating_sub(now) + 50_000_000,
    ))
    .await;
    let next = f.pull().await.task.expect("new task after the cooldown");
    assert_ne!(next.id(), task.id());
}
