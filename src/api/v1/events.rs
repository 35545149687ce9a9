//! `GET /api/v1/events`: the logged-in user's live stream as Server-Sent Events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};

use super::ApiState;
use super::extract::Session;
use crate::error::MatrixError;
use crate::live::LiveItem;

/// One stream item as an SSE event.
fn sse(item: LiveItem) -> Result<Event, Infallible> {
    Ok(match item {
        LiveItem::Event(event) => Event::default()
            .id(&event.id)
            .event(event.kind.as_str())
            .data(&*event.payload),
        LiveItem::Reset { latest } => {
            let reset = Event::default().event("reset").data("{}");
            match latest {
                Some(id) => reset.id(id),
                None => reset,
            }
        }
    })
}

/// Events for this user: `message`, `membership`, `room`, `typing`, `read`, `receipt`;
/// `reset` when the `Last-Event-ID` is older than what is kept, or past the newest
/// event (the store was wiped, or an upgrade renamed the streams). A `: keepalive`
/// comment every 15 s. A daemon holds at most `server.max_streams_per_session` open
/// per session and `server.max_streams_per_user` per user.
#[utoipa::path(get, path = "/api/v1/events", tag = "chat",
    responses((status = 200, description = "text/event-stream"),
        (status = 429, description = "`M_LIMIT_EXCEEDED`: too many streams open; the message says which cap")),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<ApiState>,
    Session(who): Session,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, MatrixError> {
    let cursor = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let user = who.user_id.clone();
    let slot = state
        .streams
        .take(who.token_hash, &user)
        .map_err(|e| MatrixError::too_many(e.to_string()))?;
    let stream = state.live.open(user, cursor, slot.ended()).await?;
    // The stream holds its place until it is dropped (the client went away).
    let stream = stream.map(move |item| {
        let _held = &slot;
        sse(item)
    });
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keepalive"),
    ))
}
