//! How many PostgreSQL round trips and transactions the submitter spends per submitted task
//! on the normal path (first delivery of a ready result for a task the puller recorded).
//!
//! The submitter talks to PostgreSQL through a small counting TCP proxy (real server, real
//! protocol: the proxy only reads the frontend messages it forwards). A round trip is one
//! message the client waits on a `ReadyForQuery` for: a `Sync` (extended protocol: one
//! prepare, or one bind/execute of a prepared statement) or a simple `Query` (`BEGIN`,
//! `COMMIT`), less the `Close` + `Sync` pairs tokio-postgres sends without waiting when it
//! drops a prepared statement. `Parse` counts statements prepared, `Execute` statements
//! run. Next to the wire
//! counts, `pg_stat_database.xact_commit` of this test's own database gives the transactions
//! the server saw, as ops/BENCH.md reads them (nothing else uses the database while it is
//! measured: the test waits on the simulated validators and the proxy, not on SQL).
//!
//! One warm-up task goes through first (start-up, migrations and per-connection caches are
//! not counted), then `TASKS` tasks are measured together. Run it with the numbers shown:
//!
//! ```sh
//! cargo test -p splatfleet-submitter --test submitter_round_trips -- --nocapture
//! ```

mod support;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use splatfleet_tests::{admin_client, harness::World};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

/// Tasks measured together (one validator each).
const TASKS: usize = 12;

/// Frontend messages seen, over every proxied connection.
#[derive(Debug, Default)]
struct WireCounts {
    /// Simple-protocol queries (`Q`).
    queries: AtomicU64,
    /// Extended-protocol syncs (`S`).
    syncs: AtomicU64,
    /// Statements prepared (`P`).
    parses: AtomicU64,
    /// Statements executed (`E`).
    executes: AtomicU64,
    /// Prepared statements closed (`C`), each with a `Sync` nobody waits on.
    closes: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    queries: u64,
    syncs: u64,
    parses: u64,
    executes: u64,
    closes: u64,
}

impl WireCounts {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            queries: self.queries.load(Ordering::SeqCst),
            syncs: self.syncs.load(Ordering::SeqCst),
            parses: self.parses.load(Ordering::SeqCst),
            executes: self.executes.load(Ordering::SeqCst),
            closes: self.closes.load(Ordering::SeqCst),
        }
    }

    fn count(&self, kind: u8) {
        let counter = match kind {
            b'Q' => &self.queries,
            b'S' => &self.syncs,
            b'P' => &self.parses,
            b'E' => &self.executes,
            b'C' => &self.closes,
            _ => return,
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// Listens on a loopback port and forwards every connection to `target`, counting the
/// frontend messages.
async fn start_counting_proxy(target: SocketAddr, counts: Arc<WireCounts>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counts = Arc::clone(&counts);
            tokio::spawn(async move {
                if let Ok(server) = TcpStream::connect(target).await {
                    forward(client, server, counts).await;
                }
            });
        }
    });
    addr
}

async fn forward(client: TcpStream, server: TcpStream, counts: Arc<WireCounts>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let backend = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    // Frontend stream: an untyped startup message (no TLS is asked for: the pool uses
    // NoTls), then `type byte + int32 length (itself included) + body` messages.
    let mut pending: Vec<u8> = Vec::new();
    let mut started = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match client_read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if server_write.write_all(&chunk[..n]).await.is_err() {
            break;
        }
        pending.extend_from_slice(&chunk[..n]);
        loop {
            let header = if started { 5 } else { 4 };
            if pending.len() < header {
                break;
            }
            let len_at = usize::from(started);
            let len = u32::from_be_bytes([
                pending[len_at],
                pending[len_at + 1],
                pending[len_at + 2],
                pending[len_at + 3],
            ]) as usize;
            let total = len + len_at;
            if pending.len() < total {
                break;
            }
            if started {
                counts.count(pending[0]);
            }
            started = true;
            pending.drain(..total);
        }
    }
    let _ = server_write.shutdown().await;
    let _ = backend.await;
}

async fn xact_commit(dbname: &str) -> i64 {
    admin_client()
        .await
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
            &[&dbname],
        )
        .await
        .expect("pg_stat_database")
        .get(0)
}

/// Waits until the simulated validators saw `want` submissions, then until the submitter
/// has been silent on the wire for a second (it records right after the answer).
async fn wait_handled(world: &World, counts: &WireCounts, want: usize) {
    let started = Instant::now();
    while world.events("submit").len() < want {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {} of {want} submissions arrived",
            world.events("submit").len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut last = counts.snapshot();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = counts.snapshot();
        if now == last {
            return;
        }
        last = now;
    }
}

/// A backend reports its transaction counts when idle, at most 10 s late
/// (`PGSTAT_IDLE_INTERVAL`).
const STATS_FLUSH: Duration = Duration::from_secs(11);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_per_submitted_task_on_the_normal_path() {
    let counts = Arc::new(WireCounts::default());
    let settings = splatfleet_tests::database_settings("postgres");
    let server: SocketAddr = tokio::net::lookup_host((settings.host.as_str(), settings.port))
        .await
        .expect("resolve PostgreSQL")
        .next()
        .expect("a PostgreSQL address");
    let proxy = start_counting_proxy(server, Arc::clone(&counts)).await;
    let proxy_port = proxy.port();
    let world = support::start_with(
        u16::try_from(TASKS + 1).expect("a few validators"),
        |config| {
            config.database.host = "127.0.0.1".into();
            config.database.port = proxy_port;
            // The release loop's poll (one statement a second) is not the normal path:
            // once at start, then out of the way of the count and of the silence it waits for.
            config.submitter.release_poll_ms = 3_600_000;
        },
    )
    .await;
    let mut tasks = Vec::new();
    for v in 0..=TASKS {
        tasks.push(world.pull(v).await);
    }
    let mut results = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        results.push(world.ready_result(task, true, 100 + i as u32).await);
    }

    world.publish(&results[0]).await;
    wait_handled(&world, &counts, 1).await;
    tokio::time::sleep(STATS_FLUSH).await;
    let dbname = world.db.settings.dbname.clone();
    let xact_before = xact_commit(&dbname).await;
    let wire_before = counts.snapshot();

    for result in &results[1..] {
        world.publish(result).await;
    }
    wait_handled(&world, &counts, TASKS + 1).await;
    let wire_after = counts.snapshot();
    tokio::time::sleep(STATS_FLUSH).await;
    let xact_after = xact_commit(&dbname).await;

    let per_task = |before: u64, after: u64| (after - before) as f64 / TASKS as f64;
    let round_trips = per_task(
        wire_before.syncs + wire_before.queries - wire_before.closes,
        wire_after.syncs + wire_after.queries - wire_after.closes,
    );
    let closes = per_task(wire_before.closes, wire_after.closes);
    let parses = per_task(wire_before.parses, wire_after.parses);
    let executes = per_task(wire_before.executes, wire_after.executes);
    let simple = per_task(wire_before.queries, wire_after.queries);
    let transactions = (xact_after - xact_before) as f64 / TASKS as f64;
    println!(
        "submitter, per submitted task ({TASKS} tasks): {round_trips:.2} round trips \
         ({simple:.2} simple queries), {parses:.2} statements prepared, {executes:.2} \
         statements executed, {closes:.2} statements closed, {transactions:.2} transactions committed (xact_commit)"
    );

    // The normal path is one statement before the send and one after it (2.00 here; each
    // pooled connection prepares them once more on first use). Before claim_first and the
    // one-statement finish it was 10 statements and 22 round trips.
    assert!(executes <= 2.5, "{executes:.2} statements per task");
    assert!(round_trips <= 4.0, "{round_trips:.2} round trips per task");

    world
        .wait_count(
            "SELECT count(*) FROM submissions WHERE state = 'completed' AND tries = 1",
            i64::try_from(TASKS + 1).expect("count"),
            Duration::from_secs(10),
        )
        .await;
    world
        .wait_count(
            "SELECT count(*) FROM tasks WHERE status = 'submitted'",
            i64::try_from(TASKS + 1).expect("count"),
            Duration::from_secs(5),
        )
        .await;
    for task in &tasks {
        assert_eq!(world.events_about("submit", &task.task_id).len(), 1);
    }
    world.finish().await;
}
