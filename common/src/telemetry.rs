//! Logs and metrics: the tracing subscriber (human format on a terminal, JSON otherwise) and
//! the Prometheus exporter serving `/metrics`, with histogram buckets for every `_seconds`
//! and `_bytes` metric.

use std::{io::IsTerminal, net::SocketAddr};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Buckets for durations, from a millisecond kernel to a five-minute submission.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
];

/// Buckets for payload sizes, from a small message to a 10 M-gaussian PLY.
pub const BYTES_BUCKETS: &[f64] = &[
    1e3, 1e4, 1e5, 5e5, 1e6, 5e6, 1e7, 5e7, 1e8, 2.5e8, 5e8, 1e9, 2.5e9,
];
/// Buckets of `_score` histograms (validator and local scores, 0 to 1).
pub const SCORE_BUCKETS: &[f64] = &[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot serve metrics on {addr}: {message}")]
    Exporter { addr: SocketAddr, message: String },
    #[error("a metrics recorder is already installed in this process")]
    RecorderTaken,
}

/// Installs the global tracing subscriber. `RUST_LOG` wins over `log.level`. Safe to call
/// twice (the second call changes nothing).
pub fn init_tracing(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match settings.format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// Installs the Prometheus recorder and serves `/metrics` on `addr` from the current Tokio
/// runtime. The listener is bound before this returns, so a taken port fails at start.
pub fn serve_metrics(addr: SocketAddr, role: &'static str) -> Result<(), TelemetryError> {
    let exporter_error = |message: String| TelemetryError::Exporter { addr, message };
    let mut builder = PrometheusBuilder::new().with_http_listener(addr);
    for (suffix, buckets) in [
        ("_seconds", SECONDS_BUCKETS),
        ("_bytes", BYTES_BUCKETS),
        ("_score", SCORE_BUCKETS),
    ] {
        builder = builder
            .set_buckets_for_metric(Matcher::Suffix(suffix.into()), buckets)
            .map_err(|err| exporter_error(err.to_string()))?;
    }
    let (recorder, exporter) = builder
        .build()
        .map_err(|err| exporter_error(err.to_string()))?;
    metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::RecorderTaken)?;
    tokio::spawn(async move {
        if let Err(err) = exporter.await {
            tracing::error!(?err, "metrics exporter stopped");
        }
    });
    describe_common_metrics();
    metrics::gauge!("splatfleet_build_info", "role" => role, "version" => env!("CARGO_PKG_VERSION"))
        .set(1.0);
    Ok(())
}

fn describe_common_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        "splatfleet_build_info",
        "Always 1; labels carry the role and version."
    );
    describe_counter!(
        "splatfleet_broker_published_total",
        "Messages published and confirmed by the broker, by queue."
    );
    describe_histogram!(
        "splatfleet_broker_publish_seconds",
        Unit::Seconds,
        "Time from publish to broker confirm."
    );
    describe_histogram!(
        "splatfleet_broker_message_bytes",
        Unit::Bytes,
        "Encoded size of messages published, by queue."
    );
    describe_counter!(
        "splatfleet_broker_consumed_total",
        "Deliveries handled, by queue and outcome (ack, requeue, dead_letter, undecodable)."
    );
    describe_counter!(
        "splatfleet_broker_recoveries_total",
        "Times a channel waited for the connection to recover after a broker failure."
    );
}
