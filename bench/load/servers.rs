//! The bench's servers: the bare baseline and the stand-in homeserver.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::{any, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// What Synapse pushes: only `events` is read, each parsed in full.
#[derive(Deserialize)]
struct Transaction {
    #[serde(default)]
    events: Vec<Value>,
}

struct Baseline {
    hs_token: String,
    events: AtomicU64,
}

/// Parses and counts every pushed event until SIGTERM or SIGINT; the figures are the
/// count.
pub async fn baseline(listen: &str, hs_token: String) -> anyhow::Result<Value> {
    let state = Arc::new(Baseline {
        hs_token: format!("Bearer {hs_token}"),
        events: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/_matrix/app/v1/transactions/{txn_id}", put(transaction))
        .route("/_matrix/app/v1/ping", post(|| async { Json(json!({})) }))
        .with_state(state.clone());
    serve(listen, app).await?;
    Ok(json!({"events": state.events.load(Ordering::Relaxed)}))
}

async fn transaction(
    State(state): State<Arc<Baseline>>,
    headers: HeaderMap,
    Path(_txn_id): Path<String>,
    body: axum::body::Bytes,
) -> (StatusCode, Json<Value>) {
    let authorized = headers
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == state.hs_token.as_bytes());
    if !authorized {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"errcode": "M_FORBIDDEN"})),
        );
    }
    match serde_json::from_slice::<Transaction>(&body) {
        Ok(txn) => {
            state
                .events
                .fetch_add(txn.events.len() as u64, Ordering::Relaxed);
            (StatusCode::OK, Json(json!({})))
        }
        Err(_) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"errcode": "M_NOT_JSON"})),
        ),
    }
}

/// Answers what the daemon asks of its homeserver at start-up and at a first login,
/// as Synapse would; anything else gets `{}` and a line on stderr.
pub async fn homeserver(listen: &str) -> anyhow::Result<Value> {
    let app = Router::new()
        .route(
            "/_matrix/client/versions",
            get(|| async { Json(json!({"versions": ["v1.11", "v1.12"]})) }),
        )
        .route(
            "/_matrix/client/v1/appservice/{id}/ping",
            post(|| async { Json(json!({"duration_ms": 1})) }),
        )
        .route("/_matrix/client/v3/register", post(register))
        .fallback(any(|uri: Uri| async move {
            eprintln!("homeserver stand-in: {uri}");
            Json(json!({}))
        }));
    serve(listen, app).await?;
    Ok(json!({}))
}

async fn register(Json(body): Json<Value>) -> Json<Value> {
    let name = body["username"].as_str().unwrap_or("unknown");
    Json(json!({"user_id": format!("@{name}:localhost")}))
}

/// Serves `app` until SIGTERM or SIGINT.
pub async fn serve(listen: &str, app: Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("listening on {listen}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("a SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await?;
    Ok(())
}
