//! `GET /api/v1/me`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;
use super::extract::Session;
use crate::error::MatrixError;

/// The logged-in user.
#[derive(Serialize, ToSchema)]
pub struct Me {
    pub user_id: String,
    pub display_name: Option<String>,
    /// The key this session logged in with.
    pub key_id: String,
}

/// Who the session belongs to.
#[utoipa::path(get, path = "/api/v1/me", tag = "me",
    responses((status = 200, body = Me), (status = 401, description = "no valid session")),
    security(("bearer" = [])))]
pub async fn me(
    State(state): State<ApiState>,
    Session(who): Session,
) -> Result<Json<Me>, MatrixError> {
    let profile = state.chat.profile(&who.user_id).await?;
    Ok(Json(Me {
        user_id: who.user_id.to_string(),
        display_name: profile.display_name,
        key_id: who.key_id,
    }))
}
