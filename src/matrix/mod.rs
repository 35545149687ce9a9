//! The daemon's side of the Client-Server API: acting on Synapse as the appservice
//! bot or as one of its puppets (the as_token plus `?user_id=`).
//!
//! The core uses the [`Homeserver`] trait; [`HomeserverClient`] implements it with
//! ruma's request types sent by reqwest.

mod client;
#[cfg(test)]
pub mod fake;

use async_trait::async_trait;
use ruma::api::error::ErrorKind;
use ruma::events::{AnyStateEvent, AnyTimelineEvent};
use ruma::serde::Raw;
use ruma::{EventId, OwnedEventId, OwnedRoomId, RoomId, UserId};

pub use client::HomeserverClient;

/// A failed homeserver request.
#[derive(Debug, thiserror::Error)]
pub enum HomeserverError {
    /// The homeserver could not be reached or did not answer in time.
    #[error("homeserver unreachable: {0}")]
    Unreachable(String),
    /// The homeserver answered with a Matrix error.
    #[error("homeserver refused {endpoint}: {status} {}: {message}", kind.errcode())]
    Refused {
        endpoint: &'static str,
        status: u16,
        kind: ErrorKind,
        message: String,
    },
    /// The request could not be built or the answer not understood.
    #[error("homeserver protocol error at {endpoint}: {message}")]
    Protocol {
        endpoint: &'static str,
        message: String,
    },
}

impl HomeserverError {
    /// The Matrix error of a refusal (`M_USER_IN_USE`, …), if any.
    pub fn kind(&self) -> Option<&ErrorKind> {
        match self {
            Self::Refused { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// What the daemon asks of the homeserver.
#[async_trait]
pub trait Homeserver: Send + Sync + 'static {
    /// `GET /_matrix/client/versions`: is the homeserver up at all.
    async fn reachable(&self) -> Result<(), HomeserverError>;

    /// Asks the homeserver to ping this appservice back, proving both directions work
    /// (and making Synapse retry its backlog at once).
    async fn ping(&self) -> Result<(), HomeserverError>;

    /// Registers `user_id` (in the appservice's namespace); already registered is fine.
    async fn register_puppet(&self, user_id: &UserId) -> Result<(), HomeserverError>;

    /// Sets `user_id`'s display name.
    async fn set_display_name(&self, user_id: &UserId, name: &str) -> Result<(), HomeserverError>;

    /// Creates a private room as `creator`, inviting `invite`.
    async fn create_room(
        &self,
        creator: &UserId,
        name: Option<&str>,
        invite: &[ruma::OwnedUserId],
        is_direct: bool,
    ) -> Result<OwnedRoomId, HomeserverError>;

    /// Invites `target` into `room_id` as `inviter`.
    async fn invite(
        &self,
        inviter: &UserId,
        room_id: &RoomId,
        target: &UserId,
    ) -> Result<(), HomeserverError>;

    /// Joins `room_id` as `user_id`.
    async fn join(&self, user_id: &UserId, room_id: &RoomId) -> Result<(), HomeserverError>;

    /// Leaves `room_id` as `user_id`.
    async fn leave(&self, user_id: &UserId, room_id: &RoomId) -> Result<(), HomeserverError>;

    /// Up to `limit` events before `from` (newest first) as `user_id` sees them, with
    /// the token for the page before, if any.
    async fn messages(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        from: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<Raw<AnyTimelineEvent>>, Option<String>), HomeserverError>;

    /// The room's current state events as `user_id` sees them.
    async fn room_state(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<Vec<Raw<AnyStateEvent>>, HomeserverError>;

    /// Moves `user_id`'s read receipt (`m.read`) and read marker (`m.fully_read`) in
    /// `room_id` to `event_id`.
    async fn set_read_markers(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<(), HomeserverError>;

    /// Shows `user_id` as typing in `room_id` for `timeout`, or (`None`) as not typing.
    async fn typing(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        timeout: Option<std::time::Duration>,
    ) -> Result<(), HomeserverError>;

    /// Sends a text message as `sender`; the same `txn_id` gives the same event.
    async fn send_text(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        txn_id: &str,
        body: &str,
    ) -> Result<OwnedEventId, HomeserverError>;
}
