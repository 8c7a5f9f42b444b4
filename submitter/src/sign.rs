//! Building a signed `SubmitResults`: the SPZ as base64 (an empty string for an empty
//! result), `compression = 2`, `submit_time` in nanoseconds, and the license signature over
//! the declaration, the submit time, the exact prompt and both hotkeys (DESIGN.md §5). Each
//! send is signed afresh.

use base64::Engine as _;
use splatfleet_common::{
    bittensor::{nonce::wall_clock_ns, Hotkey},
    protocol::sn17::{sign_license, SubmitResults},
};

/// A `SubmitResults` for `task_id`, signed by `miner` for `validator_hotkey`.
pub fn signed_submission(
    miner: &Hotkey,
    validator_hotkey: &str,
    task_id: &str,
    prompt: &str,
    spz: Option<&[u8]>,
) -> SubmitResults {
    let submit_time = wall_clock_ns();
    let signature = sign_license(miner, submit_time, prompt, validator_hotkey);
    let results = spz
        .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes))
        .unwrap_or_default();
    SubmitResults::new(task_id, results, submit_time, signature)
}

#[cfg(test)]
mod tests {
    use splatfleet_common::protocol::sn17::verify_license;

    use super::*;

    #[test]
    fn submission_carries_base64_spz_and_a_license_the_validator_accepts() {
        let (miner, _) = Hotkey::generate();
        let (validator, _) = Hotkey::generate();
        let submission =
            signed_submission(&miner, validator.ss58(), "t-1", "a red chair", Some(b"spz"));
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
        let empty = signed_submission(&miner, validator.ss58(), "t-1", "a red chair", None);
        assert!(empty.results.is_empty());
    }
}
