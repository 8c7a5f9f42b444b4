//! Bad-input suite, puller side: the real puller binary pulls from ten simulated validators,
//! eight of which answer PullTask badly (a 10 MB body sent chunked, JSON cut off, another
//! synapse's JSON, wrong field types quoting a megabyte, a 500 with a megabyte message, a 10 MB
//! prompt, a 300-character task id, a 5,000,000-character text prompt the validation service
//! would refuse) while one hands out an image task whose prompt is not base64. Each bad answer must
//! be logged as a typed error, recorded on the validator's state row (error, count, backoff),
//! and backed off; the puller keeps running and keeps serving the healthy validators; the
//! broken image task is recorded and published like any other (the worker answers it empty).

mod support;

use std::{path::Path, sync::atomic::Ordering, time::Duration};

use splatfleet_common::{protocol::sn17::ProtocolTask, role::Role};
use splatfleet_tests::{process::scrape_metrics, sim::Misbehaviour};

/// What each misbehaving validator (by index) does, and the text its recorded error must hold.
fn misbehaviours() -> Vec<(usize, Option<Misbehaviour>, &'static str)> {
    vec![
        (
            2,
            Some(Misbehaviour::OversizedChunked {
                bytes: 10 * 1024 * 1024,
            }),
            "over the 8388608-byte cap",
        ),
        (3, Some(Misbehaviour::TruncatedJson), "EOF while parsing"),
        (
            4,
            Some(Misbehaviour::WrongSynapse),
            "names itself `SubmitResults`",
        ),
        (
            5,
            Some(Misbehaviour::WrongFieldTypes { chars: 1 << 20 }),
            "not the synapse's JSON",
        ),
        (
            6,
            Some(Misbehaviour::HugeErrorMessage { chars: 1 << 20 }),
            "failed PullTask with 500: EEEE",
        ),
        // A real task whose 10 MB prompt puts the answer over the cap.
        (7, None, "over the 8388608-byte cap"),
        // A real task whose id is longer than the fleet records.
        (8, None, "task id of 300 characters (1 to 256 accepted)"),
        // A real task whose 5,000,000-character prompt the validation service would refuse.
        (
            9,
            None,
            "text prompt of 5000000 characters (the validation service scores at most 1024)",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_validator_answers_are_recorded_and_backed_off_while_healthy_ones_are_served() {
    let mut world = support::start(10).await;
    for (index, misbehaviour, _) in misbehaviours() {
        if misbehaviour.is_some() {
            world.network.validators[index].misbehave_on_pull(misbehaviour);
        }
    }
    world.network.validators[7].hand_out_first(vec![ProtocolTask::text(
        "t-ten-megabytes",
        "a chair ".repeat(10 * 1024 * 1024 / 8),
    )]);
    world.network.validators[8]
        .hand_out_first(vec![ProtocolTask::text("i".repeat(300), "a chair")]);
    world.network.validators[9].hand_out_first(vec![ProtocolTask::text(
        "t-long-prompt",
        "a chair ".repeat(5_000_000 / 8),
    )]);
    world.network.validators[1].hand_out_first(vec![ProtocolTask::image(
        "t-not-base64",
        "this image is not base64 !!",
    )]);

    let work = world
        .spawn_stand_in_workers(1, Duration::from_millis(100), None)
        .await;
    let _submitter = support::spawn_submitter(&world);
    let mut puller = support::spawn_puller(&world);
    tokio::time::sleep(Duration::from_secs(7)).await;

    // Still running and serving /metrics, with the refusals counted.
    let config = world.config();
    let metrics =
        tokio::task::spawn_blocking(move || scrape_metrics(Role::Puller.metrics_addr(&config)))
            .await
            .expect("scrape");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("splatfleet_puller_pulls_total")
                && l.contains("outcome=\"refused\"")),
        "no refused pulls counted:\n{metrics}"
    );

    let client = world.pool.get().await.expect("db");
    for (index, misbehaviour, expected) in misbehaviours() {
        let hotkey = &world.validators[index].hotkey;
        let row = client
            .query_one(
                "SELECT vs.last_pull_error, vs.consecutive_errors, vs.backoff_until IS NOT NULL
                 FROM validator_state vs JOIN validators v ON v.id = vs.validator_id
                 WHERE v.hotkey = $1",
                &[hotkey],
            )
            .await
            .expect("state row");
        let error: Option<String> = row.get(0);
        let errors: i32 = row.get(1);
        let backing_off: bool = row.get(2);
        let error = error.unwrap_or_else(|| panic!("validator {index}: no error recorded"));
        assert!(
            error.contains(expected),
            "validator {index}: recorded {error:?}, expected {expected:?}"
        );
        assert!(
            error.len() < 4096,
            "validator {index}: {} bytes of error stored",
            error.len()
        );
        assert!(errors >= 1 && backing_off, "validator {index}: no backoff");
        if let Some(how) = misbehaviour {
            // Backoff 0.5 s doubling to 4 s: tries near 0, 0.5, 1.5, 3.5 s within 7 s.
            let answered = world
                .events("misbehaved")
                .iter()
                .filter(|e| e["validator_uid"] == index as u64)
                .count();
            assert!(
                (2..=6).contains(&answered),
                "validator {index} ({}): pulled {answered} times",
                how.label()
            );
        }
    }

    // The image task was recorded and published like any other; the healthy validators were
    // served all along.
    let image_tasks: i64 = client
        .query_one(
            "SELECT count(*) FROM tasks WHERE task_id = 't-not-base64' AND kind = 'image'
                 AND published_at IS NOT NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(image_tasks, 1);
    // The over-long prompt was neither recorded nor queued.
    let long: i64 = client
        .query_one(
            "SELECT count(*) FROM tasks WHERE task_id = 't-long-prompt'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(long, 0);
    assert!(!work
        .deliveries
        .lock()
        .expect("log")
        .keys()
        .any(|(_, task_id)| task_id == "t-long-prompt"));
    assert!(
        work.submitted.load(Ordering::SeqCst) >= 3,
        "{} submitted",
        work.submitted.load(Ordering::SeqCst)
    );
    assert!(world.violations().is_empty());
    drop(client);

    // Each failure was logged as a typed error naming the validator's problem.
    puller.terminate();
    let (status, _) = puller.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    let failures: Vec<&String> = puller
        .log
        .iter()
        .filter(|l| l.contains("pull failed; backing off"))
        .collect();
    for needle in [
        "over the 8388608-byte cap",
        "EOF while parsing",
        "names itself `SubmitResults`",
        "bytes in all)",
    ] {
        assert!(
            failures.iter().any(|l| l.contains(needle)),
            "no logged failure with {needle:?}"
        );
    }
    assert!(
        failures.iter().all(|l| l.len() < 8192),
        "a failure line over 8 KiB"
    );
    world.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_world_readable_hotkey_stops_the_puller_before_any_pull_naming_path_and_mode() {
    use std::os::unix::fs::PermissionsExt as _;
    let world = support::start(1).await;
    let hotkey = world.keys_dir.join("miner/hotkeys/default");
    std::fs::set_permissions(&hotkey, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut puller = world.spawn_role_unready(Path::new(env!("CARGO_BIN_EXE_splatfleet-puller")));
    let (status, _) = puller.wait_exit(Duration::from_secs(15));
    // Found at start, before the runtime (exit 78, a configuration error systemd does not
    // restart), not when the first validator is.
    assert_eq!(status.code(), Some(78), "{}", puller.log.join("\n"));
    let refusal = format!(
        "hotkey file {} is readable by group or others (mode 644); run `chmod 600",
        hotkey.display()
    );
    assert!(
        puller.log.iter().any(|l| l.contains(&refusal)),
        "no refusal naming the file and its mode:\n{}",
        puller.log.join("\n")
    );
    assert!(
        world.events("pull").is_empty(),
        "pulled with an exposed key"
    );
    world.finish().await;
}
