//! What the API and the live stream say about rooms and their events.

use ruma::events::room::member::MembershipState;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::Serialize;
use utoipa::ToSchema;

use super::event::{Content, MessageKind, RoomEvent};

/// A message as the web client shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Message {
    #[schema(value_type = String)]
    pub event_id: OwnedEventId,
    #[schema(value_type = String)]
    pub room_id: OwnedRoomId,
    #[schema(value_type = String)]
    pub sender: OwnedUserId,
    /// The sender's display name in the room, if known.
    pub sender_name: Option<String>,
    /// The text; empty for kinds without one (`encrypted`).
    pub body: String,
    /// Milliseconds since the Unix epoch (the homeserver's timestamp).
    pub ts: i64,
    pub kind: MessageKind,
}

impl Message {
    /// The message an event shows as, if it is one.
    pub fn of(event: &RoomEvent, sender_name: Option<String>) -> Option<Self> {
        let Content::Message { kind, body } = &event.content else {
            return None;
        };
        Some(Self {
            event_id: event.event_id.clone(),
            room_id: event.room_id.clone(),
            sender: event.sender.clone(),
            sender_name,
            body: body.clone(),
            ts: event.ts,
            kind: *kind,
        })
    }
}

/// A membership change, as the live stream reports it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MembershipChange {
    #[schema(value_type = String)]
    pub room_id: OwnedRoomId,
    #[schema(value_type = String)]
    pub user_id: OwnedUserId,
    /// `join`, `invite`, `leave`, `ban` or `knock`.
    #[schema(value_type = String)]
    pub membership: MembershipState,
    #[schema(value_type = String)]
    pub sender: OwnedUserId,
}

/// A room's name changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoomChange {
    #[schema(value_type = String)]
    pub room_id: OwnedRoomId,
    pub name: Option<String>,
}

/// Who is typing in a room, as the live stream reports it (empty: nobody).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TypingChange {
    #[schema(value_type = String)]
    pub room_id: OwnedRoomId,
    #[schema(value_type = Vec<String>)]
    pub user_ids: Vec<OwnedUserId>,
}

/// The logged-in user has read a room up to an event (in this tab or another).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadChange {
    #[schema(value_type = String)]
    pub room_id: OwnedRoomId,
    #[schema(value_type = String)]
    pub event_id: OwnedEventId,
}

/// Another member has read a room up to an event (their read receipt moved).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReceiptChange {
    #[schema(value_type = String)]
    pub room_id: OwnedRoomId,
    #[schema(value_type = String)]
    pub user_id: OwnedUserId,
    #[schema(value_type = String)]
    pub event_id: OwnedEventId,
}

/// A room member.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Member {
    #[schema(value_type = String)]
    pub user_id: OwnedUserId,
    pub display_name: Option<String>,
    /// How far they have read (their read receipt), if known.
    #[schema(value_type = Option<String>)]
    pub read_event_id: Option<OwnedEventId>,
}

impl From<crate::store::MembershipRecord> for Member {
    /// The member as the index has them; their read receipt is not known here.
    fn from(m: crate::store::MembershipRecord) -> Self {
        Self {
            user_id: m.user_id,
            display_name: m.display_name,
            read_event_id: None,
        }
    }
}

/// A joined room.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoomSummary {
    #[schema(value_type = String)]
    pub room_id: OwnedRoomId,
    pub name: Option<String>,
    pub is_direct: bool,
    pub encrypted: bool,
    pub members: Vec<Member>,
    /// Invited and not yet joined (a direct room is named after them meanwhile).
    pub invited: Vec<Member>,
    pub last_message: Option<Message>,
    /// Messages of others after the user's read marker.
    pub unread: u64,
}

/// A pending invite.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Invite {
    #[schema(value_type = String)]
    pub room_id: OwnedRoomId,
    pub name: Option<String>,
    #[schema(value_type = String)]
    pub inviter: OwnedUserId,
}

/// A page of history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessagePage {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// Pass as `before` for the page before; null at the start of the room.
    pub prev: Option<String>,
}

/// A ChatSender user, as `GET /users` and `GET /me` show them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Profile {
    #[schema(value_type = String)]
    pub user_id: OwnedUserId,
    pub display_name: Option<String>,
}
