//! `GET /health`, `GET /ready`, `GET /metrics`.

use std::sync::atomic::Ordering;

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
    let (database, cache, homeserver) = tokio::join!(
        state.store.health(),
        state.cache.health(),
        state.homeserver.reachable()
    );
    let homeserver = match homeserver {
        Ok(()) if !state.pinged.load(Ordering::Acquire) => {
            Err("reachable, but has not yet answered the appservice ping".to_owned())
        }
        other => other.map_err(|e| e.to_string()),
    };
    let checks = [
        ("database", database.map_err(|e| e.to_string())),
        ("cache", cache.map_err(|e| e.to_string())),
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

/// Prometheus text format.
pub async fn metrics(State(state): State<OpsState>) -> String {
    state.metrics.render()
}
