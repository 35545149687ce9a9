//! The application-service side: the endpoints Synapse calls (`/_matrix/app/v1/…` and
//! the legacy unprefixed paths), behind the hs_token check.

mod auth;
mod ping;
mod queries;
mod transactions;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use secrecy::SecretString;

use crate::chat::Ingest;
use crate::identity::Puppets;

/// Transactions carry up to 100 events of up to 64 KiB each.
const TRANSACTION_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// What the appservice endpoints need.
#[derive(Clone)]
pub struct AppserviceState {
    pub hs_token: SecretString,
    /// Records pushed events and feeds them on.
    pub ingest: Arc<Ingest>,
    /// Answers whether a user in the namespace exists.
    pub puppets: Puppets,
}

/// The routes Synapse calls, all behind the hs_token check.
pub fn router(state: AppserviceState) -> Router {
    let endpoints = Router::new()
        .route("/transactions/{txn_id}", put(transactions::push_events))
        .route("/users/{user_id}", get(queries::query_user))
        .route("/rooms/{alias}", get(queries::query_room_alias));
    Router::new()
        .nest(
            "/_matrix/app/v1",
            endpoints.clone().route("/ping", post(ping::ping)),
        )
        // Legacy paths, still used by homeservers without spec v1.1 support.
        .merge(endpoints)
        .layer(DefaultBodyLimit::max(TRANSACTION_BODY_LIMIT))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_hs_token,
        ))
        .with_state(state)
}
