//! Alone (an embedded cache), the feeder feeds what this daemon recorded without
//! reading the queue back, and goes back to the queue whenever what it kept may not be
//! all there is.

use super::watched::{WatchedLog, watched_ingest};
use super::*;

/// An ingest over a watched log whose feeder has found the queue empty once.
async fn settled(store: &Arc<MemoryStore>) -> (Arc<WatchedLog>, Arc<Ingest>) {
    let live = GatedLog::new(store, GatedLog::open(), GatedLog::open());
    settled_over(store, live, Arc::default()).await
}

pub(super) async fn settled_over(
    store: &Arc<MemoryStore>,
    live: Arc<GatedLog>,
    cache: Arc<MemoryCache>,
) -> (Arc<WatchedLog>, Arc<Ingest>) {
    let log = WatchedLog::new(store, GatedLog::open());
    let ingest = watched_ingest(store, &log, live, cache);
    ingest
        .record("1", [1; 32], &[join("$j", "cs_alice")], NONE)
        .await
        .expect("record");
    assert_eq!(ingest.run_pending().await.expect("feed"), 1);
    (log, ingest)
}

fn reads(log: &WatchedLog) -> usize {
    log.queue_reads.load(Ordering::SeqCst)
}

#[tokio::test]
async fn alone_the_feeder_feeds_what_it_recorded_without_reading_the_queue() {
    let store = Arc::new(MemoryStore::default());
    let (log, ingest) = settled(&store).await;
    assert!(reads(&log) > 0, "a new feeder reads the queue");

    let before = reads(&log);
    for (txn, id) in [("2", "$m1"), ("3", "$m2")] {
        ingest
            .record(txn, [txn.as_bytes()[0]; 32], &[text(id, "carol", id)], NONE)
            .await
            .expect("record");
    }
    assert_eq!(ingest.run_pending().await.expect("feed"), 2);
    assert_eq!(ingest.run_pending().await.expect("feed"), 0, "fed once");
    assert_eq!(reads(&log), before, "the queue was not read");
    assert!(store.pending_events_now().is_empty(), "marked fed");
    assert_eq!(
        stream(&store, "cs_alice").await,
        ["membership @cs_alice:x", "message $m1", "message $m2"]
    );
}

#[tokio::test]
async fn a_recording_that_fails_after_its_commit_is_fed_from_the_queue() {
    let store = Arc::new(MemoryStore::default());
    let (log, ingest) = settled(&store).await;

    log.fail_next.store(true, Ordering::SeqCst);
    let failed = ingest
        .record("2", [2; 32], &[text("$m", "carol", "hi")], NONE)
        .await;
    assert!(failed.is_err(), "the recording failed");
    assert_eq!(store.pending_events_now(), ["$m"], "after its commit");

    let before = reads(&log);
    assert_eq!(ingest.run_pending().await.expect("feed"), 1);
    assert!(reads(&log) > before, "the queue was read");
    assert_eq!(
        stream(&store, "cs_alice").await,
        ["membership @cs_alice:x", "message $m"]
    );
}

/// A recording that committed first may keep its events after a later one did: the
/// feeder then reads the queue, feeds both in order, and the first's events, kept
/// once they were fed, are not fed again.
#[tokio::test]
async fn events_kept_after_a_later_recordings_are_fed_in_order_and_once() {
    let store = Arc::new(MemoryStore::default());
    let (log, ingest) = settled(&store).await;

    log.hold_next.store(true, Ordering::SeqCst);
    let first = tokio::spawn({
        let ingest = ingest.clone();
        async move {
            let events = [text("$a", "carol", "a")];
            ingest.record("2", [2; 32], &events, NONE).await
        }
    });
    until("the first recording has committed", || {
        log.held.load(Ordering::SeqCst) == 1
    })
    .await;
    ingest
        .record("3", [3; 32], &[text("$b", "carol", "b")], NONE)
        .await
        .expect("record");
    assert_eq!(ingest.run_pending().await.expect("feed"), 2, "both");

    log.release.add_permits(1);
    first.await.expect("task").expect("record");
    assert_eq!(ingest.run_pending().await.expect("feed"), 0, "fed once");
    assert_eq!(
        stream(&store, "cs_alice").await,
        ["membership @cs_alice:x", "message $a", "message $b"]
    );
}

#[tokio::test]
async fn a_feed_cut_short_leaves_what_it_took_to_the_next() {
    let store = Arc::new(MemoryStore::default());
    // One append through (the setup's join), then the next waits.
    let live = GatedLog::new(&store, 1, GatedLog::open());
    let cache = Arc::new(MemoryCache::default());
    let (log, ingest) = settled_over(&store, live.clone(), cache.clone()).await;
    ingest
        .record("2", [2; 32], &[text("$m", "carol", "hi")], NONE)
        .await
        .expect("record");
    let feed = feed_until_appending(&ingest, &live, 2).await;
    feed.abort();
    assert!(feed.await.is_err(), "cut short");
    // Its lease runs out (a minute later).
    cache.delete(LEASE_KEY).await.expect("lease");

    live.before.add_permits(GatedLog::open());
    let before = reads(&log);
    assert_eq!(ingest.run_pending().await.expect("feed"), 1);
    assert!(reads(&log) > before, "the queue was read");
    assert_eq!(
        stream(&store, "cs_alice").await,
        ["membership @cs_alice:x", "message $m"]
    );
}

#[test]
fn shared_what_is_kept_never_stands_for_the_queue() {
    for (alone, skips) in [(true, true), (false, false)] {
        let recent = recent::Recent::new(alone);
        let mark = recent.mark();
        recent.settle(mark);
        recent.begin().keep([]);
        assert_eq!(recent.pending(10).is_some(), skips, "alone: {alone}");
    }
}

/// Beside other daemons (a shared cache) the feeder reads the queue: a read that
/// found less than a batch found all there was and ends the feed, where a full batch
/// sends it back to the queue.
#[tokio::test]
async fn shared_a_short_read_of_the_queue_is_the_feeds_last() {
    let store = Arc::new(MemoryStore::default());
    let live = GatedLog::new(&store, GatedLog::open(), GatedLog::open());
    let shared = Arc::new(MemoryCache::shared());
    let (log, ingest) = settled_over(&store, live, shared).await;
    let mut ids = vec!["$a".to_owned()];
    ingest
        .record("2", [2; 32], &[text("$a", "carol", "a")], NONE)
        .await
        .expect("record");
    let before = reads(&log);
    assert_eq!(ingest.run_pending().await.expect("feed"), 1);
    assert_eq!(
        reads(&log),
        before + 1,
        "one read, which found the one event"
    );

    let (more, events) = past_a_batch();
    ingest
        .record("3", [3; 32], &events, NONE)
        .await
        .expect("record");
    let before = reads(&log);
    assert_eq!(ingest.run_pending().await.expect("feed"), more.len());
    assert_eq!(reads(&log), before + 2, "a full batch, then the one left");
    ids.extend(more);
    let messages: Vec<String> = stream(&store, "cs_alice").await.split_off(1);
    let expected: Vec<String> = ids.iter().map(|id| format!("message {id}")).collect();
    assert_eq!(messages, expected, "each once, in order");
    assert!(store.pending_events_now().is_empty(), "marked fed");
}
