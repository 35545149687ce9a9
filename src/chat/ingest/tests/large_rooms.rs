//! Filling a large room stays linear.

use super::*;
use crate::live::DELIVERY_SLICE;

/// A store fed `events` in one transaction.
async fn fed(events: &[Raw<AnyTimelineEvent>]) -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::default());
    let log = GatedLog::new(&store, GatedLog::open(), GatedLog::open());
    let ingest = ingest(&store, log, HOUR);
    ingest
        .record("1", [1; 32], events, NONE)
        .await
        .expect("record");
    ingest.run_pending().await.expect("feed");
    store
}

/// cs_alice, then `remotes` remote members, joining.
fn joins(remotes: usize) -> Vec<Raw<AnyTimelineEvent>> {
    let mut events = vec![join("$a", "cs_alice")];
    events.extend((0..remotes).map(|i| join(&format!("$r{i}"), &format!("remote{i}"))));
    events
}

#[tokio::test]
async fn in_a_large_room_a_join_reaches_the_joiner_and_messages_reach_everyone() {
    let mut events = joins(LARGE_ROOM);
    events.extend([join("$late", "cs_late"), text("$m", "carol", "hi")]);
    let store = fed(&events).await;

    let alice = store
        .entries_after(&user("cs_alice"), 0, 10_000)
        .await
        .expect("entries");
    let about = |e: &crate::store::StreamEntry| {
        let payload: Value = serde_json::from_str(&e.payload).expect("json");
        format!(
            "{} {}",
            e.kind,
            payload["user_id"]
                .as_str()
                .or(payload["event_id"].as_str())
                .unwrap_or("-")
        )
    };
    let alice: Vec<String> = alice.iter().map(about).collect();
    assert!(
        alice.contains(&"membership @remote0:x".to_owned()),
        "a small room tells its members"
    );
    assert!(
        !alice.contains(&"membership @cs_late:x".to_owned()),
        "past {LARGE_ROOM} members, a join goes to the joiner only"
    );
    assert_eq!(alice.last().map(String::as_str), Some("message $m"));
    assert_eq!(
        stream(&store, "cs_late").await,
        ["membership @cs_late:x", "message $m"]
    );
}

/// Whether a remote member's leave reaches cs_alice, in a room of cs_alice and
/// `remotes` remote members (the room's size after the leave decides).
async fn leave_reaches_alice(remotes: usize) -> bool {
    let mut events = joins(remotes);
    events.push(membership("$gone", "remote0", "leave"));
    let store = fed(&events).await;
    let alice = store
        .entries_after(&user("cs_alice"), 0, 10_000)
        .await
        .expect("entries");
    alice.iter().any(|e| {
        let payload: Value = serde_json::from_str(&e.payload).expect("json");
        payload["user_id"] == "@remote0:x" && payload["membership"] == "leave"
    })
}

#[tokio::test]
async fn a_leave_that_brings_a_room_back_to_its_limit_reaches_every_member() {
    // LARGE_ROOM + 1 joined before the leave, LARGE_ROOM after: a room the size of
    // the limit tells its members.
    assert!(leave_reaches_alice(LARGE_ROOM).await);
    // LARGE_ROOM + 2 before, LARGE_ROOM + 1 after: still large.
    assert!(!leave_reaches_alice(LARGE_ROOM + 1).await);
}

#[tokio::test]
async fn filling_a_room_writes_its_deliveries_a_slice_at_a_time() {
    // 200 ChatSender users join in one transaction, each join delivered to everyone
    // in the room by then: 20,100 deliveries in one round of the feed.
    let users = 200;
    let events: Vec<_> = (0..users)
        .map(|i| join(&format!("$j{i}"), &format!("cs_u{i}")))
        .collect();
    let store = Arc::new(MemoryStore::default());
    // The first append goes through; the next waits at the gate.
    let log = GatedLog::new(&store, 1, GatedLog::open());
    let ingest = ingest(&store, log.clone(), HOUR);
    ingest
        .record("1", [1; 32], &events, NONE)
        .await
        .expect("record");
    // Held at the gate while it writes a second slice.
    let feeding = feed_until_appending(&ingest, &log, 2).await;
    let room = RoomId::parse("!r:x").expect("room id");
    let last = store.membership(&room, &user("cs_u199")).await;
    assert_eq!(
        last.expect("membership"),
        None,
        "the first slice was written before the round applied the last join"
    );
    log.before.add_permits(GatedLog::open());
    feeding.await.expect("task").expect("feed");

    let largest = log.largest.load(Ordering::SeqCst);
    assert!(
        largest <= DELIVERY_SLICE,
        "one append was given {largest} deliveries"
    );
    let mut delivered = 0;
    for i in 0..users {
        let member = user(&format!("cs_u{i}"));
        let entries = store.entries_after(&member, 0, 1_000).await;
        let entries = entries.expect("entries");
        let joined: Vec<String> = entries
            .iter()
            .map(|e| {
                let payload: Value = serde_json::from_str(&e.payload).expect("json");
                payload["user_id"].as_str().expect("a member").to_owned()
            })
            .collect();
        let expected: Vec<String> = (i..users).map(|j| format!("@cs_u{j}:x")).collect();
        assert_eq!(
            joined, expected,
            "cs_u{i}: its join and every later one, once"
        );
        delivered += entries.len();
    }
    assert_eq!(delivered, users * (users + 1) / 2);
}
