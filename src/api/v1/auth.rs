//! `POST /api/v1/auth/challenge`, `POST /api/v1/auth/login`, `POST /api/v1/auth/logout`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::extract::{ApiJson, ClientIp, Session, session_cookie};
use crate::auth::Challenge;
use crate::error::MatrixError;
use crate::time::rfc3339;

/// Asks for a challenge for a public key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// Standard base64 (padded or not) of the 32-byte Ed25519 public key.
    pub public_key: String,
}

/// A challenge to sign.
#[derive(Serialize, ToSchema)]
pub struct ChallengeResponse {
    pub challenge_id: String,
    /// The exact text to sign (its UTF-8 bytes).
    pub message: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
}

/// Answers a signed challenge.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub challenge_id: String,
    /// Standard base64 of the 64-byte Ed25519 signature of the message.
    pub signature: String,
}

/// A new session.
#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    pub access_token: String,
    pub user_id: String,
    pub key_id: String,
    /// RFC 3339 UTC: the session ends then at the latest.
    pub expires_at: String,
}

/// Issues a login challenge. Unknown and revoked keys get the same answer, and so do
/// keys that could never be registered for a torsion component.
#[utoipa::path(post, path = "/api/v1/auth/challenge", tag = "auth",
    request_body = ChallengeRequest,
    responses((status = 200, body = ChallengeResponse), (status = 401, description = "malformed or weak key"),
              (status = 429, description = "rate limited")))]
pub async fn challenge(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    ApiJson(request): ApiJson<ChallengeRequest>,
) -> Result<Json<ChallengeResponse>, MatrixError> {
    let Challenge {
        challenge_id,
        message,
        expires_at,
    } = state.auth.challenge(&request.public_key, ip).await?;
    Ok(Json(ChallengeResponse {
        challenge_id,
        message,
        expires_at,
    }))
}

/// Opens a session for a correctly signed challenge; sets the session cookie too.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, description = "login failed"),
              (status = 429, description = "rate limited")))]
pub async fn login(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Response, MatrixError> {
    let session = state
        .auth
        .login(&request.challenge_id, &request.signature, ip)
        .await?;
    let secure = if state.auth.origin().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        session_cookie(state.auth.origin()),
        session.access_token,
        state.auth.session_max().as_secs()
    );
    let body = LoginResponse {
        access_token: session.access_token,
        user_id: session.user_id.to_string(),
        key_id: session.key_id,
        expires_at: rfc3339(session.expires_at),
    };
    let mut response = Json(body).into_response();
    let cookie = HeaderValue::try_from(cookie).map_err(MatrixError::internal)?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Ends the session and clears the cookie.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 200, description = "logged out"), (status = 401, description = "no session")),
    security(("bearer" = [])))]
pub async fn logout(
    State(state): State<ApiState>,
    Session(who): Session,
) -> Result<Response, MatrixError> {
    state.auth.logout(&who).await?;
    // This daemon's streams of the session end now; other daemons' at their next check.
    state.streams.end(&[who.token_hash]);
    let mut response = Json(serde_json::json!({})).into_response();
    let name = session_cookie(state.auth.origin());
    let secure = if state.auth.origin().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let clear = format!("{name}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}");
    let clear = HeaderValue::try_from(clear).map_err(MatrixError::internal)?;
    response.headers_mut().insert(header::SET_COOKIE, clear);
    Ok(response)
}
