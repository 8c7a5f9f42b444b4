//! The puller facing sick validators: one that answers 500 to everything is backed off
//! exponentially, and one that refuses our signature (401) is pulled once and never again,
//! with the exclusion and the stop recorded. A validator whose recorded submissions show
//! repeated penalties is blacklisted automatically, and the blacklist lifts itself after
//! `auto_blacklist_secs`. Healthy validators keep being served.

mod support;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use splatfleet_common::{
    db::Pool,
    discovery::ValidatorInfo,
    ledger::{self, seed, ClaimRequest, Finish, Verdict},
    messages::{ArtifactRef, AttemptRecord, ResultMsg, ResultOutcome, TaskKind},
    protocol::sn17::Feedback,
};
use splatfleet_tests::harness;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// An HTTP server that answers 500 to every request and counts them.
async fn always_500() -> (u16, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let count = Arc::new(AtomicU32::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                if matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
                    seen.fetch_add(1, Ordering::SeqCst);
                    let body = r#"{"message":"Internal Server Error"}"#;
                    let response = format!(
                        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                }
            });
        }
    });
    (port, count)
}

/// A validator entry with a fresh hotkey at `port` on 127.0.0.1.
fn stranger(uid: u16, port: u16) -> ValidatorInfo {
    let (hotkey, _) = splatfleet_common::bittensor::Hotkey::generate();
    ValidatorInfo {
        uid,
        hotkey: hotkey.ss58().to_owned(),
        ip: "127.0.0.1".into(),
        port,
        stake: 5_000.0,
        validator_permit: true,
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Records `count` completed submissions to `validator` that scored under the threshold, as
/// the submitter would have: tasks pulled an hour ago, answered 50 minutes ago.
async fn seed_penalties(pool: &Pool, validator: &ValidatorInfo, count: usize) {
    const OLD: &str = "old-host:1:00000000";
    let hour_ago_ms = (now_secs() * 1000.0) as i64 - 3_600_000;
    for n in 0..count {
        let task = harness::task_msg(
            validator,
            &format!("old-{n}"),
            "a chair",
            TaskKind::Text,
            hour_ago_ms,
        );
        let row = harness::record_queued_task(pool, validator, &task).await;
        let request = ClaimRequest {
            claimed_by: Some(OLD),
            lease_secs: 60.0,
            empty_reason: None,
            worker: Some("old"),
            local_score: None,
            result_finished_unix_ms: None,
        };
        ledger::claim(pool, row, &request).await.expect("claim");
        let result = ResultMsg {
            task_id: task.task_id.clone(),
            validator: task.validator.clone(),
            kind: TaskKind::Text,
            prompt: task.prompt.clone(),
            outcome: ResultOutcome::Ready {
                ply: ArtifactRef {
                    key: format!("ply/00/old-{n}.ply"),
                    sha256: "0".repeat(64),
                    bytes: 100,
                },
                spz: None,
                preview: None,
                local_score: 0.7,
                chosen_attempt: 0,
            },
            attempts: vec![AttemptRecord::started(BTreeMap::new(), hour_ago_ms)],
            worker: "old".into(),
            finished_at_unix_ms: hour_ago_ms,
        };
        let penalised = Finish::Answered {
            feedback: Some(Feedback {
                task_fidelity_score: 0.0,
                validation_failed: false,
                ..Feedback::default()
            }),
            cooldown_until: 0,
            latency_ms: 1000,
        };
        assert_eq!(
            ledger::finish(pool, row, OLD, &result, &penalised)
                .await
                .expect("finish"),
            Some(Verdict::Penalised)
        );
        seed::backdate_submission(pool, row, 3000.0)
            .await
            .expect("answered 50 minutes ago");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_validator_answering_500_is_backed_off_and_a_401_stops_pulls() {
    let (broken_port, broken_requests) = always_500().await;
    let broken = stranger(100, broken_port);
    // Listed with a hotkey that is not the one validator 0 signs for: its axon refuses our
    // signature with 401, as it would if our keys or clock were wrong.
    let mut mismatched = stranger(101, 0);
    let mut world = support::start(3).await;
    mismatched.port = world.validators[0].port;
    let mut list = std::fs::read_to_string(&world.validators_file).expect("list");
    for extra in [&broken, &mismatched] {
        list.push_str(
            &splatfleet_common::discovery::static_list::StaticValidatorList {
                validators: vec![extra.clone()],
            }
            .to_toml(),
        );
    }
    std::fs::write(&world.validators_file, list).expect("list");

    // Validator 1's history: five submissions scored under the threshold (penalties).
    let penalised = world.validators[1].clone();
    seed_penalties(&world.pool, &penalised, 5).await;
    world.edit_config(|config| {
        config.puller.auto_blacklist_max_penalties = 5;
        config.puller.auto_blacklist_secs = 3;
    });

    let work = world
        .spawn_stand_in_workers(1, Duration::from_millis(100), None)
        .await;
    let _submitter = support::spawn_submitter(&world);
    let puller = support::spawn_puller(&world);
    let started = now_secs();
    tokio::time::sleep(Duration::from_secs(8)).await;
    drop(puller);

    // The automatic blacklist held validator 1 back for its 3 s, then lifted itself.
    let first_pull = world
        .events("pull")
        .iter()
        .filter(|p| p["validator_uid"] == 1)
        .filter_map(|p| p["ts"].as_f64())
        .fold(f64::INFINITY, f64::min);
    assert!(
        first_pull - started >= 2.5 && first_pull - started < 7.0,
        "validator 1 first pulled {:.1} s after start",
        first_pull - started
    );

    // 500s: backoff 0.5 s doubling to 4 s gives tries near 0, 0.5, 1.5, 3.5 and 7.5 s;
    // without it the 50 ms tick would have sent well over a hundred.
    let tries = broken_requests.load(Ordering::SeqCst);
    assert!(
        (2..=6).contains(&tries),
        "{tries} requests to the validator answering 500"
    );

    // 401: exactly one refused call, then nothing.
    let refused: Vec<_> = world
        .events("rejected")
        .into_iter()
        .filter(|e| e["status"] == 401)
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");

    let client = world.pool.get().await.expect("db");
    let stopped: Option<String> = client
        .query_one(
            "SELECT vs.pulls_stopped_reason FROM validator_state vs
             JOIN validators v ON v.id = vs.validator_id WHERE v.hotkey = $1",
            &[&mismatched.hotkey],
        )
        .await
        .expect("query")
        .get(0);
    assert!(
        stopped.is_some_and(|s| s.contains("401")),
        "stop not recorded"
    );
    let reason: String = client
        .query_one(
            "SELECT e.reason FROM validator_exclusions e JOIN validators v ON v.id = e.validator_id
             WHERE v.hotkey = $1 AND e.ended_at IS NULL",
            &[&mismatched.hotkey],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(reason, "unauthorized");
    let errors: i32 = client
        .query_one(
            "SELECT vs.consecutive_errors FROM validator_state vs
             JOIN validators v ON v.id = vs.validator_id WHERE v.hotkey = $1",
            &[&broken.hotkey],
        )
        .await
        .expect("query")
        .get(0);
    assert!(errors >= 2, "backoff not recorded ({errors} errors)");
    let auto: Vec<bool> = client
        .query(
            "SELECT e.ended_at IS NOT NULL FROM validator_exclusions e
             JOIN validators v ON v.id = e.validator_id
             WHERE v.hotkey = $1 AND e.reason = 'auto_blacklist'",
            &[&penalised.hotkey],
        )
        .await
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(auto, vec![true], "one automatic exclusion, ended");

    // The healthy validators were served all along, without violations.
    assert!(work.submitted.load(Ordering::SeqCst) >= 3);
    assert!(world.violations().is_empty());
    drop(client);
    world.finish().await;
}
