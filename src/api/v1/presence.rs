//! `POST /api/v1/rooms/{room_id}/read` and `PUT /api/v1/rooms/{room_id}/typing`.

use axum::Json;
use axum::extract::State;
use ruma::OwnedEventId;
use serde::Deserialize;
use utoipa::ToSchema;

use super::ApiState;
use super::extract::{ApiJson, ApiPath, Session};
use crate::chat::parse_room_id;
use crate::error::MatrixError;

/// How far the user has read.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadUpTo {
    /// The newest event the user has seen.
    #[schema(value_type = String)]
    pub event_id: OwnedEventId,
}

/// Whether the user is typing.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Typing {
    pub typing: bool,
    /// How long the notification lasts unless renewed (default 30000, at most 120000).
    pub timeout_ms: Option<u64>,
}

/// Marks the room read up to an event: the puppet's `m.read` receipt and
/// `m.fully_read` marker on the homeserver; the user's other tabs get a `read` event.
#[utoipa::path(post, path = "/api/v1/rooms/{room_id}/read", tag = "chat", request_body = ReadUpTo,
    params(("room_id" = String, Path)), responses((status = 200)), security(("bearer" = [])))]
pub async fn read(
    State(state): State<ApiState>,
    Session(who): Session,
    ApiPath(room_id): ApiPath<String>,
    ApiJson(body): ApiJson<ReadUpTo>,
) -> Result<Json<serde_json::Value>, MatrixError> {
    let room = parse_room_id(&room_id)?;
    state.chat.read(&who.user_id, &room, &body.event_id).await?;
    Ok(Json(serde_json::json!({})))
}

/// Shows the user as typing in the room, or as not typing.
#[utoipa::path(put, path = "/api/v1/rooms/{room_id}/typing", tag = "chat", request_body = Typing,
    params(("room_id" = String, Path)), responses((status = 200)), security(("bearer" = [])))]
pub async fn typing(
    State(state): State<ApiState>,
    Session(who): Session,
    ApiPath(room_id): ApiPath<String>,
    ApiJson(body): ApiJson<Typing>,
) -> Result<Json<serde_json::Value>, MatrixError> {
    let room = parse_room_id(&room_id)?;
    state
        .chat
        .typing(&who.user_id, &room, body.typing, body.timeout_ms)
        .await?;
    Ok(Json(serde_json::json!({})))
}
