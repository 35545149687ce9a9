//! `PUT /_matrix/app/v1/transactions/{txnId}`: events pushed by the homeserver.
//!
//! Synapse sends one transaction at a time and retries the same one, with the same
//! body, until it gets a 2xx; after a restart it counts txnIds from 1 again. So a
//! transaction is identified by (txnId, SHA-256 of its body), recorded with its events
//! in one database transaction before the 200, and an event that cannot be
//! understood is logged and skipped rather than failing the whole transaction.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use ruma::api::IncomingRequestExt;
use ruma::api::appservice::event::push_events;
use ruma::events::{AnyTimelineEvent, TimelineEventType};
use ruma::serde::Raw;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{AppserviceError, AppserviceState};
use crate::store::{IncomingTransaction, RoomEvent, TransactionOutcome};

/// The envelope every room event has; the content is interpreted later, so an event
/// with odd content is still recorded.
#[derive(Deserialize)]
struct Envelope {
    event_id: OwnedEventId,
    room_id: OwnedRoomId,
    sender: OwnedUserId,
    #[serde(rename = "type")]
    event_type: TimelineEventType,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    state_key: Option<String>,
}

/// Records the transaction once and answers `{}`.
pub async fn push_events(
    State(state): State<AppserviceState>,
    Path(txn_id): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, AppserviceError> {
    metrics::counter!("chatsender_transactions_received_total").increment(1);
    // Stored in a 255-character column: a longer id would be cut, and collide.
    if txn_id.len() > 255 {
        return Err(AppserviceError::InvalidParam(format!(
            "transaction id of {} bytes; at most 255",
            txn_id.len()
        )));
    }
    let request = http::Request::put(format!("/_matrix/app/v1/transactions/{txn_id}"))
        .body(body.as_ref())
        .map_err(|e| AppserviceError::NotJson(e.to_string()))?;
    let request = push_events::v1::Request::try_from_http_request(request, &[txn_id.as_str()])
        .map_err(|e| AppserviceError::NotJson(format!("not a transaction: {e}")))?;

    let events = request
        .events
        .iter()
        .enumerate()
        .filter_map(|(i, raw)| parse(&txn_id, i, raw));
    let txn = IncomingTransaction {
        txn_id: txn_id.clone(),
        body_sha256: Sha256::digest(&body).into(),
        events: events.collect(),
    };
    let outcome = state
        .store
        .record_transaction(&txn)
        .await
        .map_err(|e| AppserviceError::Internal(e.into()))?;
    match outcome {
        TransactionOutcome::Duplicate => {
            metrics::counter!("chatsender_transactions_duplicate_total").increment(1);
            tracing::info!(txn_id, "transaction already processed");
        }
        TransactionOutcome::Recorded { new_events } => {
            metrics::counter!("chatsender_events_processed_total")
                .increment(new_events.len() as u64);
            tracing::debug!(txn_id, events = new_events.len(), "transaction recorded");
            // Recorded events are safe; feeding them on is retried with the next
            // transaction and at start-up if it fails now.
            if let Err(error) = state.ingest.run_pending().await {
                tracing::error!(
                    error = format!("{error:#}"),
                    "could not feed events to the live streams"
                );
            }
        }
    }
    Ok(Json(serde_json::json!({})))
}

/// The event's envelope, or `None` (logged) when it is not a room event at all.
fn parse(txn_id: &str, index: usize, raw: &Raw<AnyTimelineEvent>) -> Option<RoomEvent> {
    match raw.deserialize_as_unchecked::<Envelope>() {
        Ok(e) if e.event_type.to_string().len() > 255 => {
            metrics::counter!("chatsender_events_skipped_total").increment(1);
            tracing::warn!(
                txn_id,
                index,
                "skipping an event whose type is over 255 bytes"
            );
            None
        }
        Ok(e) => Some(RoomEvent {
            event_id: e.event_id,
            room_id: e.room_id,
            sender: e.sender,
            event_type: e.event_type.to_string(),
            state_key: e.state_key,
            origin_server_ts: i64::from(e.origin_server_ts.get()),
            json: raw.json().get().to_owned(),
        }),
        Err(error) => {
            metrics::counter!("chatsender_events_skipped_total").increment(1);
            tracing::warn!(txn_id, index, %error, "skipping an event that is not a valid room event");
            None
        }
    }
}
