//! Bad-input suite, wallet: a miner hotkey file readable by group or others is refused when
//! the submitter first needs it. The submitter stops with the error naming the file and its
//! mode, and the result it was holding goes back to the queue untouched (nothing sent, nothing
//! recorded), to be answered once the file is fixed.

mod support;

use std::{os::unix::fs::PermissionsExt as _, time::Duration};

use splatfleet_common::broker::{queue_counts, QueueKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_world_readable_hotkey_stops_the_submitter_and_keeps_the_result() {
    let mut world = support::start(1).await;
    let task = world.pull(0).await;
    let hotkey = world.keys_dir.join("miner/hotkeys/default");
    std::fs::set_permissions(&hotkey, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    world.publish(&world.empty_result(&task)).await;

    let err = world
        .stopped_by_itself(Duration::from_secs(20))
        .await
        .expect_err("the submitter refuses the exposed key");
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "hotkey file {} is readable by group or others (mode 644)",
            hotkey.display()
        )),
        "{message}"
    );
    assert!(
        world.events_about("submit", &task.task_id).is_empty(),
        "sent anyway"
    );
    let client = world.pool.get().await.expect("client");
    let submissions: i64 = client
        .query_one("SELECT count(*) FROM submissions", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(submissions, 0);
    drop(client);
    // The broker requeues the unacked result when the submitter's channel closes, which can
    // land a moment after the submitter has stopped: wait for it (up to 5 s).
    let channel = world.broker.channel().await.expect("channel");
    let queue = world.broker.topology().queue(QueueKind::Results);
    let mut ready = 0;
    for _ in 0..50 {
        ready = queue_counts(&channel, &queue)
            .await
            .expect("results queue")
            .ready;
        if ready == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ready, 1, "the result went back to the queue");
    world.finish().await;
}
