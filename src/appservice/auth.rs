//! The hs_token check in front of every endpoint Synapse calls.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::AppserviceState;
use crate::error::MatrixError;

/// Lets a request through only with this appservice's hs_token, sent as a bearer
/// token or (legacy Synapse) as the `access_token` query parameter.
pub async fn require_hs_token(
    State(state): State<AppserviceState>,
    request: Request,
    next: Next,
) -> Result<Response, MatrixError> {
    let token = bearer(&request).or_else(|| query_token(&request));
    let Some(token) = token else {
        return Err(MatrixError::missing_token(
            "no access token: send the hs_token as `Authorization: Bearer …`",
        ));
    };
    let expected = state.hs_token.expose_secret().as_bytes();
    if !bool::from(token.as_bytes().ct_eq(expected)) {
        return Err(MatrixError::forbidden(
            "the access token is not this application service's hs_token",
        ));
    }
    Ok(next.run(request).await)
}

fn bearer(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn query_token(request: &Request) -> Option<String> {
    let query = request.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
}
