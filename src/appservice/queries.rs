//! `GET /_matrix/app/v1/users/{userId}` and `GET /_matrix/app/v1/rooms/{roomAlias}`.

use axum::Json;
use axum::extract::{Path, State};

use super::AppserviceState;
use crate::error::MatrixError;

/// The homeserver asks whether a user in our namespace exists: the bot and every
/// puppet the daemon registered do; others are not created on demand.
pub async fn query_user(
    State(state): State<AppserviceState>,
    Path(user_id): Path<String>,
) -> Result<Json<serde_json::Value>, MatrixError> {
    let not_found = || MatrixError::not_found(format!("no ChatSender user {user_id}"));
    let Ok(user) = ruma::UserId::parse(&user_id) else {
        return Err(not_found());
    };
    match state.puppets.exists(&user).await {
        Ok(true) => Ok(Json(serde_json::json!({}))),
        Ok(false) => Err(not_found()),
        Err(e) => Err(MatrixError::internal(e)),
    }
}

/// ChatSender owns no room aliases: every alias query is answered "not here".
pub async fn query_room_alias(Path(alias): Path<String>) -> MatrixError {
    MatrixError::not_found(format!("ChatSender provides no room alias {alias}"))
}
