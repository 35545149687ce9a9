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
use crate::live::{LiveBus, LiveEvent, Replay};

/// How often an open stream checks its session is still valid.
const SESSION_CHECK: Duration = Duration::from_secs(5);

/// What the user missed after `last`; a reset when there is no `last`.
async fn catch_up(bus: &dyn LiveBus, user: &str, last: Option<&str>) -> Replay {
    match last {
        Some(last) => bus.replay(user, last).await.unwrap_or(Replay::Reset),
        None => Replay::Reset,
    }
}

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
        let mut pending = Some(replay);
        let mut check = tokio::time::interval(SESSION_CHECK);
        check.tick().await;
        loop {
            // Send what a replay found (at the start, or after falling behind).
            match pending.take() {
                Some(Replay::Events(missed)) => {
                    for event in missed {
                        last = Some(event.id.clone());
                        yield Ok(sse(&event));
                    }
                }
                Some(Replay::Reset) => {
                    // The reset carries the newest id, so a reconnect resumes from there.
                    last = bus.latest_id(&user).await.unwrap_or(None);
                    let reset = Event::default().event("reset").data("{}");
                    yield Ok(match &last {
                        Some(id) => reset.id(id.clone()),
                        None => reset,
                    });
                }
                None => {}
            }
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
                            continue; // Already sent by a replay.
                        }
                        last = Some(event.id.clone());
                        yield Ok(sse(&event));
                    }
                    // This connection fell behind, or the bus may have missed events:
                    // catch up from the stream itself.
                    Ok(event) if event.user_id.is_empty() => {
                        pending = Some(catch_up(&*bus, &user, last.as_deref()).await);
                    }
                    Err(RecvError::Lagged(_)) => {
                        pending = Some(catch_up(&*bus, &user, last.as_deref()).await);
                    }
                    Ok(_) => {}
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
