//! The one error both HTTP faces answer with: Matrix's `{"errcode", "error"}`.
//!
//! The core's errors carry no HTTP status; each face maps them to a [`MatrixError`],
//! choosing the status. A 500's cause travels in the response's extensions, where the
//! router logs it once; it never reaches the client.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ruma::api::error::{ErrorKind, LimitExceededErrorData, RetryAfter, StandardErrorBody};

/// The internal cause of a 500, kept for the log.
#[derive(Clone)]
pub struct InternalCause(pub Arc<dyn std::error::Error + Send + Sync>);

impl fmt::Display for InternalCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The whole chain: the top of a sqlx or reqwest error hides its cause.
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// An answer other than success.
#[derive(Clone)]
pub struct MatrixError {
    status: StatusCode,
    kind: ErrorKind,
    message: String,
    cause: Option<InternalCause>,
    /// Seconds for `Retry-After` (a 503).
    retry_after: Option<u64>,
}

impl fmt::Debug for MatrixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            self.kind.errcode(),
            self.message
        )?;
        if let Some(cause) = &self.cause {
            write!(f, " ({cause})")?;
        }
        Ok(())
    }
}

impl fmt::Display for MatrixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl MatrixError {
    /// An error with this status, kind and message.
    pub fn new(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            cause: None,
            retry_after: None,
        }
    }

    /// 400 `M_INVALID_PARAM`: a malformed id or parameter (the message names it).
    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidParam, message)
    }

    /// 400 `M_NOT_JSON`: the body is not JSON.
    pub fn not_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::NotJson, message)
    }

    /// 400 `M_BAD_JSON`: JSON of the wrong shape (the message names the field).
    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::BadJson, message)
    }

    /// 401 `M_MISSING_TOKEN`.
    pub fn missing_token(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorKind::MissingToken, message)
    }

    /// 401 `M_UNKNOWN_TOKEN`: the session is unknown, ended or expired.
    pub fn unknown_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorKind::UnknownToken(Default::default()),
            "unknown or expired session token",
        )
    }

    /// 403 `M_FORBIDDEN`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorKind::Forbidden, message)
    }

    /// 404 `M_NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorKind::NotFound, message)
    }

    /// 404 `M_UNRECOGNIZED`: no such endpoint.
    pub fn unrecognized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorKind::Unrecognized, message)
    }

    /// 413 `M_TOO_LARGE`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge, message)
    }

    /// 429 `M_LIMIT_EXCEEDED` with `Retry-After` and `retry_after_ms`.
    pub fn limit_exceeded(retry_after: Duration) -> Self {
        let mut data = LimitExceededErrorData::new();
        data.retry_after = Some(RetryAfter::Delay(retry_after));
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::LimitExceeded(data),
            format!("too many requests; retry in {} s", retry_secs(retry_after)),
        )
    }

    /// 429 `M_LIMIT_EXCEEDED` for a cap that no wait lifts (no `Retry-After`).
    pub fn too_many(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::LimitExceeded(LimitExceededErrorData::new()),
            message,
        )
    }

    /// A refusal passed on from the homeserver: its errcode and message, with the
    /// status the Matrix spec gives that errcode (400 where it names none).
    pub fn refused(kind: ErrorKind, message: impl Into<String>) -> Self {
        let status = match &kind {
            ErrorKind::Forbidden
            | ErrorKind::GuestAccessForbidden
            | ErrorKind::UserDeactivated
            | ErrorKind::UserLocked
            | ErrorKind::UserSuspended
            | ErrorKind::ResourceLimitExceeded(_)
            | ErrorKind::CannotLeaveServerNoticeRoom
            | ErrorKind::InviteBlocked
            | ErrorKind::ThreepidDenied => StatusCode::FORBIDDEN,
            ErrorKind::NotFound | ErrorKind::Unrecognized => StatusCode::NOT_FOUND,
            ErrorKind::LimitExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, kind, message)
    }

    /// 500 `M_UNKNOWN`: `cause` is logged, never sent.
    pub fn internal(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            cause: Some(InternalCause(Arc::new(cause))),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorKind::Unknown,
                "internal error",
            )
        }
    }

    /// 503 `M_UNKNOWN` with `Retry-After`: `part` (the database, Redis) failed or
    /// did not answer in time. `cause` is logged, never sent.
    pub fn unavailable(part: &str, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            cause: Some(InternalCause(Arc::new(cause))),
            retry_after: Some(UNAVAILABLE_RETRY_SECS),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::Unknown,
                format!("{part} is unavailable; retry in a few seconds"),
            )
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// What a 503 for a storage outage asks the client to wait.
const UNAVAILABLE_RETRY_SECS: u64 = 2;

/// Whole seconds to wait, rounded up.
fn retry_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl IntoResponse for MatrixError {
    fn into_response(self) -> Response {
        let retry_after = match &self.kind {
            ErrorKind::LimitExceeded(LimitExceededErrorData {
                retry_after: Some(RetryAfter::Delay(d)),
                ..
            }) => Some(retry_secs(*d).max(1)),
            _ => self.retry_after,
        };
        let body = StandardErrorBody::new(self.kind, self.message);
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(cause) = self.cause {
            response.extensions_mut().insert(cause);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn render(e: MatrixError) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = e.into_response();
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        (status, retry, serde_json::from_slice(&body).expect("json"))
    }

    #[tokio::test]
    async fn renders_errcode_and_message_only() {
        let (status, _, body) = render(MatrixError::forbidden("no")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body,
            serde_json::json!({"errcode": "M_FORBIDDEN", "error": "no"})
        );
        let (_, _, body) = render(MatrixError::unknown_token()).await;
        assert_eq!(body["errcode"], "M_UNKNOWN_TOKEN");
        assert!(body.get("soft_logout").is_none());
    }

    #[tokio::test]
    async fn a_rate_limit_says_when_to_retry() {
        let (status, retry, body) =
            render(MatrixError::limit_exceeded(Duration::from_millis(1500))).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry.as_deref(), Some("2"));
        assert_eq!(body["retry_after_ms"], 1500);
        assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED");
    }

    #[tokio::test]
    async fn the_cause_of_a_500_is_kept_out_of_the_body() {
        let cause = std::io::Error::other("disk on fire");
        let response = MatrixError::internal(cause).into_response();
        let logged = response
            .extensions()
            .get::<InternalCause>()
            .map(ToString::to_string);
        assert_eq!(logged.as_deref(), Some("disk on fire"));
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        assert!(!String::from_utf8_lossy(&body).contains("fire"));
    }
}
