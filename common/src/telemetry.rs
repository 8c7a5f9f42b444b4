//! Logs and metrics: the tracing subscriber (human format on a terminal, JSON otherwise) and
//! the Prometheus exporter serving `/metrics`, with histogram buckets for every `_seconds`,
//! `_bytes`, `_score` and `_attempts_per_task` metric, and the build info gauge.

use std::{io::IsTerminal, net::SocketAddr};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// The git revision this binary was built from (`common/build.rs`), `unknown` outside git.
pub const GIT_REVISION: &str = env!("SPLATFLEET_GIT_REVISION");

/// What `--version` prints after a role's name: the version and the git revision.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("SPLATFLEET_GIT_REVISION"),
    ")"
);

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
/// Buckets of `_attempts_per_task` (the worker's ladder holds at most 32 parameter sets): with
/// buckets the workers' histograms add up across instances, where summaries' quantiles cannot.
pub const ATTEMPTS_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0];

/// The `uid` label every per-validator metric carries beside `validator` (the hotkey): the
/// number operators know a validator by; empty where the uid is not known.
pub fn uid_label(uid: Option<u16>) -> String {
    uid.map(|uid| uid.to_string()).unwrap_or_default()
}

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
    let (recorder, exporter) = with_buckets(PrometheusBuilder::new().with_http_listener(addr))
        .map_err(|err| exporter_error(err.to_string()))?
        .build()
        .map_err(|err| exporter_error(err.to_string()))?;
    metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::RecorderTaken)?;
    tokio::spawn(async move {
        if let Err(err) = exporter.await {
            tracing::error!(?err, "metrics exporter stopped");
        }
    });
    describe_common_metrics();
    collect_process_metrics();
    metrics::gauge!(
        "splatfleet_build_info",
        "role" => role,
        "version" => env!("CARGO_PKG_VERSION"),
        "revision" => GIT_REVISION
    )
    .set(1.0);
    Ok(())
}

/// How often the process's own figures are read for `/metrics`.
const PROCESS_METRICS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The standard `process_*` metrics (CPU seconds, resident and virtual memory, open and
/// maximum file descriptors, threads, start time), as every Prometheus client exports them,
/// read by the `metrics-process` crate every [`PROCESS_METRICS_EVERY`] on the current runtime.
fn collect_process_metrics() {
    let collector = metrics_process::Collector::default();
    collector.describe();
    collector.collect();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(PROCESS_METRICS_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            every.tick().await;
            collector.collect();
        }
    });
}

/// The histogram buckets, by metric-name suffix, every exporter of the fleet sets.
fn with_buckets(
    mut builder: PrometheusBuilder,
) -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    for (suffix, buckets) in [
        ("_seconds", SECONDS_BUCKETS),
        ("_bytes", BYTES_BUCKETS),
        ("_score", SCORE_BUCKETS),
        ("_attempts_per_task", ATTEMPTS_BUCKETS),
    ] {
        builder = builder.set_buckets_for_metric(Matcher::Suffix(suffix.into()), buckets)?;
    }
    Ok(builder)
}

/// What `record` records, as `/metrics` would render it (buckets included), on a recorder of
/// its own: for tests of a role's metric helpers, which the process-wide recorder would mix.
#[cfg(feature = "test-support")]
pub fn render_recorded(record: impl FnOnce()) -> String {
    let recorder = with_buckets(PrometheusBuilder::new())
        .expect("the fleet's buckets are valid")
        .build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, record);
    handle.render()
}

fn describe_common_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        "splatfleet_build_info",
        "Always 1; labels carry the role, the version and the git revision built from."
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
