//! Errors of the JSON API, rendered as Matrix `{errcode, error}`.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::AuthError;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `M_NOT_JSON`: the body is not JSON.
    #[error("{0}")]
    NotJson(String),
    /// 400 `M_BAD_JSON`: JSON of the wrong shape (the message names the field).
    #[error("{0}")]
    BadJson(String),
    /// 413 `M_TOO_LARGE`: the body is over 64 KiB.
    #[error("request body too large (at most 64 KiB)")]
    TooLarge,
    /// 401 `M_MISSING_TOKEN`: no access token or session cookie.
    #[error("no access token: send `Authorization: Bearer <token>` or the session cookie")]
    MissingToken,
    /// 401 `M_UNKNOWN_TOKEN`: the session is unknown, ended or expired.
    #[error("unknown or expired session token")]
    UnknownToken,
    /// 401 `M_FORBIDDEN`: a login failed (the same answer whatever the reason).
    #[error("login failed")]
    LoginFailed,
    /// 403 `M_FORBIDDEN`: a cookie-authenticated change from another origin.
    #[error("cross-origin request refused: Origin must be {0}")]
    CrossOrigin(String),
    /// 400 `M_INVALID_PARAM`: a malformed id or parameter (the message names it).
    #[error("{0}")]
    InvalidParam(String),
    /// 403 `M_FORBIDDEN`: not allowed in this room.
    #[error("{0}")]
    Forbidden(String),
    /// 404 `M_NOT_FOUND`.
    #[error("{0}")]
    NotFound(String),
    /// The homeserver's own refusal, passed on (4xx).
    #[error("{message}")]
    Homeserver {
        status: StatusCode,
        errcode: String,
        message: String,
    },
    /// 429 `M_LIMIT_EXCEEDED`, with `Retry-After`.
    #[error("too many requests; retry in {} s", retry_secs(*.0))]
    LimitExceeded(Duration),
    /// 500 `M_UNKNOWN`: logged once by the router, never detailed to the client.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

fn retry_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &str) {
        match self {
            Self::InvalidParam(_) => (StatusCode::BAD_REQUEST, "M_INVALID_PARAM"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "M_FORBIDDEN"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "M_NOT_FOUND"),
            Self::Homeserver {
                status, errcode, ..
            } => (*status, errcode.as_str()),
            Self::NotJson(_) => (StatusCode::BAD_REQUEST, "M_NOT_JSON"),
            Self::BadJson(_) => (StatusCode::BAD_REQUEST, "M_BAD_JSON"),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE"),
            Self::MissingToken => (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN"),
            Self::UnknownToken => (StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN"),
            Self::LoginFailed => (StatusCode::UNAUTHORIZED, "M_FORBIDDEN"),
            Self::CrossOrigin(_) => (StatusCode::FORBIDDEN, "M_FORBIDDEN"),
            Self::LimitExceeded(_) => (StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN"),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Forbidden => Self::LoginFailed,
            AuthError::UnknownToken => Self::UnknownToken,
            AuthError::RateLimited(after) => Self::LimitExceeded(after),
            AuthError::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl From<crate::chat::service::ChatError> for ApiError {
    fn from(e: crate::chat::service::ChatError) -> Self {
        use crate::chat::service::ChatError;
        match e {
            ChatError::InvalidParam(m) => Self::InvalidParam(m),
            ChatError::NotFound(m) => Self::NotFound(m),
            ChatError::Forbidden(m) => Self::Forbidden(m),
            ChatError::Refused {
                status,
                errcode,
                message,
            } => Self::Homeserver {
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                errcode,
                message,
            },
            ChatError::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(e.into())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => Self::BadJson(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => Self::NotJson(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => {
                Self::NotJson("the body must be JSON with Content-Type: application/json".into())
            }
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::TooLarge
            }
            other => Self::BadJson(other.body_text()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, errcode) = self.status_and_code();
        let mut body = serde_json::json!({ "errcode": errcode, "error": self.to_string() });
        let retry_after = match &self {
            Self::LimitExceeded(after) => {
                body["retry_after_ms"] =
                    serde_json::json!(u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
                Some(retry_secs(*after).max(1))
            }
            _ => None,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Self::Internal(cause) = self {
            response.extensions_mut().insert(std::sync::Arc::new(cause));
        }
        response
    }
}
