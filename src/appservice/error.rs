//! Errors of the application-service endpoints, rendered as Matrix `{errcode, error}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An answer to the homeserver other than success.
#[derive(Debug, thiserror::Error)]
pub enum AppserviceError {
    /// 401 `M_MISSING_TOKEN`: no hs_token was sent.
    #[error("no access token: send the hs_token as `Authorization: Bearer …`")]
    MissingToken,
    /// 403 `M_FORBIDDEN`: the token is not this appservice's hs_token.
    #[error("the access token is not this application service's hs_token")]
    Forbidden,
    /// 400 `M_NOT_JSON`: the body is not a transaction.
    #[error("{0}")]
    NotJson(String),
    /// 400 `M_INVALID_PARAM`: a path parameter out of bounds.
    #[error("{0}")]
    InvalidParam(String),
    /// 404 `M_NOT_FOUND`: no such user or alias here.
    #[error("{0}")]
    NotFound(String),
    /// 404 `M_UNRECOGNIZED`: no such endpoint.
    #[error("unrecognized request: {method} {path}")]
    Unrecognized { method: String, path: String },
    /// 500 `M_UNKNOWN`: the daemon could not record the transaction; Synapse retries it.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppserviceError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::MissingToken => (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN"),
            Self::Forbidden => (StatusCode::FORBIDDEN, "M_FORBIDDEN"),
            Self::NotJson(_) => (StatusCode::BAD_REQUEST, "M_NOT_JSON"),
            Self::InvalidParam(_) => (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "M_NOT_FOUND"),
            Self::Unrecognized { .. } => (StatusCode::NOT_FOUND, "M_UNRECOGNIZED"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN"),
        }
    }
}

impl IntoResponse for AppserviceError {
    fn into_response(self) -> Response {
        let (status, errcode) = self.status_and_code();
        let body = serde_json::json!({ "errcode": errcode, "error": self.to_string() });
        let mut response = (status, Json(body)).into_response();
        // The internal cause is logged once, by the trace layer, never sent.
        if let Self::Internal(cause) = self {
            response.extensions_mut().insert(std::sync::Arc::new(cause));
        }
        response
    }
}
