//! What runs beside the server: the start-up ping of the homeserver and housekeeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::live::{Live, Slots};
use crate::matrix::Homeserver;
use crate::store::Retention;
use crate::time::now_ms;

/// Longest wait between two start-up pings of the homeserver.
const PING_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How often the sessions behind open event streams are checked.
const SESSION_CHECK: Duration = Duration::from_secs(5);
/// How often live-stream entries past their retention are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often stored events, transactions and sent messages past their retention are
/// dropped, and how many rows of each a statement drops.
const PRUNE_STORE_EVERY: Duration = Duration::from_secs(600);
const PRUNE_BATCH: u32 = 1000;

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

/// Every 5 s checks the sessions behind this daemon's open event streams, all in one
/// go, and ends the streams of those that ended: logged out on another daemon, expired,
/// idle too long, or their key revoked (by `keygen revoke`, which may run anywhere). A
/// logout on this daemon ends its streams at once. When the check itself fails (the
/// database or Redis is down), every stream ends, so clients reconnect once it is back.
pub async fn end_sessions(auth: Auth, streams: Arc<Slots>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(SESSION_CHECK) => {}
        }
        let open = streams.sessions();
        if open.is_empty() {
            continue;
        }
        match auth.ended(&open).await {
            Ok(ended) => streams.end(&ended),
            Err(error) => {
                tracing::warn!(%error, "could not check the sessions of open event streams: ending them");
                streams.end(&open);
            }
        }
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

/// Drops stored events, transactions and sent messages older than `keep`, in batches,
/// and reports the tables' rows in `/metrics` (`chatsender_table_rows`).
pub async fn prune_store(retention: Arc<dyn Retention>, keep: Duration, stop: CancellationToken) {
    loop {
        let before = now_ms().saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        let mut removed = 0;
        loop {
            if stop.is_cancelled() {
                return;
            }
            match retention.prune_before(before, PRUNE_BATCH).await {
                Ok(0) => break,
                Ok(n) => removed += n,
                Err(error) => {
                    tracing::warn!(%error, "could not drop rows past their retention");
                    break;
                }
            }
            // Small batches, with room for the requests in between.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if removed > 0 {
            tracing::info!(rows = removed, "dropped rows past their retention");
        }
        match retention.table_rows().await {
            Ok(tables) => {
                for (table, rows) in tables {
                    metrics::gauge!("chatsender_table_rows", "table" => table).set(rows as f64);
                }
            }
            Err(error) => tracing::warn!(%error, "could not count the tables' rows"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PRUNE_STORE_EVERY) => {}
        }
    }
}
