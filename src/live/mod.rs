//! The live stream: each user's events, kept for replay and pushed to connected
//! clients on every daemon. Embedded mode keeps streams in the database and fans out
//! in process ([`StoreBus`]); production uses Redis streams and pub/sub ([`RedisBus`]).

mod redis;

pub use self::redis::RedisBus;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::store::Store;

/// Entries kept per user at least (and at least 10 minutes' worth).
pub const RETAINED_PER_USER: u32 = 1000;
/// How long entries are kept at least, whatever their number.
pub const RETAINED_MS: i64 = 10 * 60 * 1000;

/// One event of a user's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEvent {
    pub user_id: String,
    /// The SSE `id:`; increases within a user's stream.
    pub id: String,
    /// `message`, `membership` or `room`.
    pub kind: String,
    /// JSON.
    pub payload: String,
}

/// What a reconnecting client missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    Events(Vec<LiveEvent>),
    /// The cursor is older than what is kept: the client must refetch.
    Reset,
}

/// Per-user streams with replay and fan-out to every daemon.
#[async_trait]
pub trait LiveBus: Send + Sync + 'static {
    /// Appends to `user_id`'s stream (once per `dedup_key`) and notifies subscribers.
    async fn deliver(
        &self,
        user_id: &str,
        dedup_key: &str,
        kind: &str,
        payload: &str,
    ) -> anyhow::Result<()>;

    /// What `user_id` missed after `cursor` (an `id` it received).
    async fn replay(&self, user_id: &str, cursor: &str) -> anyhow::Result<Replay>;

    /// Everything delivered from now on, for every user (filter by `user_id`).
    fn subscribe(&self) -> broadcast::Receiver<LiveEvent>;

    /// Whether `a` comes after `b` in one user's stream.
    fn is_after(&self, a: &str, b: &str) -> bool;

    /// Drops entries past the retention; called now and then.
    async fn prune(&self) -> anyhow::Result<()>;

    /// The id of the user's newest entry, if any.
    async fn latest_id(&self, user_id: &str) -> anyhow::Result<Option<String>>;
}

/// What subscribers receive when the bus may have missed events (a lost Redis
/// connection): each stream catches up by replaying from its last id.
pub fn resync() -> LiveEvent {
    LiveEvent {
        user_id: String::new(),
        id: String::new(),
        kind: "resync".into(),
        payload: String::new(),
    }
}

/// Embedded mode: streams in the database, fan-out in process.
pub struct StoreBus {
    store: Arc<dyn Store>,
    sender: broadcast::Sender<LiveEvent>,
}

impl StoreBus {
    /// A bus over the daemon's database.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            sender: broadcast::channel(4096).0,
        }
    }
}

#[async_trait]
impl LiveBus for StoreBus {
    async fn deliver(
        &self,
        user_id: &str,
        dedup_key: &str,
        kind: &str,
        payload: &str,
    ) -> anyhow::Result<()> {
        if let Some(id) = self
            .store
            .append_user_event(user_id, dedup_key, kind, payload)
            .await?
        {
            // No receivers is fine: nobody is connected.
            let _ = self.sender.send(LiveEvent {
                user_id: user_id.to_owned(),
                id: id.to_string(),
                kind: kind.to_owned(),
                payload: payload.to_owned(),
            });
        }
        Ok(())
    }

    async fn replay(&self, user_id: &str, cursor: &str) -> anyhow::Result<Replay> {
        let Ok(after) = cursor.parse::<i64>() else {
            return Ok(Replay::Reset);
        };
        // Pruning removes a user's oldest entries first, so while the cursor's own
        // entry is kept nothing after it is missing.
        match self.store.oldest_user_event(user_id).await? {
            Some(oldest) if after >= oldest => {}
            _ => return Ok(Replay::Reset),
        }
        let mut events = Vec::new();
        let mut from = after;
        loop {
            let page = self.store.user_events_after(user_id, from, 500).await?;
            let Some(last) = page.last() else { break };
            from = last.id;
            events.extend(page.into_iter().map(|e| LiveEvent {
                user_id: user_id.to_owned(),
                id: e.id.to_string(),
                kind: e.kind,
                payload: e.payload,
            }));
        }
        Ok(Replay::Events(events))
    }

    fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.sender.subscribe()
    }

    fn is_after(&self, a: &str, b: &str) -> bool {
        matches!((a.parse::<i64>(), b.parse::<i64>()), (Ok(a), Ok(b)) if a > b)
    }

    async fn prune(&self) -> anyhow::Result<()> {
        let before = crate::store::now_ms() - RETAINED_MS;
        self.store
            .prune_user_events(before, RETAINED_PER_USER)
            .await?;
        Ok(())
    }

    async fn latest_id(&self, user_id: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .store
            .latest_user_event(user_id)
            .await?
            .map(|id| id.to_string()))
    }
}
