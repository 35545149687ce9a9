//! Chat: conversations as a logged-in user sees them, and the feed that keeps the room
//! index and the live streams up to date with what the homeserver pushes.
//!
//! Every call of [`Chat`] acts only as the user's own puppet, and only in rooms the
//! puppet has joined (or, to join or decline, is invited to).

pub mod event;
mod history;
pub mod ingest;
pub mod message;
mod presence;
mod rooms;

use std::sync::Arc;

use ruma::api::error::ErrorKind;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

pub use ingest::Ingest;

use crate::identity::{PuppetError, Puppets};
use crate::live::{Live, LiveError};
use crate::matrix::{Homeserver, HomeserverError};
use crate::store::{EventLog, MembershipRecord, Receipts, RoomIndex, StoreError, UserStore};

/// Why a chat request failed.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A malformed id or parameter; the message names it.
    #[error("{0}")]
    InvalidParam(String),
    /// The room is not known to ChatSender.
    #[error("{0}")]
    NotFound(String),
    /// The user may not do this in this room.
    #[error("{0}")]
    Forbidden(String),
    /// The homeserver refused (its error and message are passed on).
    #[error("{message}")]
    Refused { kind: ErrorKind, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Homeserver(HomeserverError),
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error("cannot encode a stream payload: {0}")]
    Encode(serde_json::Error),
}

impl ChatError {
    /// The part that is down or did not answer in time, if that is the cause.
    pub fn unavailable(&self) -> Option<&'static str> {
        match self {
            Self::Store(e) => e.is_unavailable().then_some("the database"),
            Self::Live(e) => e.unavailable(),
            _ => None,
        }
    }
}

impl From<HomeserverError> for ChatError {
    fn from(e: HomeserverError) -> Self {
        match e {
            // A 401 would be about the appservice's token, not the user's session.
            HomeserverError::Refused {
                status,
                kind,
                message,
                ..
            } if status < 500 && status != 401 => Self::Refused { kind, message },
            other => Self::Homeserver(other),
        }
    }
}

impl From<PuppetError> for ChatError {
    fn from(e: PuppetError) -> Self {
        match e {
            PuppetError::Store(e) => e.into(),
            PuppetError::Homeserver(e) => e.into(),
        }
    }
}

/// Parses a room id from a path, naming it when malformed.
pub fn parse_room_id(raw: &str) -> Result<OwnedRoomId, ChatError> {
    RoomId::parse(raw)
        .map_err(|e| ChatError::InvalidParam(format!("`{raw}` is not a Matrix room id: {e}")))
}

/// Parses a user id, naming it when malformed.
pub fn parse_user_id(raw: &str) -> Result<OwnedUserId, ChatError> {
    UserId::parse(raw)
        .map_err(|e| ChatError::InvalidParam(format!("`{raw}` is not a Matrix user id: {e}")))
}

/// The chat service.
#[derive(Clone)]
pub struct Chat {
    rooms: Arc<dyn RoomIndex>,
    receipts: Arc<dyn Receipts>,
    events: Arc<dyn EventLog>,
    users: Arc<dyn UserStore>,
    puppets: Puppets,
    homeserver: Arc<dyn Homeserver>,
    live: Live,
}

/// What the chat service works with.
pub struct ChatParts {
    pub rooms: Arc<dyn RoomIndex>,
    pub receipts: Arc<dyn Receipts>,
    pub events: Arc<dyn EventLog>,
    pub users: Arc<dyn UserStore>,
    pub puppets: Puppets,
    pub homeserver: Arc<dyn Homeserver>,
    pub live: Live,
}

impl Chat {
    /// The chat service over the daemon's state.
    pub fn new(parts: ChatParts) -> Self {
        let ChatParts {
            rooms,
            receipts,
            events,
            users,
            puppets,
            homeserver,
            live,
        } = parts;
        Self {
            rooms,
            receipts,
            events,
            users,
            puppets,
            homeserver,
            live,
        }
    }

    /// The user's membership of `room`, if it is one of `allowed`.
    async fn require(
        &self,
        user: &UserId,
        room: &RoomId,
        allowed: &[MembershipState],
    ) -> Result<MembershipRecord, ChatError> {
        match self.rooms.membership(room, user).await? {
            Some(m) if allowed.contains(&m.membership) => Ok(m),
            Some(_) => Err(ChatError::Forbidden(format!("you are not in room {room}"))),
            None if self.rooms.room(room).await?.is_some() => {
                Err(ChatError::Forbidden(format!("you are not in room {room}")))
            }
            None => Err(ChatError::NotFound(format!("unknown room {room}"))),
        }
    }
}
