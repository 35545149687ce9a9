//! What the store keeps, as the core reads and writes it.

use std::sync::Arc;

use ruma::events::AnyTimelineEvent;
use ruma::events::room::member::MembershipState;
use ruma::serde::Raw;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

/// One room event as the application service received it.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub event_type: String,
    pub state_key: Option<String>,
    pub origin_server_ts: i64,
    /// The event exactly as the homeserver sent it.
    pub json: Raw<AnyTimelineEvent>,
}

impl EventRecord {
    /// Whether the event is a message (counted as unread), read from its type: the
    /// feed shows exactly these as messages.
    #[must_use]
    pub fn is_message(&self) -> bool {
        self.state_key.is_none()
            && matches!(
                self.event_type.as_str(),
                "m.room.message" | "m.room.encrypted" | "m.sticker"
            )
    }
}

/// A transaction pushed by the homeserver, identified by its id and the hash of its body.
#[derive(Debug, Clone)]
pub struct IncomingTransaction {
    pub txn_id: String,
    pub body_sha256: [u8; 32],
    pub events: Vec<EventRecord>,
}

/// What recording a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionOutcome {
    /// This (txn_id, body) was recorded before: nothing was done.
    Duplicate,
    /// Recorded; `new` are its events that were in no earlier transaction, each as
    /// (its place in the event log, its index in the transaction), in log order.
    Recorded { new: Vec<(i64, usize)> },
}

impl TransactionOutcome {
    /// How many events were recorded.
    #[must_use]
    pub fn new_events(&self) -> usize {
        match self {
            Self::Duplicate => 0,
            Self::Recorded { new } => new.len(),
        }
    }
}

/// A key to register, with its user.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub key_id: String,
    pub fingerprint: String,
    pub public_key: [u8; 32],
    pub user_id: OwnedUserId,
    pub name: Option<String>,
    /// The user's display name, set when the user is created.
    pub display_name: Option<String>,
}

/// A registered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key_id: String,
    pub fingerprint: String,
    pub public_key: [u8; 32],
    pub user_id: OwnedUserId,
    pub name: Option<String>,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A ChatSender user: a puppet on the homeserver once registered there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub user_id: OwnedUserId,
    /// The one place the display name is kept (the homeserver gets it set with it).
    pub display_name: Option<String>,
    /// When the puppet was registered on the homeserver, if it was.
    pub registered_at: Option<i64>,
}

/// A login session, identified by the SHA-256 of its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub token_hash: [u8; 32],
    pub key_id: String,
    pub user_id: OwnedUserId,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// The absolute end of the session, whatever its activity.
    pub expires_at: i64,
}

/// What the audit log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditEvent {
    KeyCreated,
    KeyRevoked,
    LoginSuccess,
    LoginFailure,
}

impl AuditEvent {
    /// The name written to the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeyCreated => "key_created",
            Self::KeyRevoked => "key_revoked",
            Self::LoginSuccess => "login_success",
            Self::LoginFailure => "login_failure",
        }
    }

    /// The event a logged name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::KeyCreated,
            Self::KeyRevoked,
            Self::LoginSuccess,
            Self::LoginFailure,
        ]
        .into_iter()
        .find(|e| e.as_str() == name)
    }
}

/// One line of the audit log. Never holds tokens or nonces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub event: AuditEvent,
    pub key_id: Option<String>,
    pub user_id: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<String>,
}

/// A room as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRecord {
    pub room_id: OwnedRoomId,
    pub name: Option<String>,
    pub is_direct: bool,
    pub encrypted: bool,
}

/// Changes to a room's record; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomUpdate {
    /// `Some(None)` clears the name.
    pub name: Option<Option<String>>,
    pub is_direct: Option<bool>,
    pub encrypted: Option<bool>,
}

/// A user's latest membership of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRecord {
    pub room_id: OwnedRoomId,
    pub user_id: OwnedUserId,
    pub membership: MembershipState,
    pub display_name: Option<String>,
    /// Who made the change (the inviter of an invite).
    pub sender: OwnedUserId,
}

/// An entry to append to a user's live stream (embedded mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStreamEntry {
    pub user_id: OwnedUserId,
    /// At most one entry per (user, key, kind): feeding an event twice appends it
    /// once. The entries of one key and kind share their payload.
    pub dedup_key: String,
    pub kind: String,
    pub payload: Arc<str>,
}

/// One entry of a user's live stream (embedded mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: i64,
    pub kind: String,
    pub payload: String,
}
