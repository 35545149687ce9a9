//! What runs beside the server: the start-up ping of the homeserver and housekeeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::live::Live;
use crate::matrix::Homeserver;

/// Longest wait between two start-up pings of the homeserver.
const PING_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How often live-stream entries past their retention are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Pings the homeserver with backoff until it answers: that proves both directions
/// work and makes Synapse redeliver any transactions it holds back.
pub async fn ping_until_answered(
    homeserver: Arc<dyn Homeserver>,
    pinged: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut delay = Duration::from_millis(200);
    loop {
        match homeserver.ping().await {
            Ok(()) => {
                pinged.store(true, Ordering::Release);
                tracing::info!("homeserver answered the appservice ping");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?delay, "appservice ping failed");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(PING_MAX_BACKOFF);
    }
}

/// Every minute drops live-stream entries past their retention.
pub async fn prune_streams(live: Live, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
        if let Err(error) = live.prune().await {
            tracing::warn!(%error, "could not prune live streams");
        }
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
