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
    let (ids, events) = past_a_batch();
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

/// An ingest whose feeder has fed once, with its cache.
async fn settled_with_cache() -> (Arc<MemoryStore>, Arc<MemoryCache>, Arc<Ingest>) {
    let store = Arc::new(MemoryStore::default());
    let live = GatedLog::new(&store, GatedLog::open(), GatedLog::open());
    let cache = Arc::new(MemoryCache::default());
    let (_log, ingest) = settled_over(&store, live, cache.clone()).await;
    (store, cache, ingest)
}

/// Who holds the lease now.
async fn holder(cache: &MemoryCache) -> Option<Vec<u8>> {
    cache.get(LEASE_KEY).await.expect("get")
}

#[tokio::test]
async fn a_feeder_keeps_its_lease_from_one_feed_to_the_next_until_it_lets_go() {
    let (store, cache, ingest) = settled_with_cache().await;
    let ours = Some(ingest.holder.as_bytes().to_vec());
    for (txn, id) in [("2", "$m1"), ("3", "$m2")] {
        ingest
            .record(txn, [txn.as_bytes()[0]; 32], &[text(id, "carol", id)], NONE)
            .await
            .expect("record");
        assert_eq!(ingest.feed_pending(true).await.expect("feed"), 1);
        assert_eq!(holder(&cache).await, ours, "kept after the feed of {id}");
        let other = b"another feeder";
        let taken = cache.put_if_absent(LEASE_KEY, other, LEASE_TTL).await;
        assert!(!taken.expect("try"), "another daemon's feeder waits");
    }
    ingest.let_go().await.expect("let go");
    assert_eq!(holder(&cache).await, None, "let go of");
    assert_eq!(messages(&store, "cs_alice").await, ["$m1", "$m2"]);
}

/// A kept lease that ran out, while another daemon's feeder took it and fed, is taken
/// anew as any lease: the members view that feeder may have changed is dropped.
#[tokio::test]
async fn a_kept_lease_that_ran_out_is_taken_over_anew() {
    let (store, cache, ingest) = settled_with_cache().await;
    let ours = ingest.holder.as_bytes().to_vec();
    ingest
        .record("2", [2; 32], &[text("$m1", "carol", "1")], NONE)
        .await
        .expect("record");
    assert_eq!(ingest.feed_pending(true).await.expect("feed"), 1);
    cache.delete(LEASE_KEY).await.expect("the lease runs out");
    let other = b"another feeder";
    let fed = cache.put(LAST_FEEDER_KEY, other, LAST_FEEDER_TTL).await;
    fed.expect("the other feeder fed");

    ingest
        .record("3", [3; 32], &[text("$m2", "carol", "2")], NONE)
        .await
        .expect("record");
    assert_eq!(ingest.feed_pending(true).await.expect("feed"), 1);
    assert_eq!(holder(&cache).await, Some(ours.clone()), "taken anew");
    let last = cache.get(LAST_FEEDER_KEY).await.expect("get");
    assert_eq!(last, Some(ours), "taken over from the other");
    assert_eq!(messages(&store, "cs_alice").await, ["$m1", "$m2"]);
}

#[tokio::test]
async fn the_feed_loop_lets_go_of_its_lease_once_idle_and_when_stopped() {
    let (store, cache, ingest) = settled_with_cache().await;

    // Idle.
    let stop = CancellationToken::new();
    let feeder = tokio::spawn({
        let (ingest, stop) = (ingest.clone(), stop.clone());
        async move { ingest.run(stop).await }
    });
    ingest
        .record("2", [2; 32], &[text("$m1", "carol", "1")], NONE)
        .await
        .expect("record");
    until("fed", || store.pending_events_now().is_empty()).await;
    let mut idle = false;
    for _ in 0..30_000 {
        if holder(&cache).await.is_none() {
            idle = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(idle, "let go of once idle");
    stop.cancel();
    feeder.await.expect("task");

    // Stopped right after a feed, which keeps the lease.
    ingest
        .record("3", [3; 32], &[text("$m2", "carol", "2")], NONE)
        .await
        .expect("record");
    ingest.run(stop).await;
    assert_eq!(holder(&cache).await, None, "let go of when stopped");
    assert_eq!(messages(&store, "cs_alice").await, ["$m1", "$m2"]);
}
