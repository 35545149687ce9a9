//! One feeder at a time: a feeder renews its lease as it works and stops once another
//! daemon's feeder has held it.

use super::queue::settled_over;
use super::*;

/// The messages in `who`'s stream, by event id, in order.
async fn messages(store: &MemoryStore, who: &str) -> Vec<String> {
    let entries = stream(store, who).await;
    let ids = entries.iter().filter_map(|e| e.strip_prefix("message "));
    ids.map(str::to_owned).collect()
}

/// A feed of two rounds of messages, stuck in the first round's delivery: what the
/// test does to the lease meanwhile (`meanwhile`), then the feed's outcome and the
/// messages' ids.
async fn stuck_feed(
    meanwhile: impl AsyncFnOnce(&MemoryCache),
) -> (
    Result<usize, FeedError>,
    Vec<String>,
    Arc<MemoryStore>,
    Arc<Ingest>,
) {
    let store = Arc::new(MemoryStore::default());
    // One append through (the setup's join), then the next waits.
    let live = GatedLog::new(&store, 1, GatedLog::open());
    let cache = Arc::new(MemoryCache::default());
    let (_log, ingest) = settled_over(&store, live.clone(), cache.clone()).await;
    let ids: Vec<String> = (0..=BATCH).map(|i| format!("$m{i}")).collect();
    let events: Vec<_> = ids.iter().map(|id| text(id, "carol", "hi")).collect();
    ingest
        .record("2", [2; 32], &events, NONE)
        .await
        .expect("record");
    let feed = feed_until_appending(&ingest, &live, 2).await;
    cache.delete(LEASE_KEY).await.expect("the lease runs out");
    meanwhile(&cache).await;
    live.before.add_permits(GatedLog::open());
    (feed.await.expect("task"), ids, store, ingest)
}

/// The feed stopped with the first round written and nothing marked fed; fed again,
/// every message is delivered once.
async fn left_to_the_next(
    stopped: Result<usize, FeedError>,
    ids: &[String],
    store: &MemoryStore,
    ingest: &Ingest,
) {
    assert!(
        matches!(stopped, Err(FeedError::LeaseLost)),
        "the feed stops: {stopped:?}"
    );
    let first_round = usize::try_from(BATCH).expect("batch");
    assert_eq!(messages(store, "cs_alice").await, ids[..first_round]);
    let pending = store.pending(2 * BATCH).await.expect("pending");
    assert_eq!(pending.len(), ids.len(), "all still to feed");

    assert_eq!(ingest.run_pending().await.expect("feed"), ids.len());
    assert_eq!(messages(store, "cs_alice").await, ids);
}

#[tokio::test]
async fn a_feeder_whose_lease_another_took_leaves_the_rest_to_it() {
    let (stopped, ids, store, ingest) = stuck_feed(async |cache| {
        let other = b"another feeder";
        assert!(
            cache
                .put_if_absent(LEASE_KEY, other, LEASE_TTL)
                .await
                .expect("take")
        );
    })
    .await;
    // Its own release at its end left the other's lease alone.
    assert_eq!(
        ingest.cache.get(LEASE_KEY).await.expect("get").as_deref(),
        Some(&b"another feeder"[..])
    );
    ingest.cache.delete(LEASE_KEY).await.expect("released");
    left_to_the_next(stopped, &ids, &store, &ingest).await;
}

#[tokio::test]
async fn a_feeder_stops_when_another_fed_while_its_lease_was_out() {
    // The other feeder took the lease, fed and let it go.
    let (stopped, ids, store, ingest) = stuck_feed(async |cache| {
        let other = b"another feeder";
        cache
            .put(LAST_FEEDER_KEY, other, LAST_FEEDER_TTL)
            .await
            .expect("put");
    })
    .await;
    left_to_the_next(stopped, &ids, &store, &ingest).await;
}

#[tokio::test]
async fn a_lease_that_ran_out_with_no_other_feeder_is_taken_again() {
    let (fed, ids, store, _) = stuck_feed(async |_| {}).await;
    assert_eq!(fed.expect("feed"), ids.len());
    assert_eq!(messages(&store, "cs_alice").await, ids);
    assert!(store.pending(10).await.expect("pending").is_empty(), "fed");
}
