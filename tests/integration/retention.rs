//! Pruning drops what is past its retention, in batches, and never what the feed or
//! the room list still needs.

use chatsender::store::{IncomingTransaction, NewStreamEntry, TransactionOutcome};
use ruma::{OwnedRoomId, OwnedUserId};

use crate::for_each_backend;
use crate::harness::{Backends, Provisioned, unique};
use crate::state::event;

for_each_backend!(
    pruning_keeps_what_the_feed_and_the_room_list_need,
    streams_share_payloads_and_keep_each_users_newest
);

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    i64::try_from(since.expect("after 1970").as_millis()).expect("ms")
}

async fn pruning_keeps_what_the_feed_and_the_room_list_need(backends: Backends) {
    let provisioned = Provisioned::new(backends).await;
    let stores = provisioned.stores().await;
    let (events, retention) = (stores.events.clone(), stores.retention.clone());
    let room = OwnedRoomId::try_from(format!("!{}:localhost", unique("r"))).expect("room id");
    // The room's newest message is fed; after it comes an event still to feed (the
    // feed marks the oldest first), one that is no message.
    let (fed, last) = (event(&room, 1), event(&room, 2));
    let mut unfed = event(&room, 3);
    unfed.event_type = "m.room.topic".into();
    unfed.state_key = Some(String::new());
    let txn = IncomingTransaction {
        txn_id: "1".into(),
        body_sha256: [1; 32],
        events: vec![fed.clone(), last.clone(), unfed.clone()],
    };
    events.record_transaction(&txn).await.expect("record");
    let seqs = events.pending(10).await.expect("pending");
    assert_eq!(seqs.len(), 3);
    events.mark_fed(&seqs[..2]).await.expect("fed");
    let alice = OwnedUserId::try_from("@alice:localhost").expect("user id");
    events
        .save_sent_message(&alice, &room, "t1", &fed.event_id)
        .await
        .expect("sent");

    // Within the retention nothing goes, and a redelivery is still recognised.
    let hour_ago = now_ms() - 3_600_000;
    assert_eq!(
        retention.prune_before(hour_ago, 1000).await.expect("prune"),
        0
    );
    let again = events.record_transaction(&txn).await.expect("record");
    assert_eq!(again, TransactionOutcome::Duplicate);

    // Past it, one batch of one row per kind at a time: the fed event, the
    // transaction and the sent message go; the unfed event and the room's newest
    // message stay.
    let later = now_ms() + 60_000;
    assert_eq!(retention.prune_before(later, 1).await.expect("prune"), 3);
    assert_eq!(retention.prune_before(later, 1).await.expect("prune"), 0);
    let kept = events.room_events(&room).await.expect("events");
    let kept: Vec<&str> = kept.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(kept, [last.event_id.as_str(), unfed.event_id.as_str()]);
    assert_eq!(
        events.pending(10).await.expect("pending"),
        [seqs[2]],
        "still to feed"
    );
    let sent = events
        .sent_message(&alice, &room, "t1")
        .await
        .expect("sent");
    assert_eq!(sent, None);
    let rows = retention.table_rows().await.expect("rows");
    assert!(rows.contains(&("room_events", 2)), "{rows:?}");
    assert!(rows.contains(&("appservice_transactions", 0)), "{rows:?}");
    assert!(rows.contains(&("feed_queue", 1)), "{rows:?}");
}

/// A delivery to several users stores its payload once; pruning keeps each user's
/// newest entries and drops the payloads no entry holds any more.
async fn streams_share_payloads_and_keep_each_users_newest(backends: Backends) {
    let provisioned = Provisioned::new(backends).await;
    let stores = provisioned.stores().await;
    let (streams, retention) = (stores.streams.clone(), stores.retention.clone());
    let user = |name: &str| OwnedUserId::try_from(format!("@{}:localhost", unique(name)));
    let (alice, bob) = (user("alice").expect("id"), user("bob").expect("id"));
    let entry = |to: &OwnedUserId, key: &str, kind: &str| NewStreamEntry {
        user_id: to.clone(),
        dedup_key: key.into(),
        kind: kind.into(),
        payload: format!(r#"{{"{kind}":"{key}"}}"#).into(),
    };
    let message = |to: &OwnedUserId, key: &str| entry(to, key, "message");
    let batch = [
        message(&alice, "$1"),
        message(&bob, "$1"),
        message(&alice, "$2"),
        message(&alice, "$3"),
        message(&bob, "$3"),
        // The same key as another kind is an entry of its own.
        entry(&alice, "$3", "receipt"),
    ];
    let ids = streams.append(&batch).await.expect("append");
    assert!(ids.iter().all(Option::is_some), "{ids:?}");
    let rows = retention.table_rows().await.expect("rows");
    assert!(rows.contains(&("user_events", 6)), "{rows:?}");
    assert!(rows.contains(&("stream_payloads", 4)), "{rows:?}");
    let bobs = streams.entries_after(&bob, 0, 10).await.expect("entries");
    let bobs: Vec<&str> = bobs.iter().map(|e| e.payload.as_str()).collect();
    assert_eq!(bobs, [r#"{"message":"$1"}"#, r#"{"message":"$3"}"#]);

    // Each keeps their newest two: Alice's $1 and $2 go. $2's payload goes with them;
    // $1's stays, Bob still holds it.
    assert_eq!(streams.prune(i64::MAX, 2).await.expect("prune"), 2);
    let kept = |user: &OwnedUserId| {
        let streams = streams.clone();
        let user = user.clone();
        async move {
            let entries = streams.entries_after(&user, 0, 10).await.expect("entries");
            entries.into_iter().map(|e| e.payload).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        kept(&alice).await,
        [r#"{"message":"$3"}"#, r#"{"receipt":"$3"}"#]
    );
    assert_eq!(
        kept(&bob).await,
        [r#"{"message":"$1"}"#, r#"{"message":"$3"}"#]
    );
    let rows = retention.table_rows().await.expect("rows");
    assert!(rows.contains(&("user_events", 4)), "{rows:?}");
    assert!(rows.contains(&("stream_payloads", 3)), "{rows:?}");
}
