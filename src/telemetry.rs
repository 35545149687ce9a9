//! Logs (`tracing`) and metrics (Prometheus), both process-wide.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the log subscriber: `RUST_LOG` wins over `log.level`. Logs go to stderr,
/// so commands' machine output on stdout stays clean. A second call is a no-op.
pub fn init_logs(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _already_set = match settings.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The Prometheus recorder, installed on first use (several in-process daemons, as in
/// tests, share it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first, which nothing here does.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "chatsender_transactions_received_total",
        "Appservice transactions pushed by the homeserver"
    );
    metrics::describe_counter!(
        "chatsender_transactions_duplicate_total",
        "Transactions received again and not processed twice"
    );
    metrics::describe_counter!("chatsender_events_processed_total", "Room events processed");
    metrics::describe_counter!(
        "chatsender_events_skipped_total",
        "Events in transactions that were not valid room events"
    );
    metrics::describe_counter!(
        "chatsender_live_wakeups_total",
        "Open live streams woken by a delivery (each wakes only its recipient's streams)"
    );
    metrics::describe_histogram!(
        "chatsender_homeserver_request_duration_seconds",
        metrics::Unit::Seconds,
        "Latency of requests to the homeserver"
    );
}
