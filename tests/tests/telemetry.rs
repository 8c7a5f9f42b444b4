//! The Prometheus exporter as a scraper sees it: served on the configured address, with
//! buckets on every `_seconds`, `_bytes` and `_attempts_per_task` histogram, build info
//! (version and git revision) and the standard `process_*` metrics from the start.

use splatfleet_common::telemetry::{
    serve_metrics, ATTEMPTS_BUCKETS, GIT_REVISION, SECONDS_BUCKETS,
};
use splatfleet_tests::{free_addr, process::scrape_metrics};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_histogram_buckets_for_seconds_and_bytes() {
    let addr = free_addr();
    serve_metrics(addr, "test").expect("exporter starts");
    metrics::histogram!("splatfleet_test_stage_seconds").record(0.02);
    metrics::histogram!("splatfleet_test_payload_bytes").record(2_000_000.0);
    metrics::counter!("splatfleet_test_events_total").increment(3);
    metrics::histogram!("splatfleet_worker_attempts_per_task").record(3.0);

    let body = tokio::task::spawn_blocking(move || scrape_metrics(addr))
        .await
        .expect("scrape");
    assert!(
        body.contains(&format!(
            r#"splatfleet_build_info{{role="test",version="{}",revision="{GIT_REVISION}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        )),
        "{body}"
    );
    // The standard process metrics, read at start and every few seconds.
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_threads",
        "process_start_time_seconds",
    ] {
        assert!(
            body.lines()
                .any(|l| l.starts_with(name) && !l.starts_with('#')),
            "no {name} in {body}"
        );
    }
    // `git rev-parse --short HEAD` where built in a checkout, `unknown` elsewhere.
    assert!(
        GIT_REVISION == "unknown"
            || (GIT_REVISION.len() >= 7 && GIT_REVISION.chars().all(|c| c.is_ascii_hexdigit())),
        "{GIT_REVISION}"
    );
    for le in ATTEMPTS_BUCKETS {
        let below = if *le >= 3.0 { 1 } else { 0 };
        assert!(
            body.contains(&format!(
                "splatfleet_worker_attempts_per_task_bucket{{le=\"{le}\"}} {below}"
            )),
            "attempts bucket {le} missing: {body}"
        );
    }
    assert!(
        !body.contains("splatfleet_worker_attempts_per_task{quantile"),
        "attempts per task is a histogram, not a summary: {body}"
    );
    assert!(body.contains("splatfleet_test_events_total 3"), "{body}");
    for le in SECONDS_BUCKETS {
        assert!(
            body.contains(&format!(
                "splatfleet_test_stage_seconds_bucket{{le=\"{le}\"}}"
            )),
            "bucket {le} missing: {body}"
        );
    }
    assert!(
        body.contains(r#"splatfleet_test_payload_bytes_bucket{le="5000000"} 1"#),
        "{body}"
    );
    assert!(
        !body.contains("splatfleet_test_stage_seconds{quantile"),
        "histograms, not summaries: {body}"
    );

    // A second exporter in the same process is refused, and a taken port is named.
    let err = serve_metrics(addr, "test").expect_err("port taken");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

/// What an operator asks a binary first: every role answers `--version` with its name and
/// version, and exits 0 without reading any config.
#[test]
fn every_role_binary_answers_version() {
    for role in ["puller", "worker", "submitter"] {
        let name = format!("splatfleet-{role}");
        let binary = splatfleet_tests::fleet::role_binary(&name)
            .unwrap_or_else(|err| panic!("{err} (cargo test --workspace builds it)"));
        let out = std::process::Command::new(&binary)
            .arg("--version")
            .env("SPLATFLEET_CONFIG", "/nonexistent/splatfleet.toml")
            .output()
            .expect("the binary runs");
        assert!(out.status.success(), "{name}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{name} {} ({GIT_REVISION})", env!("CARGO_PKG_VERSION"))
        );
    }
}
