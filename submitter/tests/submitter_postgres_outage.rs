//! PostgreSQL goes away for 20 s mid-run (this test's database refuses connections and its
//! backends are terminated; the shared server keeps running for other tests): the submitter
//! stops acking, retries, and resumes; no result is lost and none is submitted twice.

mod support;

use std::time::Duration;

use splatfleet_tests::admin_client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_gone_for_20_s_loses_no_result_and_duplicates_none() {
    let world = support::start(4).await;
    let mut tasks = Vec::new();
    for v in 0..4 {
        tasks.push(world.pull(v).await);
    }
    let mut results = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        results.push(world.ready_result(task, i % 2 == 0, 10 + i as u32).await);
    }
    world.publish(&results[0]).await;
    world.publish(&results[1]).await;

    let dbname = world.db.settings.dbname.clone();
    let admin = admin_client().await;
    admin
        .batch_execute(&format!("ALTER DATABASE {dbname} ALLOW_CONNECTIONS false"))
        .await
        .expect("refuse connections");
    let outage = tokio::time::Instant::now();
    // Results keep arriving while the database is away.
    world.publish(&results[2]).await;
    world.publish(&results[3]).await;
    world.publish(&results[1]).await;
    while outage.elapsed() < Duration::from_secs(20) {
        admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&dbname],
            )
            .await
            .expect("terminate backends");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    admin
        .batch_execute(&format!("ALTER DATABASE {dbname} ALLOW_CONNECTIONS true"))
        .await
        .expect("accept connections");

    world
        .wait_count(
            "SELECT count(*) FROM submissions WHERE state = 'completed'",
            4,
            Duration::from_secs(40),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for task in &tasks {
        assert_eq!(
            world.events_about("submit", &task.task_id).len(),
            1,
            "{}",
            task.task_id
        );
    }
    world
        .wait_count(
            "SELECT count(*) FROM tasks WHERE status = 'submitted'",
            4,
            Duration::from_secs(5),
        )
        .await;
    world
        .wait_count("SELECT count(*) FROM attempts", 8, Duration::from_secs(5))
        .await;
    world.finish().await;
}
