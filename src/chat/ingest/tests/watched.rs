//! The in-memory log with hooks a test holds: a gate on `sync`, a recording held or
//! failed once it has committed, and a count of the feeder's reads of its queue.

use std::sync::atomic::AtomicBool;

use ruma::{EventId, OwnedEventId};

use super::*;
use crate::store::{EventLog, EventRecord, IncomingTransaction, StoreError, TransactionOutcome};

pub(super) struct WatchedLog {
    inner: Arc<MemoryStore>,
    /// `sync` waits here.
    pub(super) sync_gate: Semaphore,
    /// Calls of `sync` so far.
    pub(super) syncing: AtomicUsize,
    /// The next recording, once committed, waits for `release` before it returns.
    pub(super) hold_next: AtomicBool,
    pub(super) release: Semaphore,
    /// Recordings committed and held so far.
    pub(super) held: AtomicUsize,
    /// The next recording fails once it has committed.
    pub(super) fail_next: AtomicBool,
    /// Reads of the feed's queue (`pending`).
    pub(super) queue_reads: AtomicUsize,
}

impl WatchedLog {
    /// Over `store`, with `sync_permits` syncs let through.
    pub(super) fn new(store: &Arc<MemoryStore>, sync_permits: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: store.clone(),
            sync_gate: Semaphore::new(sync_permits),
            syncing: AtomicUsize::new(0),
            hold_next: AtomicBool::new(false),
            release: Semaphore::new(0),
            held: AtomicUsize::new(0),
            fail_next: AtomicBool::new(false),
            queue_reads: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl EventLog for WatchedLog {
    async fn record_transaction(
        &self,
        txn: &IncomingTransaction,
    ) -> Result<TransactionOutcome, StoreError> {
        let outcome = self.inner.record_transaction(txn).await?;
        if self.hold_next.swap(false, Ordering::SeqCst) {
            self.held.fetch_add(1, Ordering::SeqCst);
            self.release.acquire().await.expect("gate").forget();
        }
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
        }
        Ok(outcome)
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.syncing.fetch_add(1, Ordering::SeqCst);
        self.sync_gate.acquire().await.expect("gate").forget();
        self.inner.sync().await
    }

    async fn identity(&self) -> Result<String, StoreError> {
        self.inner.identity().await
    }
    async fn room_events(&self, room_id: &RoomId) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.room_events(room_id).await
    }
    async fn event(&self, event_id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        self.inner.event(event_id).await
    }
    async fn last_message(&self, room_id: &RoomId) -> Result<Option<EventRecord>, StoreError> {
        self.inner.last_message(room_id).await
    }
    async fn pending(&self, limit: u32) -> Result<Vec<i64>, StoreError> {
        self.queue_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.pending(limit).await
    }
    async fn events_at(&self, seqs: &[i64]) -> Result<Vec<(i64, EventRecord)>, StoreError> {
        self.inner.events_at(seqs).await
    }
    async fn mark_fed(&self, seqs: &[i64]) -> Result<(), StoreError> {
        self.inner.mark_fed(seqs).await
    }
    async fn sent_message(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        txn_id: &str,
    ) -> Result<Option<OwnedEventId>, StoreError> {
        self.inner.sent_message(user_id, room_id, txn_id).await
    }
    async fn save_sent_message(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        txn_id: &str,
        event_id: &EventId,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        inner
            .save_sent_message(user_id, room_id, txn_id, event_id)
            .await
    }
}

/// An ingest over `log` and `store`, with an embedded cache.
pub(super) fn watched_ingest(
    store: &Arc<MemoryStore>,
    log: &Arc<WatchedLog>,
    live: Arc<dyn StreamLog>,
    cache: Arc<MemoryCache>,
) -> Arc<Ingest> {
    Arc::new(Ingest::new(
        log.clone(),
        store.clone(),
        store.clone(),
        cache,
        Live::new(live),
        namespace(),
        HOUR,
    ))
}
