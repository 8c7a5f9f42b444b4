//! SN17 (404-GEN) validator protocol v45 (`neurons/common/protocol.py` at three-gen-subnet
//! commit 5fc61f1): the `PullTask` and `SubmitResults` synapses with their exact JSON names
//! and defaults, the task and feedback models, the miner license declaration and the license
//! signature a submission carries.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::bittensor::{nonce::wall_clock_ns, synapse::Synapse, Hotkey, KeyError, Verifier};

/// The declaration every submission signs (`common/miner_license_consent_declaration.py`).
pub const MINER_LICENSE_CONSENT_DECLARATION: &str = "I, as a miner on SN17, have obtained all licenses, rights and consents required to use, reproduce, modify, display, distribute and make available my submitted results to this subnet and its end users";

/// Validator version these types follow.
pub const VALIDATOR_VERSION: u32 = 45;

/// `compression` value for SPZ payloads, the only one v45 accepts.
pub const COMPRESSION_SPZ: i64 = 2;

fn new_task_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `Literal["text"]`: accepts only `"text"`, defaults to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TextKind {
    #[default]
    #[serde(rename = "text")]
    Text,
}

/// `Literal["image"]`: accepts only `"image"`, defaults to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageKind {
    #[default]
    #[serde(rename = "image")]
    Image,
}

/// A text-to-3D task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextTask {
    #[serde(rename = "type", default)]
    pub kind: TextKind,
    #[serde(default = "new_task_id")]
    pub id: String,
    #[serde(default)]
    pub prompt: String,
}

/// An image-to-3D task; `prompt` is base64 of the image bytes, kept verbatim because the
/// license signature covers the exact string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageTask {
    #[serde(rename = "type", default)]
    pub kind: ImageKind,
    #[serde(default = "new_task_id")]
    pub id: String,
    #[serde(default)]
    pub prompt: String,
}

/// `ProtocolTask = TextTask | ImageTask`: pydantic tries the text model first, so a task
/// without `type` is a text task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProtocolTask {
    Text(TextTask),
    Image(ImageTask),
}

/// The two task kinds, for records and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskType {
    Text,
    Image,
}

impl TaskType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
        }
    }
}

impl ProtocolTask {
    pub fn text(id: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self::Text(TextTask {
            kind: TextKind::Text,
            id: id.into(),
            prompt: prompt.into(),
        })
    }

    pub fn image(id: impl Into<String>, prompt_base64: impl Into<String>) -> Self {
        Self::Image(ImageTask {
            kind: ImageKind::Image,
            id: id.into(),
            prompt: prompt_base64.into(),
        })
    }

    pub fn id(&self) -> &str {
        match self {
            Self::Text(t) => &t.id,
            Self::Image(t) => &t.id,
        }
    }

    pub fn prompt(&self) -> &str {
        match self {
            Self::Text(t) => &t.prompt,
            Self::Image(t) => &t.prompt,
        }
    }

    pub fn task_type(&self) -> TaskType {
        match self {
            Self::Text(_) => TaskType::Text,
            Self::Image(_) => TaskType::Image,
        }
    }

    /// Why the validation service could not score this task's prompt, if it could not: such
    /// a task is refused at the pull, without recording or generating it.
    pub fn prompt_problem(&self) -> Option<String> {
        match self {
            Self::Text(task) => {
                let chars = task.prompt.chars().count();
                (chars > MAX_TEXT_PROMPT_CHARS).then(|| {
                    format!(
                        "text prompt of {chars} characters (the validation service scores at \
                         most {MAX_TEXT_PROMPT_CHARS})"
                    )
                })
            }
            Self::Image(_) => None,
        }
    }
}

/// The longest text prompt the validation service accepts: its request's `prompt` has
/// `max_length` 1024 (`../shared/VALIDATOR_SCORING.md`, §0), so a longer one cannot score.
pub const MAX_TEXT_PROMPT_CHARS: usize = 1024;

/// What a validator says about a submission.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    #[serde(default)]
    pub validation_failed: bool,
    #[serde(default)]
    pub task_fidelity_score: f64,
    #[serde(default)]
    pub average_fidelity_score: f64,
    #[serde(default)]
    pub generations_within_the_window: i64,
    #[serde(default)]
    pub current_duel_rating: f64,
    #[serde(default)]
    pub current_miner_reward: f64,
}

fn default_threshold() -> f64 {
    0.6
}

/// Miner asks a validator for a task; the answer carries it (or a cooldown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullTask {
    #[serde(default)]
    pub task: Option<ProtocolTask>,
    #[serde(default = "default_threshold")]
    pub validation_threshold: f64,
    /// Seconds of work that do not lengthen the cooldown.
    #[serde(default)]
    pub throttle_period: i64,
    /// Unix seconds before which pulling again counts as a violation.
    #[serde(default)]
    pub cooldown_until: i64,
    #[serde(default)]
    pub cooldown_violations: i64,
}

impl Default for PullTask {
    fn default() -> Self {
        Self {
            task: None,
            validation_threshold: default_threshold(),
            throttle_period: 0,
            cooldown_until: 0,
            cooldown_violations: 0,
        }
    }
}

impl Synapse for PullTask {
    const NAME: &'static str = "PullTask";
    const REQUIRED_FIELDS: &'static [(&'static str, &'static str)] = &[];
}

fn default_data_format() -> String {
    "ply".into()
}

fn default_compression() -> i64 {
    COMPRESSION_SPZ
}

/// Miner hands in a result (base64 SPZ; empty string gives the task up without penalty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitResults {
    /// Deprecated in v45; sent as `null`.
    #[serde(default)]
    pub task: Option<ProtocolTask>,
    #[serde(default)]
    pub task_id: String,
    pub results: String,
    #[serde(default = "default_data_format")]
    pub data_format: String,
    #[serde(default)]
    pub data_ver: i64,
    #[serde(default = "default_compression")]
    pub compression: i64,
    /// Unix nanoseconds, part of the license signature.
    pub submit_time: u64,
    /// base64 of the sr25519 license signature.
    pub signature: String,
    #[serde(default)]
    pub feedback: Option<Feedback>,
    #[serde(default)]
    pub cooldown_until: i64,
}

impl SubmitResults {
    /// A submission for `task_id` with the protocol defaults.
    pub fn new(
        task_id: impl Into<String>,
        results: String,
        submit_time: u64,
        signature: String,
    ) -> Self {
        Self {
            task: None,
            task_id: task_id.into(),
            results,
            data_format: default_data_format(),
            data_ver: 0,
            compression: COMPRESSION_SPZ,
            submit_time,
            signature,
            feedback: None,
            cooldown_until: 0,
        }
    }

    /// The one way the fleet builds a submission to send: for `task_id`, signed now by `miner`
    /// for `validator_hotkey` with the license signature over the exact prompt (v45 checks it
    /// before it looks at the results, empty ones included), the SPZ as base64 (`None`: an
    /// empty string, which gives the task up without penalty). Each send is signed afresh.
    pub fn signed(
        miner: &Hotkey,
        validator_hotkey: &str,
        task_id: &str,
        prompt: &str,
        spz: Option<&[u8]>,
    ) -> Self {
        let submit_time = wall_clock_ns();
        let signature = sign_license(miner, submit_time, prompt, validator_hotkey);
        let results = spz
            .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes))
            .unwrap_or_default();
        Self::new(task_id, results, submit_time, signature)
    }

    /// The id the validator uses: `task_id`, or the deprecated `task.id` when `task_id` is empty
    /// (`model_post_init`).
    pub fn effective_task_id(&self) -> &str {
        match (&self.task_id, &self.task) {
            (id, Some(task)) if id.is_empty() => task.id(),
            (id, _) => id,
        }
    }
}

impl Synapse for SubmitResults {
    const NAME: &'static str = "SubmitResults";
    const REQUIRED_FIELDS: &'static [(&'static str, &'static str)] = &[
        ("results", "\"\""),
        ("submit_time", "0"),
        ("signature", "\"\""),
    ];
}

/// The message a license signature covers:
/// `declaration ‖ submit_time ‖ prompt ‖ validator_hotkey ‖ miner_hotkey`.
pub fn license_message(
    submit_time_ns: u64,
    prompt: &str,
    validator_hotkey: &str,
    miner_hotkey: &str,
) -> String {
    format!("{MINER_LICENSE_CONSENT_DECLARATION}{submit_time_ns}{prompt}{validator_hotkey}{miner_hotkey}")
}

/// base64 of the miner's sr25519 signature over [`license_message`].
pub fn sign_license(
    miner: &Hotkey,
    submit_time_ns: u64,
    prompt: &str,
    validator_hotkey: &str,
) -> String {
    let message = license_message(submit_time_ns, prompt, validator_hotkey, miner.ss58());
    base64::engine::general_purpose::STANDARD.encode(miner.sign(message.as_bytes()))
}

/// Why a license signature was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum LicenseError {
    #[error("license signature is not valid base64")]
    NotBase64,
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Checks a license signature as the validator does; `Ok(false)` is a well-formed signature
/// that does not match.
pub fn verify_license(
    signature_b64: &str,
    submit_time_ns: u64,
    prompt: &str,
    validator_hotkey: &str,
    miner_hotkey: &str,
) -> Result<bool, LicenseError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(signature_b64.as_bytes())
        .map_err(|_| LicenseError::NotBase64)?;
    let verifier = Verifier::from_ss58(miner_hotkey)?;
    let message = license_message(submit_time_ns, prompt, validator_hotkey, miner_hotkey);
    Ok(verifier.verify(message.as_bytes(), &raw)?)
}

#[cfg(test)]
mod signed_tests {
    use super::*;

    #[test]
    fn text_prompts_over_the_validation_services_limit_are_a_problem() {
        let at_limit = ProtocolTask::text("t", "é".repeat(MAX_TEXT_PROMPT_CHARS));
        assert_eq!(at_limit.prompt_problem(), None, "characters, not bytes");
        let over = ProtocolTask::text("t", "a".repeat(MAX_TEXT_PROMPT_CHARS + 1));
        let problem = over.prompt_problem().expect("over the limit");
        assert!(problem.contains("1025 characters"), "{problem}");
        assert_eq!(
            ProtocolTask::image("t", "x".repeat(5000)).prompt_problem(),
            None
        );
    }

    #[test]
    fn a_signed_submission_carries_base64_spz_and_a_license_the_validator_accepts() {
        let (miner, _) = Hotkey::generate();
        let (validator, _) = Hotkey::generate();
        let submission =
            SubmitResults::signed(&miner, validator.ss58(), "t-1", "a red chair", Some(b"spz"));
        assert_eq!(submission.task_id, "t-1");
        assert_eq!(submission.results, "c3B6");
        assert_eq!(submission.compression, 2);
        let ok = verify_license(
            &submission.signature,
            submission.submit_time,
            "a red chair",
            validator.ss58(),
            miner.ss58(),
        )
        .expect("decodable signature");
        assert!(ok);
        let empty = SubmitResults::signed(&miner, validator.ss58(), "t-1", "a red chair", None);
        assert!(empty.results.is_empty());
    }
}
