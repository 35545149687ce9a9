//! The live stream: each user's events, kept for replay and pushed to that user's open
//! streams on every daemon.
//!
//! [`Live`] is the handle the core delivers through and the API streams from. A
//! [`StreamLog`] keeps the entries: the database in embedded mode
//! ([`DatabaseLog`]), capped Redis streams with pub/sub between daemons in production
//! ([`RedisLog`]). A [`Hub`] holds one channel per user, so an event wakes only its
//! recipient's streams. `stream.rs` has the rules of one open stream (replay, reset,
//! resync, the session re-check).

mod embedded;
mod hub;
mod memory;
mod redis;
mod slots;
mod stream;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use ruma::{OwnedUserId, UserId};
use tokio_util::sync::CancellationToken;

pub use self::embedded::DatabaseLog;
pub use self::hub::{Hub, Signal, Subscription};
pub use self::redis::RedisLog;
pub use self::slots::{Slot, SlotError, Slots};
pub use self::stream::LiveItem;

use crate::store::StoreError;

/// Entries kept per user at least (and at least 10 minutes' worth).
pub const RETAINED_PER_USER: u32 = 1000;
/// How long entries are kept at least, whatever their number.
pub const RETAINED_MS: i64 = 10 * 60 * 1000;

/// What a stream event is about (the SSE `event:` name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// A message in one of the user's rooms.
    Message,
    /// A membership change in one of the user's rooms, or an invite to the user.
    Membership,
    /// A room's name changed.
    Room,
    /// Who is typing in one of the user's rooms.
    Typing,
    /// The user read a room up to an event (so other tabs clear their unread count).
    Read,
    /// Another member's read receipt moved.
    Receipt,
}

impl StreamKind {
    /// The name on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Membership => "membership",
            Self::Room => "room",
            Self::Typing => "typing",
            Self::Read => "read",
            Self::Receipt => "receipt",
        }
    }

    /// The kind a stored name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Message,
            Self::Membership,
            Self::Room,
            Self::Typing,
            Self::Read,
            Self::Receipt,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// Something to append to a user's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub user_id: OwnedUserId,
    /// Appended once per (user, key, kind): feeding an event again appends nothing.
    pub dedup_key: String,
    /// The event's place in the event log, for what the feed delivers (`None` for
    /// what is not recorded: typing, receipts). The feed delivers in the log's order,
    /// so the places in one user's stream only grow, and the Redis streams keep one
    /// entry per (user, place) by their ids alone.
    pub place: Option<i64>,
    pub kind: StreamKind,
    /// JSON, compact (on one line: the Redis live channel's messages are lines).
    pub payload: Arc<str>,
}

/// Deliveries appended at a time, and about the most a round of the feed holds before
/// it writes them: filling a room of 1,000 delivers some 500,000 joins. Smaller than
/// 10,000: with 10,000, the streams opening while a room of 10,000 filled waited for
/// the feed (up to 8 s to open them all on SQLite, against 1.3 s with 5,000) and the
/// daemon kept up to 30 MB more afterwards.
pub const DELIVERY_SLICE: usize = 5_000;

/// One event of a user's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEvent {
    pub user_id: OwnedUserId,
    /// The SSE `id:`; increases within a user's stream.
    pub id: String,
    pub kind: StreamKind,
    /// JSON.
    pub payload: Arc<str>,
}

/// What a reconnecting client missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    Events(Vec<LiveEvent>),
    /// The cursor is older than what is kept: the client must refetch.
    Reset,
}

/// A failure of the stream log; its text never reaches a client.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
}

impl LiveError {
    /// The part that is down or did not answer in time, if that is the cause.
    pub fn unavailable(&self) -> Option<&'static str> {
        match self {
            Self::Store(e) => e.is_unavailable().then_some("the database"),
            Self::Redis(e) => (e.is_io_error()
                || e.is_timeout()
                || e.is_connection_dropped()
                || e.is_connection_refusal())
            .then_some("Redis"),
        }
    }
}

/// Where streams are kept, and how daemons tell each other about new entries.
#[async_trait]
pub trait StreamLog: Send + Sync + 'static {
    /// Appends each delivery once per (user, dedup key); [`Live::deliver`] hands over
    /// at most [`DELIVERY_SLICE`] at a time. Returns the entries this daemon must hand
    /// to its own [`Hub`]: all new ones where the log has no channel between daemons,
    /// none where [`StreamLog::relay`] brings them back.
    async fn append(&self, deliveries: &[Delivery]) -> Result<Vec<LiveEvent>, LiveError>;

    /// What `user_id` missed after `cursor` (an id it received).
    async fn replay(&self, user_id: &UserId, cursor: &str) -> Result<Replay, LiveError>;

    /// Every entry kept for the user, oldest first.
    async fn replay_all(&self, user_id: &UserId) -> Result<Vec<LiveEvent>, LiveError>;

    /// The id of the user's newest entry, if any.
    async fn latest(&self, user_id: &UserId) -> Result<Option<String>, LiveError>;

    /// Whether id `a` comes after id `b` in one user's stream.
    fn is_after(&self, a: &str, b: &str) -> bool;

    /// Drops entries past the retention; called now and then.
    async fn prune(&self) -> Result<(), LiveError>;

    /// Starts handing entries appended by any daemon to `hub` until `stop`; returns
    /// once listening, so nothing appended afterwards is missed. When the channel may
    /// have lost entries (a lost connection), every subscriber is told to resync.
    async fn relay(&self, hub: Arc<Hub>, stop: CancellationToken) -> Result<(), LiveError>;
}

/// The live streams of this daemon.
#[derive(Clone)]
pub struct Live {
    log: Arc<dyn StreamLog>,
    hub: Arc<Hub>,
}

impl Live {
    /// Streams kept in `log`.
    pub fn new(log: Arc<dyn StreamLog>) -> Self {
        Self {
            log,
            hub: Arc::new(Hub::default()),
        }
    }

    /// Appends to the recipients' streams and wakes their open streams, a slice of
    /// [`DELIVERY_SLICE`] at a time: what a slice appended is published and dropped
    /// before the next, so a large delivery never holds all its events at once.
    pub async fn deliver(&self, deliveries: &[Delivery]) -> Result<(), LiveError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        for slice in deliveries.chunks(DELIVERY_SLICE) {
            for event in self.log.append(slice).await? {
                self.hub.publish(event);
            }
        }
        if deliveries.len() >= memory::AFTER_DELIVERIES {
            memory::release_soon();
        }
        Ok(())
    }

    /// Starts relaying other daemons' entries (see [`StreamLog::relay`]).
    pub async fn relay(&self, stop: CancellationToken) -> Result<(), LiveError> {
        self.log.relay(self.hub.clone(), stop).await
    }

    /// Drops entries past the retention.
    pub async fn prune(&self) -> Result<(), LiveError> {
        self.log.prune().await
    }

    /// How many times an open stream was woken by a delivery (a test hook; also the
    /// `chatsender_live_wakeups_total` metric).
    pub fn wakeups(&self) -> u64 {
        self.hub.wakeups()
    }

    /// Users with a stream open on this daemon (a test hook).
    pub fn listening(&self) -> usize {
        self.hub.listening()
    }
}
