//! The daemon's own HTTP surface besides the appservice endpoints: operations
//! endpoints (`/health`, `/ready`, `/metrics`) and the fallback for unknown routes.

mod ops;
pub mod v1;
pub mod web;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::cache::Cache;
use crate::matrix::Homeserver;
use crate::store::StoreHealth;

/// What the operations endpoints look at.
#[derive(Clone)]
pub struct OpsState {
    pub store: Arc<dyn StoreHealth>,
    pub cache: Arc<dyn Cache>,
    pub homeserver: Arc<dyn Homeserver>,
    /// Set once the homeserver has answered the start-up ping.
    pub pinged: Arc<AtomicBool>,
    /// How long `/ready` waits for each part.
    pub check_timeout: Duration,
    pub metrics: PrometheusHandle,
}

/// `/health`, `/ready` and `/metrics`.
pub fn ops_router(state: OpsState) -> Router {
    Router::new()
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .with_state(state)
}
