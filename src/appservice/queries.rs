//! `GET /_matrix/app/v1/users/{userId}` and `GET /_matrix/app/v1/rooms/{roomAlias}`.

use axum::Json;
use axum::extract::{Path, State};

use super::{AppserviceError, AppserviceState};

/// The homeserver asks whether a user in our namespace exists: the bot and every
/// puppet the daemon registered do; others are not created on demand.
pub async fn query_user(
    State(state): State<AppserviceState>,
    Path(user_id): Path<String>,
) -> Result<Json<serde_json::Value>, AppserviceError> {
    let not_found = || AppserviceError::NotFound(format!("no ChatSender user {user_id}"));
    let Ok(user_id) = ruma::UserId::parse(&user_id) else {
        return Err(not_found());
    };
    if user_id == state.bot_user_id {
        return Ok(Json(serde_json::json!({})));
    }
    match state.store.puppet(&user_id).await {
        Ok(Some(_)) => Ok(Json(serde_json::json!({}))),
        Ok(None) => Err(not_found()),
        Err(e) => Err(AppserviceError::Internal(e.into())),
    }
}

/// ChatSender owns no room aliases: every alias query is answered "not here".
pub async fn query_room_alias(Path(alias): Path<String>) -> AppserviceError {
    AppserviceError::NotFound(format!("ChatSender provides no room alias {alias}"))
}
