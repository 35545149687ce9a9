//! A recording is answered only once the store made it survive a power loss, while
//! the feed may already deliver its events.

use ruma::{EventId, OwnedEventId};

use super::*;
use crate::store::{EventLog, EventRecord, IncomingTransaction, StoreError, TransactionOutcome};

/// The in-memory log, whose `sync` waits at a gate the test opens.
struct SlowDisk {
    inner: Arc<MemoryStore>,
    gate: Semaphore,
    syncing: AtomicUsize,
}

#[async_trait]
impl EventLog for SlowDisk {
    async fn record_transaction(
        &self,
        txn: &IncomingTransaction,
    ) -> Result<TransactionOutcome, StoreError> {
        self.inner.record_transaction(txn).await
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.syncing.fetch_add(1, Ordering::SeqCst);
        self.gate.acquire().await.expect("gate").forget();
        self.inner.sync().await
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

#[tokio::test]
async fn the_answer_waits_for_the_sync_and_the_feed_does_not() {
    let store = Arc::new(MemoryStore::default());
    let log = GatedLog::new(&store, GatedLog::open(), GatedLog::open());
    let setup = ingest(&store, log.clone(), HOUR);
    setup
        .record("1", [1; 32], &[join("$j", "cs_alice")], NONE)
        .await
        .expect("record");
    setup.run_pending().await.expect("feed");

    let disk = Arc::new(SlowDisk {
        inner: store.clone(),
        gate: Semaphore::new(0),
        syncing: AtomicUsize::new(0),
    });
    let ingest = Arc::new(Ingest::new(
        disk.clone(),
        store.clone(),
        store.clone(),
        Arc::new(MemoryCache::default()),
        Live::new(log.clone()),
        namespace(),
        HOUR,
    ));
    let stop = CancellationToken::new();
    let feeder = tokio::spawn({
        let (ingest, stop) = (ingest.clone(), stop.clone());
        async move { ingest.run(stop).await }
    });
    let record = |txn: &'static str| {
        let ingest = ingest.clone();
        tokio::spawn(async move {
            let events = [text("$m", "carol", "hi")];
            ingest.record(txn, [2; 32], &events, NONE).await
        })
    };

    let answer = record("2");
    until("the recording is syncing", || {
        disk.syncing.load(Ordering::SeqCst) == 1
    })
    .await;
    // Woken by the recording, not by its own look every `POLL`.
    let delivered = tokio::time::timeout(POLL / 2, async {
        while log.entered.load(Ordering::SeqCst) < 2 || !store.pending_events_now().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    assert!(delivered.await.is_ok(), "the feed waited for the sync");
    assert_eq!(
        stream(&store, "cs_alice").await,
        ["membership @cs_alice:x", "message $m"]
    );
    assert!(!answer.is_finished(), "no answer before the sync");
    disk.gate.add_permits(1);
    let outcome = answer.await.expect("task").expect("record");
    assert_eq!(outcome.new_events(), 1);

    // The same transaction again: its first recording may not have been synced.
    let again = record("2");
    until("the duplicate syncs", || {
        disk.syncing.load(Ordering::SeqCst) == 2
    })
    .await;
    assert!(!again.is_finished(), "no answer before the sync");
    disk.gate.add_permits(1);
    let outcome = again.await.expect("task").expect("record");
    assert!(matches!(outcome, TransactionOutcome::Duplicate));
    stop.cancel();
    feeder.await.expect("feeder");
}
