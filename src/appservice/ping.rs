//! `POST /_matrix/app/v1/ping`: the homeserver checks it can reach the appservice.

use axum::Json;
use axum::body::Bytes;
use ruma::api::IncomingRequestExt;
use ruma::api::appservice::ping::send_ping;

use crate::error::MatrixError;

/// Answers the homeserver's ping (sent when the daemon asks for one at start-up).
pub async fn ping(body: Bytes) -> Result<Json<serde_json::Value>, MatrixError> {
    let request = http::Request::post("/_matrix/app/v1/ping")
        .body(body.as_ref())
        .map_err(|e| MatrixError::not_json(e.to_string()))?;
    let ping = send_ping::v1::Request::try_from_http_request(request, &[] as &[&str])
        .map_err(|e| MatrixError::not_json(format!("not a ping: {e}")))?;
    tracing::debug!(transaction_id = ?ping.transaction_id, "homeserver ping");
    Ok(Json(serde_json::json!({})))
}
