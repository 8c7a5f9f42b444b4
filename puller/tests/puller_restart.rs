//! The puller killed (SIGKILL) mid-run and started again: cooldowns and held tasks come back
//! from Postgres, so there are no violations, no task is queued twice, and every task a
//! validator assigned to us ends up recorded.

mod support;

use std::{collections::HashSet, sync::atomic::Ordering, time::Duration};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_and_restarted_mid_run_no_duplicates_no_violations_nothing_lost() {
    let mut world = support::start(8).await;
    let work = world
        .spawn_stand_in_workers(2, Duration::from_millis(150), None)
        .await;
    let _submitter = support::spawn_submitter(&world);
    let first = support::spawn_puller(&world);
    tokio::time::sleep(Duration::from_millis(4_300)).await;
    drop(first); // SIGKILL: no drain, calls in flight are cut off.
    let before_restart = work.submitted.load(Ordering::SeqCst);
    let mut second = support::spawn_puller(&world);
    tokio::time::sleep(Duration::from_secs(7)).await;
    second.terminate();
    let (status, _) = second.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "log:\n{}", second.log.join("\n"));

    assert!(world.violations().is_empty(), "{:?}", world.violations());
    let deliveries = work.deliveries.lock().expect("work log").clone();
    assert!(
        deliveries.values().all(|&n| n == 1),
        "a task was delivered twice: {deliveries:?}"
    );
    let after = work.submitted.load(Ordering::SeqCst);
    assert!(before_restart >= 3, "only {before_restart} before the kill");
    assert!(after > before_restart + 3, "nothing done after the restart");

    // Every task a validator handed us is recorded.
    let assigned: HashSet<String> = world
        .events("pull")
        .iter()
        .filter(|p| p["outcome"] == "new")
        .filter_map(|p| p["task_id"].as_str().map(str::to_owned))
        .collect();
    let recorded: HashSet<String> = world
        .pool
        .get()
        .await
        .expect("db")
        .query("SELECT task_id FROM tasks", &[])
        .await
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<_> = assigned.difference(&recorded).collect();
    assert!(
        missing.is_empty(),
        "assigned but never recorded: {missing:?}"
    );
    eprintln!(
        "assigned {}, recorded {}, submitted {before_restart} then {after}",
        assigned.len(),
        recorded.len()
    );
    world.finish().await;
}
