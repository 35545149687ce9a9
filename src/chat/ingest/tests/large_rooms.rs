//! Filling a large room stays linear.

use super::*;

#[tokio::test]
async fn in_a_large_room_a_join_reaches_the_joiner_and_messages_reach_everyone() {
    let store = Arc::new(MemoryStore::default());
    let log = GatedLog::new(&store, GatedLog::open(), GatedLog::open());
    let ingest = ingest(&store, log, HOUR);
    let mut events = vec![join("$a", "cs_alice")];
    events.extend((0..LARGE_ROOM).map(|i| join(&format!("$r{i}"), &format!("remote{i}"))));
    events.extend([join("$late", "cs_late"), text("$m", "carol", "hi")]);
    ingest
        .record("1", [1; 32], &events, NONE)
        .await
        .expect("record");
    ingest.run_pending().await.expect("feed");

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
