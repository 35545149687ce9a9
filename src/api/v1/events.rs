//! `GET /api/v1/events`: the logged-in user's live stream (Server-Sent Events).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::extract::Session;
use super::{ApiError, ApiState};
use crate::live::{LiveEvent, Replay};

/// How often an open stream checks its session is still valid.
const SESSION_CHECK: Duration = Duration::from_secs(5);

fn sse(event: &LiveEvent) -> Event {
    Event::default()
        .id(event.id.clone())
        .event(event.kind.clone())
        .data(event.payload.clone())
}

/// Events for this user: `message`, `membership`, `room`; `reset` when the
/// `Last-Event-ID` is older than what is kept. A `: keepalive` comment every 15 s.
#[utoipa::path(get, path = "/api/v1/events", tag = "chat",
    responses((status = 200, description = "text/event-stream")), security(("bearer" = [])))]
pub async fn events(
    State(state): State<ApiState>,
    Session(who): Session,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let user = who.user_id.to_string();
    // Subscribe before replaying, so nothing falls between the two.
    let mut live = state.bus.subscribe();
    let cursor = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let replay = match &cursor {
        Some(cursor) => state
            .bus
            .replay(&user, cursor)
            .await
            .map_err(ApiError::Internal)?,
        None => Replay::Events(Vec::new()),
    };
    let (bus, auth, stop) = (
        state.bus.clone(),
        state.auth.clone(),
        state.shutdown.clone(),
    );
    let stream = async_stream::stream! {
        let mut last = cursor;
        match replay {
            Replay::Reset => {
                yield Ok(Event::default().event("reset").data("{}"));
                last = None;
            }
            Replay::Events(missed) => {
                for event in missed {
                    last = Some(event.id.clone());
                    yield Ok(sse(&event));
                }
            }
        }
        let mut check = tokio::time::interval(SESSION_CHECK);
        check.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = check.tick() => {
                    if auth.is_valid(&who).await.is_err() {
                        break;
                    }
                }
                received = live.recv() => match received {
                    Ok(event) if event.user_id == user => {
                        if last.as_deref().is_some_and(|l| !bus.is_after(&event.id, l)) {
                            continue; // Already sent by the replay.
                        }
                        last = Some(event.id.clone());
                        yield Ok(sse(&event));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        // This connection fell behind: catch up from the stream itself.
                        let replay = match &last {
                            Some(l) => bus.replay(&user, l).await.unwrap_or(Replay::Reset),
                            None => Replay::Reset,
                        };
                        match replay {
                            Replay::Events(missed) => for event in missed {
                                last = Some(event.id.clone());
                                yield Ok(sse(&event));
                            },
                            Replay::Reset => yield Ok(Event::default().event("reset").data("{}")),
                        }
                    }
                    Err(RecvError::Closed) => break,
                },
            }
        }
    };
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keepalive"),
    ))
}
