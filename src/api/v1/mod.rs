//! The JSON API under `/api/v1`: what the web client (and any script) talks to.

mod auth;
mod error;
mod events;
mod extract;
mod me;
mod presence;
mod rooms;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use utoipa::OpenApi;

use crate::auth::Auth;
use crate::chat::Chat;
use crate::live::{Live, Slots};

/// Request bodies larger than this are refused with 413 `M_TOO_LARGE`.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the API handlers need.
#[derive(Clone)]
pub struct ApiState {
    pub auth: Auth,
    pub chat: Chat,
    pub live: Live,
    /// The caps on open live streams.
    pub streams: Arc<Slots>,
    pub trust_forwarded_for: bool,
}

/// The OpenAPI document of `/api/v1`.
#[derive(OpenApi)]
#[openapi(
    info(title = "ChatSender API", description = "Key login and chat for ChatSender's web client."),
    paths(
        auth::challenge, auth::login, auth::logout, me::me, rooms::set_display_name, rooms::users,
        rooms::rooms, rooms::create_room, rooms::join, rooms::leave, rooms::invite, rooms::messages,
        rooms::send, presence::read, presence::typing, events::events, openapi_json
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// This document, as JSON.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "the OpenAPI 3 document")))]
async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

/// The `/api/v1` routes.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/auth/challenge", post(auth::challenge))
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/me", get(me::me))
        .route("/me/display_name", put(rooms::set_display_name))
        .route("/users", get(rooms::users))
        .route("/rooms", get(rooms::rooms).post(rooms::create_room))
        .route("/rooms/{room_id}/join", post(rooms::join))
        .route("/rooms/{room_id}/leave", post(rooms::leave))
        .route("/rooms/{room_id}/invite", post(rooms::invite))
        .route("/rooms/{room_id}/messages", get(rooms::messages))
        .route("/rooms/{room_id}/send/{txn_id}", put(rooms::send))
        .route("/rooms/{room_id}/read", post(presence::read))
        .route("/rooms/{room_id}/typing", put(presence::typing))
        .route("/events", get(events::events))
        .route("/openapi.json", get(openapi_json))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state);
    Router::new().nest("/api/v1", api)
}
