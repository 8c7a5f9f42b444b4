//! Bad-input suite, validator side, at the dendrite: a simulated validator answers PullTask
//! with each kind of bad answer (`sim::misbehaviour`) and the dendrite must return the typed
//! error naming the problem, with the validator's own text cut short (errors are logged and
//! stored), then talk to the same validator normally once it behaves.

use std::{sync::Arc, time::Duration};

use splatfleet_common::{
    bittensor::{dendrite::MAX_ERROR_TEXT_CHARS, Dendrite, DendriteError, DendriteSettings},
    protocol::sn17::{ProtocolTask, PullTask},
};
use splatfleet_tests::sim::{
    setup::{self, MinerFixture, NetworkSettings},
    Misbehaviour, RuleSettings, ScoreMode, ScoreSettings,
};

const CALL: Duration = Duration::from_secs(10);
/// The dendrite's default response cap.
const CAP: usize = 8 * 1024 * 1024;
/// An error's text may quote the validator this much, plus our own words around it.
const MAX_ERROR_LEN: usize = MAX_ERROR_TEXT_CHARS * 4 + 256;

/// The shared fixture, so this file can give it its own methods.
struct Fixture(MinerFixture);

impl std::ops::Deref for Fixture {
    type Target = MinerFixture;
    fn deref(&self) -> &MinerFixture {
        &self.0
    }
}

async fn start() -> Fixture {
    let keys_dir = std::env::temp_dir().join(format!("splatfleet-bad-{}", uuid::Uuid::new_v4()));
    let settings = NetworkSettings {
        count: 1,
        base_port: 0,
        keys_dir,
        rules: RuleSettings::default(),
        scoring: ScoreSettings {
            mode: ScoreMode::PayloadSize,
            ..ScoreSettings::default()
        },
        image_fraction: 0.0,
        seed: 3,
        stake: 5_000.0,
    };
    Fixture(MinerFixture::start(&settings).await)
}

impl Fixture {
    /// One pull while the validator misbehaves as told; the error it gave.
    async fn pull_misbehaving(&self, how: Misbehaviour) -> DendriteError {
        self.network.validators[0].misbehave_on_pull(Some(how.clone()));
        let outcome = self
            .dendrite
            .call(&self.target, PullTask::default(), CALL)
            .await;
        self.network.validators[0].misbehave_on_pull(None);
        let err = match outcome {
            Err(err) => err,
            Ok(answer) => panic!("{how:?} was accepted: {:?}", answer.body.synapse),
        };
        let text = err.to_string();
        assert!(
            text.len() <= MAX_ERROR_LEN,
            "{how:?}: error text of {} bytes",
            text.len()
        );
        err
    }

    /// The validator still answers an honest pull with a task.
    async fn still_serves(&self) -> ProtocolTask {
        self.dendrite
            .call(&self.target, PullTask::default(), CALL)
            .await
            .expect("an honest answer after the bad one")
            .body
            .synapse
            .task
            .expect("a task")
    }
}

fn bad_response_reason(err: DendriteError) -> String {
    match err {
        DendriteError::BadResponse {
            reason, synapse, ..
        } => {
            assert_eq!(synapse, "PullTask");
            reason
        }
        other => panic!("expected BadResponse, got {other:?}"),
    }
}

#[tokio::test]
async fn an_oversized_chunked_answer_is_refused_at_the_cap() {
    let f = start().await;
    let err = f
        .pull_misbehaving(Misbehaviour::OversizedChunked {
            bytes: CAP + CAP / 4,
        })
        .await;
    assert!(
        matches!(err, DendriteError::ResponseTooLarge { limit: CAP, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("over the 8388608-byte cap"),
        "{err}"
    );
    f.still_serves().await;
}

#[tokio::test]
async fn a_ten_megabyte_prompt_is_refused_by_its_declared_length() {
    let f = start().await;
    let prompt = "a chair ".repeat(10 * 1024 * 1024 / 8);
    f.network.validators[0].hand_out_first(vec![ProtocolTask::text("t-10mb", prompt)]);
    let err = f
        .dendrite
        .call(&f.target, PullTask::default(), CALL)
        .await
        .expect_err("a 10 MB answer is over the cap");
    assert!(
        matches!(err, DendriteError::ResponseTooLarge { limit: CAP, .. }),
        "{err:?}"
    );
    // The validator assigned it anyway: a dendrite with a larger cap gets the same task.
    let miner = setup::load_or_create(&f.keys_dir, "miner").expect("miner wallet");
    let roomy = Dendrite::new(
        Arc::new(miner),
        DendriteSettings {
            max_response_bytes: 4 * CAP,
            ..DendriteSettings::default()
        },
    );
    let task = roomy
        .call(&f.target, PullTask::default(), CALL)
        .await
        .expect("pull under a larger cap")
        .body
        .synapse
        .task
        .expect("the assigned task");
    assert_eq!(task.id(), "t-10mb");
    assert!(task.prompt().len() >= 10 * 1024 * 1024);
}

#[tokio::test]
async fn truncated_json_is_a_bad_response() {
    let f = start().await;
    let reason = bad_response_reason(f.pull_misbehaving(Misbehaviour::TruncatedJson).await);
    assert!(reason.contains("EOF"), "{reason}");
    f.still_serves().await;
}

#[tokio::test]
async fn another_synapses_json_is_a_bad_response_naming_it() {
    let f = start().await;
    let reason = bad_response_reason(f.pull_misbehaving(Misbehaviour::WrongSynapse).await);
    assert!(reason.contains("names itself `SubmitResults`"), "{reason}");
    f.still_serves().await;
}

#[tokio::test]
async fn wrong_field_types_are_a_bad_response_that_does_not_quote_a_megabyte() {
    let f = start().await;
    let err = f
        .pull_misbehaving(Misbehaviour::WrongFieldTypes { chars: 1 << 20 })
        .await;
    let reason = bad_response_reason(err);
    assert!(
        reason.contains("untagged enum ProtocolTask") || reason.contains("invalid type"),
        "{reason}"
    );
    f.still_serves().await;
}

#[tokio::test]
async fn a_500_with_a_megabyte_message_keeps_only_its_start() {
    let f = start().await;
    let err = f
        .pull_misbehaving(Misbehaviour::HugeErrorMessage { chars: 1 << 20 })
        .await;
    match &err {
        DendriteError::ServerError {
            status: 500,
            message,
            ..
        } => {
            assert!(message.starts_with("EEEE"), "{message}");
            assert!(message.contains("bytes in all)"), "cut without saying so");
        }
        other => panic!("expected ServerError 500, got {other:?}"),
    }
    f.still_serves().await;
}

#[tokio::test]
async fn an_html_page_is_a_bad_response() {
    let f = start().await;
    let reason = bad_response_reason(f.pull_misbehaving(Misbehaviour::Html).await);
    assert!(reason.contains("expected value"), "{reason}");
    f.still_serves().await;
}
