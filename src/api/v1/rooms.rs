//! `/api/v1/users`, `/api/v1/me/display_name` and `/api/v1/rooms/…`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::extract::{ApiJson, ApiPath, ApiQuery, Session};
use crate::chat::message::{Invite, MessagePage, Profile, RoomSummary};
use crate::chat::{parse_room_id, parse_user_id};
use crate::error::MatrixError;

/// Every ChatSender user with an active key.
#[derive(Serialize, ToSchema)]
pub struct Users {
    pub users: Vec<Profile>,
}

/// A new display name.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisplayName {
    /// 1 to 256 bytes once trimmed; no control characters, no bidirectional overrides
    /// or isolates, and not only invisible characters (each refused with
    /// `400 M_INVALID_PARAM` naming the problem).
    pub display_name: String,
}

/// Rooms and invites.
#[derive(Serialize, ToSchema)]
pub struct Rooms {
    pub rooms: Vec<RoomSummary>,
    pub invites: Vec<Invite>,
}

/// A room to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    pub name: Option<String>,
    /// Any Matrix users, ChatSender's or not.
    #[serde(default)]
    pub invite: Vec<String>,
    #[serde(default)]
    pub is_direct: bool,
}

/// The created room.
#[derive(Serialize, ToSchema)]
pub struct Created {
    pub room_id: String,
}

/// Whom to invite.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteUser {
    pub user_id: String,
}

/// A message to send.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    pub body: String,
}

/// The sent event.
#[derive(Serialize, ToSchema)]
pub struct Sent {
    pub event_id: String,
}

/// History paging.
#[derive(Deserialize, IntoParams)]
pub struct History {
    /// How many messages (1 to 200, default 50).
    pub limit: Option<u32>,
    /// A `prev` token from an earlier page.
    pub before: Option<String>,
}

fn empty() -> Json<serde_json::Value> {
    Json(serde_json::json!({}))
}

/// ChatSender users with an active key.
#[utoipa::path(get, path = "/api/v1/users", tag = "chat", responses((status = 200, body = Users)), security(("bearer" = [])))]
pub async fn users(
    State(state): State<ApiState>,
    Session(_): Session,
) -> Result<Json<Users>, MatrixError> {
    let users = state.chat.users().await?;
    Ok(Json(Users { users }))
}

/// Sets the user's display name.
#[utoipa::path(put, path = "/api/v1/me/display_name", tag = "me", request_body = DisplayName,
    responses((status = 200, description = "set"),
        (status = 400, description = "`M_INVALID_PARAM`: the name is refused; the message says why")),
    security(("bearer" = [])))]
pub async fn set_display_name(
    State(state): State<ApiState>,
    Session(who): Session,
    ApiJson(body): ApiJson<DisplayName>,
) -> Result<Json<serde_json::Value>, MatrixError> {
    state
        .chat
        .set_display_name(&who.user_id, &body.display_name)
        .await?;
    Ok(empty())
}

/// Joined rooms and pending invites.
#[utoipa::path(get, path = "/api/v1/rooms", tag = "chat", responses((status = 200, body = Rooms)), security(("bearer" = [])))]
pub async fn rooms(
    State(state): State<ApiState>,
    Session(who): Session,
) -> Result<Json<Rooms>, MatrixError> {
    let (rooms, invites) = state.chat.rooms(&who.user_id).await?;
    Ok(Json(Rooms { rooms, invites }))
}

/// Creates a private room.
#[utoipa::path(post, path = "/api/v1/rooms", tag = "chat", request_body = CreateRoom,
    responses((status = 201, body = Created)), security(("bearer" = [])))]
pub async fn create_room(
    State(state): State<ApiState>,
    Session(who): Session,
    ApiJson(body): ApiJson<CreateRoom>,
) -> Result<(StatusCode, Json<Created>), MatrixError> {
    let invite = body
        .invite
        .iter()
        .map(|u| parse_user_id(u))
        .collect::<Result<Vec<_>, _>>()?;
    let name = body
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let room = state
        .chat
        .create_room(&who.user_id, name, &invite, body.is_direct)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            room_id: room.to_string(),
        }),
    ))
}

/// Accepts an invite.
#[utoipa::path(post, path = "/api/v1/rooms/{room_id}/join", tag = "chat",
    params(("room_id" = String, Path)), responses((status = 200)), security(("bearer" = [])))]
pub async fn join(
    State(state): State<ApiState>,
    Session(who): Session,
    ApiPath(room_id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, MatrixError> {
    state
        .chat
        .join(&who.user_id, &parse_room_id(&room_id)?)
        .await?;
    Ok(empty())
}

/// Leaves a room or declines an invite.
#[utoipa::path(post, path = "/api/v1/rooms/{room_id}/leave", tag = "chat",
    params(("room_id" = String, Path)), responses((status = 200)), security(("bearer" = [])))]
pub async fn leave(
    State(state): State<ApiState>,
    Session(who): Session,
    ApiPath(room_id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, MatrixError> {
    state
        .chat
        .leave(&who.user_id, &parse_room_id(&room_id)?)
        .await?;
    Ok(empty())
}

/// Invites any Matrix user.
#[utoipa::path(post, path = "/api/v1/rooms/{room_id}/invite", tag = "chat", request_body = InviteUser,
    params(("room_id" = String, Path)), responses((status = 200)), security(("bearer" = [])))]
pub async fn invite(
    State(state): State<ApiState>,
    Session(who): Session,
    ApiPath(room_id): ApiPath<String>,
    ApiJson(body): ApiJson<InviteUser>,
) -> Result<Json<serde_json::Value>, MatrixError> {
    let room = parse_room_id(&room_id)?;
    state
        .chat
        .invite(&who.user_id, &room, &parse_user_id(&body.user_id)?)
        .await?;
    Ok(empty())
}

/// History, newest `limit` before `before`, oldest first.
#[utoipa::path(get, path = "/api/v1/rooms/{room_id}/messages", tag = "chat", params(("room_id" = String, Path), History),
    responses((status = 200, body = MessagePage)), security(("bearer" = [])))]
pub async fn messages(
    State(state): State<ApiState>,
    Session(who): Session,
    ApiPath(room_id): ApiPath<String>,
    ApiQuery(history): ApiQuery<History>,
) -> Result<Json<MessagePage>, MatrixError> {
    let room = parse_room_id(&room_id)?;
    let page = state
        .chat
        .messages(
            &who.user_id,
            &room,
            history.limit.unwrap_or(50),
            history.before.as_deref(),
        )
        .await?;
    Ok(Json(page))
}

/// Sends a text message. The same txn_id from the same user in the same room gives
/// the same event; in another room it is another message.
#[utoipa::path(put, path = "/api/v1/rooms/{room_id}/send/{txn_id}", tag = "chat", request_body = SendMessage,
    params(("room_id" = String, Path), ("txn_id" = String, Path)), responses((status = 200, body = Sent)), security(("bearer" = [])))]
pub async fn send(
    State(state): State<ApiState>,
    Session(who): Session,
    ApiPath((room_id, txn_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<SendMessage>,
) -> Result<Json<Sent>, MatrixError> {
    let room = parse_room_id(&room_id)?;
    let event_id = state
        .chat
        .send(&who.user_id, &room, &txn_id, &body.body)
        .await?;
    Ok(Json(Sent {
        event_id: event_id.to_string(),
    }))
}
