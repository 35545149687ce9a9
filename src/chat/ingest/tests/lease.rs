//! One feeder at a time: a feeder renews its lease as it works and stops once another
//! daemon's feeder holds it.

use super::queue::settled_over;
use super::*;

/// The messages in `who`'s stream, by event id, in order.
async fn messages(store: &MemoryStore, who: &str) -> Vec<String> {
    let entries = store
        .entries_after(&user(who), 0, 10_000)
        .await
        .expect("entries");
    entries
        .into_iter()
        .filter(|e| e.kind == "message")
        .map(|e| {
            let payload: Value = serde_json::from_str(&e.payload).expect("json");
            payload["event_id"].as_str().unwrap_or("-").to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_feeder_whose_lease_was_taken_leaves_the_rest_to_the_new_holder() {
    let store = Arc::new(MemoryStore::default());
    // One append through (the setup's join), then the next waits.
    let live = GatedLog::new(&store, 1, GatedLog::open());
    let cache = Arc::new(MemoryCache::default());
    let (_log, ingest) = settled_over(&store, live.clone(), cache.clone()).await;
    // Two rounds of feeding.
    let ids: Vec<String> = (0..=BATCH).map(|i| format!("$m{i}")).collect();
    let events: Vec<_> = ids.iter().map(|id| text(id, "carol", "hi")).collect();
    ingest
        .record("2", [2; 32], &events, NONE)
        .await
        .expect("record");

    // The first round's delivery is stuck past the lease, which another daemon's
    // feeder takes.
    let feed = feed_until_appending(&ingest, &live, 2).await;
    cache.delete(LEASE_KEY).await.expect("run out");
    assert!(
        cache
            .put_if_absent(LEASE_KEY, b"another feeder", LEASE_TTL)
            .await
            .expect("take")
    );
    live.before.add_permits(GatedLog::open());
    let stopped = feed.await.expect("task");
    assert!(
        matches!(stopped, Err(FeedError::LeaseLost)),
        "the feed stops: {stopped:?}"
    );
    // What was under way went out; nothing was marked fed, nor written after.
    let first_round = usize::try_from(BATCH).expect("batch");
    assert_eq!(messages(&store, "cs_alice").await, ids[..first_round]);
    let pending = store.pending(2 * BATCH).await.expect("pending");
    assert_eq!(pending.len(), ids.len(), "all still to feed");

    // The new holder feeds every event, delivering each once.
    assert!(
        cache
            .delete_if(LEASE_KEY, b"another feeder")
            .await
            .expect("release")
    );
    assert_eq!(ingest.run_pending().await.expect("feed"), ids.len());
    assert_eq!(messages(&store, "cs_alice").await, ids);
}

#[tokio::test]
async fn a_lease_that_ran_out_with_nobody_taking_it_is_taken_again() {
    let store = Arc::new(MemoryStore::default());
    let live = GatedLog::new(&store, 1, GatedLog::open());
    let cache = Arc::new(MemoryCache::default());
    let (_log, ingest) = settled_over(&store, live.clone(), cache.clone()).await;
    ingest
        .record("2", [2; 32], &[text("$m", "carol", "hi")], NONE)
        .await
        .expect("record");

    let feed = feed_until_appending(&ingest, &live, 2).await;
    cache.delete(LEASE_KEY).await.expect("run out");
    live.before.add_permits(GatedLog::open());
    assert_eq!(feed.await.expect("task").expect("feed"), 1);
    assert_eq!(messages(&store, "cs_alice").await, ["$m"]);
    assert!(store.pending(10).await.expect("pending").is_empty(), "fed");
}
