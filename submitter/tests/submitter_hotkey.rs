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
    let channel = world.broker.channel().await.expect("channel");
    let results = queue_counts(&channel, &world.broker.topology().queue(QueueKind::Results))
        .await
        .expect("results queue");
    assert_eq!(results.ready, 1, "the result went back to the queue");
    world.finish().await;
}
