//! Embedded mode: streams in the database, woken in process.

use std::sync::Arc;

use async_trait::async_trait;
use ruma::UserId;
use tokio_util::sync::CancellationToken;

use super::{
    Delivery, Hub, LiveError, LiveEvent, RETAINED_MS, RETAINED_PER_USER, Replay, StreamKind,
    StreamLog,
};
use crate::store::{NewStreamEntry, StreamEntry, UserStreams};
use crate::time::now_ms;

/// Entries read per page while replaying.
const PAGE: u32 = 500;

/// Streams in the daemon's database (`user_events`).
pub struct DatabaseLog {
    streams: Arc<dyn UserStreams>,
}

impl DatabaseLog {
    /// The user's entries after id `after`, oldest first.
    async fn entries_from(
        &self,
        user_id: &UserId,
        after: i64,
    ) -> Result<Vec<LiveEvent>, LiveError> {
        let mut events = Vec::new();
        let mut from = after;
        loop {
            let page = self.streams.entries_after(user_id, from, PAGE).await?;
            let Some(last) = page.last() else { break };
            from = last.id;
            events.extend(page.into_iter().filter_map(|e| event(user_id, e)));
        }
        Ok(events)
    }

    /// A log over the database's user streams.
    pub fn new(streams: Arc<dyn UserStreams>) -> Self {
        Self { streams }
    }
}

/// A stored entry as a stream event; `None` (logged) for a kind this daemon does not
/// know (written by a newer one).
fn event(user_id: &UserId, entry: StreamEntry) -> Option<LiveEvent> {
    let Some(kind) = StreamKind::parse(&entry.kind) else {
        tracing::warn!(
            kind = entry.kind,
            "skipping a stream entry of an unknown kind"
        );
        return None;
    };
    Some(LiveEvent {
        user_id: user_id.to_owned(),
        id: entry.id.to_string(),
        kind,
        payload: entry.payload.into(),
    })
}

#[async_trait]
impl StreamLog for DatabaseLog {
    async fn append(&self, deliveries: &[Delivery]) -> Result<Vec<LiveEvent>, LiveError> {
        // One transaction: `Live::deliver` hands over a slice of at most
        // `DELIVERY_SLICE`. Each entry is deduplicated on its own, so a crash between
        // slices appends the rest when the events are fed again, and nothing twice.
        let entries: Vec<NewStreamEntry> = deliveries
            .iter()
            .map(|d| NewStreamEntry {
                user_id: d.user_id.clone(),
                dedup_key: d.dedup_key.clone(),
                kind: d.kind.as_str().to_owned(),
                payload: d.payload.clone(),
            })
            .collect();
        let ids = self.streams.append(&entries).await?;
        Ok(deliveries
            .iter()
            .zip(ids)
            .filter_map(|(d, id)| {
                Some(LiveEvent {
                    user_id: d.user_id.clone(),
                    id: id?.to_string(),
                    kind: d.kind,
                    payload: d.payload.clone(),
                })
            })
            .collect())
    }

    async fn replay(&self, user_id: &UserId, cursor: &str) -> Result<Replay, LiveError> {
        let Ok(after) = cursor.parse::<i64>() else {
            return Ok(Replay::Reset);
        };
        // Pruning removes a user's oldest entries first, so while the cursor's own
        // entry is kept nothing after it is missing.
        match self.streams.oldest_entry(user_id).await? {
            Some(oldest) if after >= oldest => {}
            _ => return Ok(Replay::Reset),
        }
        Ok(Replay::Events(self.entries_from(user_id, after).await?))
    }

    async fn replay_all(&self, user_id: &UserId) -> Result<Vec<LiveEvent>, LiveError> {
        self.entries_from(user_id, 0).await
    }

    async fn latest(&self, user_id: &UserId) -> Result<Option<String>, LiveError> {
        Ok(self
            .streams
            .latest_entry(user_id)
            .await?
            .map(|id| id.to_string()))
    }

    fn is_after(&self, a: &str, b: &str) -> bool {
        matches!((a.parse::<i64>(), b.parse::<i64>()), (Ok(a), Ok(b)) if a > b)
    }

    async fn prune(&self) -> Result<(), LiveError> {
        self.streams
            .prune(now_ms() - RETAINED_MS, RETAINED_PER_USER)
            .await?;
        Ok(())
    }

    async fn relay(&self, _hub: Arc<Hub>, _stop: CancellationToken) -> Result<(), LiveError> {
        // One daemon: `append` hands every new entry to the hub itself.
        Ok(())
    }
}
