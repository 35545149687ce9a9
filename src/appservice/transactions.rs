//! `PUT /_matrix/app/v1/transactions/{txnId}`: events pushed by the homeserver.
//!
//! Synapse sends one transaction at a time and retries the same one, with the same
//! body, until it gets a 2xx; after a restart it counts txnIds from 1 again. So a
//! transaction is identified by (txnId, SHA-256 of its body) and answered as soon as
//! it is recorded; an event that cannot be understood is skipped rather than failing
//! the whole transaction.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use ruma::api::IncomingRequestExt;
use ruma::api::appservice::event::push_events;
use sha2::{Digest, Sha256};

use super::AppserviceState;
use crate::error::MatrixError;

/// Records the transaction once and answers `{}`.
pub async fn push_events(
    State(state): State<AppserviceState>,
    Path(txn_id): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, MatrixError> {
    metrics::counter!("chatsender_transactions_received_total").increment(1);
    // Stored in a 255-character column: a longer id would be cut, and collide.
    if txn_id.len() > 255 {
        return Err(MatrixError::invalid_param(format!(
            "transaction id of {} bytes; at most 255",
            txn_id.len()
        )));
    }
    let request = http::Request::put(format!("/_matrix/app/v1/transactions/{txn_id}"))
        .body(body.as_ref())
        .map_err(|e| MatrixError::not_json(e.to_string()))?;
    let request = push_events::v1::Request::try_from_http_request(request, &[txn_id.as_str()])
        .map_err(|e| MatrixError::not_json(format!("not a transaction: {e}")))?;
    state
        .ingest
        .record(
            &txn_id,
            Sha256::digest(&body).into(),
            &request.events,
            &request.ephemeral,
        )
        .await
        .map_err(|e| match e.is_unavailable() {
            // Synapse retries either way; a 503 says why.
            true => MatrixError::unavailable("the database", e),
            false => MatrixError::internal(e),
        })?;
    Ok(Json(serde_json::json!({})))
}
