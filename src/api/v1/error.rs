//! How the core's errors and axum's rejections answer, as Matrix errors.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;

use crate::auth::AuthError;
use crate::chat::ChatError;
use crate::error::MatrixError;
use crate::live::LiveError;

/// A 503 naming the part that is down (the database, Redis), else a 500.
fn internal(e: impl std::error::Error + Send + Sync + 'static, down: Option<&str>) -> MatrixError {
    match down {
        Some(part) => MatrixError::unavailable(part, e),
        None => MatrixError::internal(e),
    }
}

impl From<AuthError> for MatrixError {
    fn from(e: AuthError) -> Self {
        match e {
            // 401, not 403: every failed login answers the same.
            AuthError::Forbidden => MatrixError::new(
                StatusCode::UNAUTHORIZED,
                ruma::api::error::ErrorKind::Forbidden,
                "login failed",
            ),
            AuthError::UnknownToken => MatrixError::unknown_token(),
            AuthError::RateLimited(after) => MatrixError::limit_exceeded(after),
            other => {
                let down = other.unavailable();
                internal(other, down)
            }
        }
    }
}

impl From<ChatError> for MatrixError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::InvalidParam(m) => MatrixError::invalid_param(m),
            ChatError::NotFound(m) => MatrixError::not_found(m),
            ChatError::Forbidden(m) => MatrixError::forbidden(m),
            ChatError::Refused { kind, message } => MatrixError::refused(kind, message),
            other => {
                let down = other.unavailable();
                internal(other, down)
            }
        }
    }
}

impl From<LiveError> for MatrixError {
    fn from(e: LiveError) -> Self {
        let down = e.unavailable();
        internal(e, down)
    }
}

impl From<JsonRejection> for MatrixError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => MatrixError::bad_json(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => MatrixError::not_json(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => {
                MatrixError::not_json("the body must be JSON with Content-Type: application/json")
            }
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                MatrixError::too_large("request body too large (at most 64 KiB)")
            }
            other => MatrixError::bad_json(other.body_text()),
        }
    }
}
