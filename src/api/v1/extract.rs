//! Request extractors of the JSON API: JSON bodies with Matrix errors, the session.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use serde::de::DeserializeOwned;

use super::ApiState;
use crate::auth::Authenticated;
use crate::error::MatrixError;

/// The session cookie's name: with an https origin the `__Host-` prefix, which a
/// browser accepts only from this host itself (Secure, Path=/, no Domain), so a
/// sibling subdomain cannot plant one.
pub fn session_cookie(origin: &str) -> &'static str {
    if origin.starts_with("https://") {
        "__Host-chatsender_session"
    } else {
        "chatsender_session"
    }
}

/// A JSON body; malformed or oversized bodies become Matrix errors naming the problem.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = MatrixError;

    async fn from_request(req: Request, state: &S) -> Result<Self, MatrixError> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// The client's address: the connection's peer, or the last `X-Forwarded-For` hop
/// when `auth.trust_forwarded_for` is set (behind nginx).
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<ApiState> for ClientIp {
    type Rejection = MatrixError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, MatrixError> {
        if state.trust_forwarded_for
            && let Some(ip) = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse().ok())
        {
            return Ok(Self(ip));
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(Self(peer.unwrap_or(IpAddr::from([127, 0, 0, 1]))))
    }
}

/// The logged-in user of a request (bearer token or session cookie).
pub struct Session(pub Authenticated);

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

impl FromRequestParts<ApiState> for Session {
    type Rejection = MatrixError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, MatrixError> {
        let token = if let Some(token) = bearer(parts) {
            token
        } else if let Some(token) = cookie(parts, session_cookie(state.auth.origin())) {
            // A cookie rides along on cross-site requests; a bearer token cannot.
            let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
            let origin = parts
                .headers
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok());
            if !safe && origin != Some(state.auth.origin()) {
                return Err(MatrixError::forbidden(format!(
                    "cross-origin request refused: Origin must be {}",
                    state.auth.origin()
                )));
            }
            token
        } else {
            return Err(MatrixError::missing_token(
                "no access token: send `Authorization: Bearer <token>` or the session cookie",
            ));
        };
        Ok(Self(state.auth.authenticate(token).await?))
    }
}

/// Path parameters; a malformed one is `400 M_INVALID_PARAM` naming it.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = MatrixError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, MatrixError> {
        let axum::extract::Path(value) = axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| MatrixError::invalid_param(e.body_text()))?;
        Ok(Self(value))
    }
}

/// Query parameters; a malformed one is `400 M_INVALID_PARAM` naming it.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = MatrixError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, MatrixError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|e| MatrixError::invalid_param(e.body_text()))?;
        Ok(Self(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_origins_get_a_host_only_cookie() {
        assert_eq!(
            session_cookie("https://chat.example.org"),
            "__Host-chatsender_session"
        );
        assert_eq!(
            session_cookie("http://127.0.0.1:8000"),
            "chatsender_session"
        );
    }
}
