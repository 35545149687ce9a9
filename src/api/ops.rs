//! `GET /health`, `GET /ready`, `GET /metrics`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::OpsState;

/// The process is alive.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Database, cache and homeserver reachable and the start-up ping done; otherwise
/// 503 naming each failing part.
pub async fn ready(State(state): State<OpsState>) -> (StatusCode, Json<Value>) {
    let limit = state.check_timeout;
    let (database, cache, homeserver) = tokio::join!(
        within(limit, state.store.health()),
        within(limit, state.cache.health()),
        within(limit, state.homeserver.reachable()),
    );
    let homeserver = match homeserver {
        Ok(()) if !state.pinged.load(Ordering::Acquire) => {
            Err("reachable, but has not yet answered the appservice ping".to_owned())
        }
        other => other,
    };
    let checks = [
        ("database", database),
        ("cache", cache),
        ("homeserver", homeserver),
    ];
    let failing: Vec<&str> = checks
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(n, _)| *n)
        .collect();
    let details: serde_json::Map<String, Value> = checks
        .iter()
        .map(|(name, r)| {
            (
                name.to_string(),
                json!(r.as_ref().err().map_or("ok", String::as_str)),
            )
        })
        .collect();
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "ready": failing.is_empty(), "failing": failing, "checks": details })),
    )
}

/// A check with its own deadline, so a part that hangs is named, not waited for.
async fn within<E: ToString>(
    limit: Duration,
    check: impl Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match tokio::time::timeout(limit, check).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    }
}

/// Prometheus text format.
pub async fn metrics(State(state): State<OpsState>) -> String {
    state.metrics.render()
}
