//! [`Homeserver`] over HTTP: ruma builds each request, reqwest sends it.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ruma::api::auth_scheme::{AuthScheme, SendAccessToken};
use ruma::api::client::{
    account, appservice, membership, message, profile, read_marker, room, typing,
};
use ruma::api::error::{ErrorKind, StandardErrorBody};
use ruma::api::path_builder::PathBuilder;
use ruma::api::{
    AppserviceUserIdentity, IncomingResponseExt, MatrixVersion, OutgoingRequest,
    OutgoingRequestAppserviceExt, OutgoingRequestExt, SupportedVersions,
};
use ruma::events::room::message::RoomMessageEventContent;
use ruma::events::{AnyStateEvent, AnyTimelineEvent};
use ruma::serde::Raw;
use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, TransactionId, UserId};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{Homeserver, HomeserverError};

/// How long one homeserver request may take before it counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client to the homeserver that authenticates as the application service.
#[derive(Clone)]
pub struct HomeserverClient {
    http: reqwest::Client,
    base_url: String,
    appservice_id: String,
    as_token: SecretString,
    versions: SupportedVersions,
}

impl std::fmt::Debug for HomeserverClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HomeserverClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl HomeserverClient {
    /// A client for the homeserver at `base_url`.
    pub fn new(
        base_url: &Url,
        appservice_id: &str,
        as_token: SecretString,
    ) -> Result<Self, reqwest::Error> {
        crate::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("chatsender/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let mut versions = SupportedVersions::from_parts(&[], &Default::default());
        // Synapse 1.163 speaks v1.12+; v1.11 selects the stable `/v3` and `/v1` paths.
        versions.versions.insert(MatrixVersion::V1_11);
        Ok(Self {
            http,
            base_url: base_url.as_str().trim_end_matches('/').to_owned(),
            appservice_id: appservice_id.to_owned(),
            as_token,
            versions,
        })
    }

    /// Sends `request` as the appservice, or as `user` when given; records its latency.
    async fn call<R>(
        &self,
        endpoint: &'static str,
        request: R,
        user: Option<&UserId>,
    ) -> Result<R::IncomingResponse, HomeserverError>
    where
        R: OutgoingRequest,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
        for<'a> R::PathBuilder: PathBuilder<Input<'a> = Cow<'a, SupportedVersions>>,
    {
        let protocol = |message: String| HomeserverError::Protocol { endpoint, message };
        let token = SendAccessToken::Appservice(self.as_token.expose_secret());
        let versions = Cow::Borrowed(&self.versions);
        let http_request = match user {
            Some(user) => request.try_into_http_request_with_identity::<Vec<u8>>(
                &self.base_url,
                token,
                AppserviceUserIdentity::new(user),
                versions,
            ),
            None => request.try_into_http_request::<Vec<u8>>(&self.base_url, token, versions),
        }
        .map_err(|e| protocol(e.to_string()))?;
        let started = Instant::now();
        let result = self.execute(http_request).await;
        metrics::histogram!("chatsender_homeserver_request_duration_seconds", "endpoint" => endpoint)
            .record(started.elapsed().as_secs_f64());
        let (status, body) = result?;
        let response = http::Response::builder()
            .status(status)
            .body(body.as_slice())
            .map_err(|e| protocol(e.to_string()))?;
        if status >= 400 {
            let (kind, message) = refusal(status, &body);
            return Err(HomeserverError::Refused {
                endpoint,
                status,
                kind,
                message,
            });
        }
        R::IncomingResponse::try_from_http_response(response).map_err(|e| protocol(e.to_string()))
    }

    async fn execute(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), HomeserverError> {
        let request = reqwest::Request::try_from(request)
            .map_err(|e| HomeserverError::Unreachable(e.to_string()))?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| HomeserverError::Unreachable(error_chain(&e)))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| HomeserverError::Unreachable(error_chain(&e)))?;
        Ok((status, body.to_vec()))
    }
}

/// The errcode and message of a refusal. A body ruma cannot read (a known errcode
/// without its data, or not JSON at all) still gives what it can; a body that is not
/// a Matrix error is never passed on as the message.
fn refusal(status: u16, body: &[u8]) -> (ErrorKind, String) {
    if let Ok(error) = serde_json::from_slice::<StandardErrorBody>(body) {
        return (error.kind, error.message);
    }
    #[derive(serde::Deserialize)]
    struct Loose {
        errcode: Option<String>,
        error: Option<String>,
    }
    let loose = serde_json::from_slice::<Loose>(body).ok();
    let kind = loose
        .as_ref()
        .and_then(|l| l.errcode.as_deref())
        .and_then(|code| serde_json::from_value(serde_json::json!({ "errcode": code })).ok())
        .unwrap_or(ErrorKind::Unknown);
    let message = loose
        .and_then(|l| l.error)
        .unwrap_or_else(|| format!("the homeserver answered {status}"));
    (kind, message)
}

/// reqwest's top-level message hides the cause ("error sending request"); show it all.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[async_trait]
impl Homeserver for HomeserverClient {
    async fn reachable(&self) -> Result<(), HomeserverError> {
        let url = format!("{}/_matrix/client/versions", self.base_url);
        let response = self
            .http
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| HomeserverError::Unreachable(error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(HomeserverError::Unreachable(format!(
                "/_matrix/client/versions answered {}",
                response.status()
            )));
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), HomeserverError> {
        let mut request = appservice::request_ping::v1::Request::new(self.appservice_id.clone());
        request.transaction_id = Some(TransactionId::new());
        self.call("appservice_ping", request, None).await?;
        Ok(())
    }

    async fn register_puppet(&self, user_id: &UserId) -> Result<(), HomeserverError> {
        let mut request = account::register::v3::Request::new();
        request.username = Some(user_id.localpart().to_owned());
        request.login_type = Some(account::register::LoginType::ApplicationService);
        request.inhibit_login = true;
        match self.call("register", request, None).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.kind(), Some(ErrorKind::UserInUse)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn set_display_name(&self, user_id: &UserId, name: &str) -> Result<(), HomeserverError> {
        let value = profile::ProfileFieldValue::DisplayName(name.to_owned());
        let request = profile::set_profile_field::v3::Request::new(user_id.to_owned(), value);
        self.call("set_display_name", request, Some(user_id))
            .await?;
        Ok(())
    }

    async fn create_room(
        &self,
        creator: &UserId,
        name: Option<&str>,
        invite: &[OwnedUserId],
        is_direct: bool,
    ) -> Result<OwnedRoomId, HomeserverError> {
        let mut request = room::create_room::v3::Request::new();
        request.name = name.map(str::to_owned);
        request.invite = invite.to_vec();
        request.is_direct = is_direct;
        request.preset = Some(room::create_room::v3::RoomPreset::PrivateChat);
        request.visibility = room::Visibility::Private;
        Ok(self
            .call("create_room", request, Some(creator))
            .await?
            .room_id)
    }

    async fn invite(
        &self,
        inviter: &UserId,
        room_id: &RoomId,
        target: &UserId,
    ) -> Result<(), HomeserverError> {
        use membership::invite_user::v3;
        let recipient = v3::InviteUserId::new(target.to_owned()).into();
        let request = v3::Request::new(room_id.to_owned(), recipient);
        self.call("invite", request, Some(inviter)).await?;
        Ok(())
    }

    async fn join(&self, user_id: &UserId, room_id: &RoomId) -> Result<(), HomeserverError> {
        let request = membership::join_room_by_id::v3::Request::new(room_id.to_owned());
        self.call("join", request, Some(user_id)).await?;
        Ok(())
    }

    async fn leave(&self, user_id: &UserId, room_id: &RoomId) -> Result<(), HomeserverError> {
        let request = membership::leave_room::v3::Request::new(room_id.to_owned());
        self.call("leave", request, Some(user_id)).await?;
        Ok(())
    }

    async fn messages(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        from: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<Raw<AnyTimelineEvent>>, Option<String>), HomeserverError> {
        let mut request = message::get_message_events::v3::Request::new(
            room_id.to_owned(),
            ruma::api::Direction::Backward,
        );
        request.from = from.map(str::to_owned);
        request.limit = limit.into();
        let response = self.call("messages", request, Some(user_id)).await?;
        Ok((response.chunk, response.end))
    }

    async fn room_state(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<Vec<Raw<AnyStateEvent>>, HomeserverError> {
        let request =
            ruma::api::client::state::get_state_events::v3::Request::new(room_id.to_owned());
        Ok(self
            .call("room_state", request, Some(user_id))
            .await?
            .room_state)
    }

    async fn set_read_markers(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<(), HomeserverError> {
        let mut request = read_marker::set_read_marker::v3::Request::new(room_id.to_owned());
        request.fully_read = Some(event_id.to_owned());
        request.read_receipt = Some(event_id.to_owned());
        self.call("read_markers", request, Some(user_id)).await?;
        Ok(())
    }

    async fn typing(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        timeout: Option<Duration>,
    ) -> Result<(), HomeserverError> {
        use typing::create_typing_event::v3::{Request, Typing, TypingInfo};
        let state = timeout.map_or(Typing::No, |t| Typing::Yes(TypingInfo::new(t)));
        let request = Request::new(user_id.to_owned(), room_id.to_owned(), state);
        self.call("typing", request, Some(user_id)).await?;
        Ok(())
    }

    async fn send_text(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        txn_id: &str,
        body: &str,
    ) -> Result<OwnedEventId, HomeserverError> {
        let content = RoomMessageEventContent::text_plain(body);
        let request = message::send_message_event::v3::Request::new(
            room_id.to_owned(),
            txn_id.into(),
            &content,
        )
        .map_err(|e| HomeserverError::Protocol {
            endpoint: "send",
            message: e.to_string(),
        })?;
        Ok(self.call("send", request, Some(sender)).await?.event_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_what_they_can() {
        let (kind, message) = refusal(403, br#"{"errcode":"M_FORBIDDEN","error":"no"}"#);
        assert_eq!(
            (kind.errcode().as_str(), message.as_str()),
            ("M_FORBIDDEN", "no")
        );
        let (kind, message) = refusal(403, br#"{"errcode":"M_RESOURCE_LIMIT_EXCEEDED"}"#);
        assert_eq!(
            kind.errcode().as_str(),
            "M_UNKNOWN",
            "no admin_contact: unreadable"
        );
        assert_eq!(message, "the homeserver answered 403");
        let (kind, message) = refusal(502, b"<html>Bad gateway</html>");
        assert_eq!(kind.errcode().as_str(), "M_UNKNOWN");
        assert!(!message.contains("html"), "{message}");
    }
}
