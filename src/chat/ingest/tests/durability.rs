//! A recording is answered only once the store made it survive a power loss, while
//! the feed may already deliver its events.

use super::watched::{WatchedLog, watched_ingest};
use super::*;

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

    let disk = WatchedLog::new(&store, 0);
    let ingest = watched_ingest(&store, &disk, log.clone(), Arc::default());
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
    disk.sync_gate.add_permits(1);
    let outcome = answer.await.expect("task").expect("record");
    assert_eq!(outcome.new_events(), 1);

    // The same transaction again: its first recording may not have been synced.
    let again = record("2");
    until("the duplicate syncs", || {
        disk.syncing.load(Ordering::SeqCst) == 2
    })
    .await;
    assert!(!again.is_finished(), "no answer before the sync");
    disk.sync_gate.add_permits(1);
    let outcome = again.await.expect("task").expect("record");
    assert!(matches!(outcome, TransactionOutcome::Duplicate));
    stop.cancel();
    feeder.await.expect("feeder");
}
