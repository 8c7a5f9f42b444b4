//! The Prometheus exporter as a scraper sees it: served on the configured address, with
//! buckets on every `_seconds` and `_bytes` histogram and build info from the start.

use splatfleet_common::telemetry::{serve_metrics, SECONDS_BUCKETS};
use splatfleet_tests::{free_addr, process::scrape_metrics};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_histogram_buckets_for_seconds_and_bytes() {
    let addr = free_addr();
    serve_metrics(addr, "test").expect("exporter starts");
    metrics::histogram!("splatfleet_test_stage_seconds").record(0.02);
    metrics::histogram!("splatfleet_test_payload_bytes").record(2_000_000.0);
    metrics::counter!("splatfleet_test_events_total").increment(3);

    let body = tokio::task::spawn_blocking(move || scrape_metrics(addr))
        .await
        .expect("scrape");
    assert!(
        body.contains(r#"splatfleet_build_info{role="test""#),
        "{body}"
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
