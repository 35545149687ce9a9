//! The JSON API under `/api/v1`: what the web client (and any script) talks to.

mod auth;
mod error;
mod extract;
mod me;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use utoipa::OpenApi;

pub use error::ApiError;

use crate::auth::Auth;
use crate::store::Store;

/// Request bodies larger than this are refused with 413 `M_TOO_LARGE`.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the API handlers need.
#[derive(Clone)]
pub struct ApiState {
    pub auth: Auth,
    pub store: Arc<dyn Store>,
    pub trust_forwarded_for: bool,
}

/// The OpenAPI document of `/api/v1`.
#[derive(OpenApi)]
#[openapi(
    info(title = "ChatSender API", description = "Key login and chat for ChatSender's web client."),
    paths(auth::challenge, auth::login, auth::logout, me::me, openapi_json),
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
        .route("/openapi.json", get(openapi_json))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state);
    Router::new().nest("/api/v1", api)
}
