//! The store and cache backends keep the same promises.

use std::sync::Arc;
use std::time::Duration;

use chatsender::config::{DatabaseSettings, RedisSettings};
use chatsender::store::{IncomingTransaction, Puppet, RoomEvent, TransactionOutcome};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use secrecy::SecretString;

use crate::for_each_backend;
use crate::harness::{Backends, Provisioned, unique, wait_until};

for_each_backend!(
    store_records_each_transaction_and_event_once,
    cache_keeps_its_promises
);

fn event(room: &OwnedRoomId, n: u32) -> RoomEvent {
    RoomEvent {
        event_id: OwnedEventId::try_from(format!("${}", unique(&format!("e{n}_"))))
            .expect("event id"),
        room_id: room.clone(),
        sender: OwnedUserId::try_from("@carol:localhost").expect("user id"),
        event_type: "m.room.message".into(),
        state_key: None,
        origin_server_ts: 1_700_000_000_000 + i64::from(n),
        json: format!(r#"{{"content":{{"body":"{n}"}}}}"#),
    }
}

async fn store_records_each_transaction_and_event_once(backends: Backends) {
    let provisioned = Provisioned::new(backends).await;
    let settings = DatabaseSettings {
        url: provisioned.database.clone(),
        max_connections: 5,
    };
    let store = chatsender::store::connect(&settings).await.expect("store");
    store.health().await.expect("healthy");
    let room = OwnedRoomId::try_from(format!("!{}:localhost", unique("r"))).expect("room id");
    let (a, b, c) = (event(&room, 1), event(&room, 2), event(&room, 3));
    let txn = |id: &str, hash: u8, events: Vec<RoomEvent>| IncomingTransaction {
        txn_id: id.into(),
        body_sha256: [hash; 32],
        events,
    };

    let first = store
        .record_transaction(&txn("1", 1, vec![a.clone(), b.clone()]))
        .await
        .expect("record");
    assert_eq!(
        first,
        TransactionOutcome::Recorded {
            new_events: vec![a.clone(), b.clone()]
        }
    );
    let again = store
        .record_transaction(&txn("1", 1, vec![a.clone(), b.clone()]))
        .await
        .expect("record");
    assert_eq!(again, TransactionOutcome::Duplicate);
    let restarted = store
        .record_transaction(&txn("1", 2, vec![b.clone(), c.clone()]))
        .await
        .expect("record");
    assert_eq!(
        restarted,
        TransactionOutcome::Recorded {
            new_events: vec![c.clone()]
        }
    );
    assert_eq!(
        store.room_events(&room).await.expect("events"),
        vec![a, b, c]
    );

    // Concurrent deliveries of one transaction: exactly one records it.
    let d = event(&room, 4);
    let store: Arc<dyn chatsender::store::Store> = store;
    let attempts = (0..8).map(|_| {
        let (store, t) = (store.clone(), txn("2", 9, vec![d.clone()]));
        tokio::spawn(async move { store.record_transaction(&t).await })
    });
    let mut recorded = 0;
    for attempt in attempts {
        if let Ok(Ok(TransactionOutcome::Recorded { .. })) = attempt.await {
            recorded += 1;
        }
    }
    assert_eq!(
        recorded, 1,
        "one of the concurrent deliveries records the transaction"
    );
    assert_eq!(store.room_events(&room).await.expect("events").len(), 4);

    let user = OwnedUserId::try_from(format!("@{}:localhost", unique("p"))).expect("user id");
    assert_eq!(store.puppet(&user).await.expect("puppet"), None);
    let puppet = Puppet {
        user_id: user.clone(),
        display_name: Some("Ann".into()),
    };
    store.save_puppet(&puppet).await.expect("save");
    store
        .save_puppet(&Puppet {
            display_name: Some("Anne".into()),
            ..puppet
        })
        .await
        .expect("save again");
    assert_eq!(
        store
            .puppet(&user)
            .await
            .expect("puppet")
            .and_then(|p| p.display_name)
            .as_deref(),
        Some("Anne")
    );

    provisioned.cleanup().await;
}

async fn cache_keeps_its_promises(backends: Backends) {
    let provisioned = Provisioned::new(backends).await;
    let settings = RedisSettings {
        url: provisioned.redis_url.clone().map(SecretString::from),
        key_prefix: provisioned.key_prefix.clone(),
    };
    let cache = chatsender::cache::connect(&settings).await.expect("cache");
    cache.health().await.expect("healthy");
    let long = Duration::from_secs(60);

    assert!(cache.put_if_absent("k", b"v1", long).await.expect("put"));
    assert!(
        !cache.put_if_absent("k", b"v2", long).await.expect("put"),
        "an existing key is kept"
    );
    assert_eq!(
        cache.get("k").await.expect("get").as_deref(),
        Some(&b"v1"[..])
    );
    assert_eq!(
        cache.take("k").await.expect("take").as_deref(),
        Some(&b"v1"[..])
    );
    assert_eq!(cache.take("k").await.expect("take"), None, "taken once");

    // Of many concurrent takers exactly one gets the value.
    cache.put_if_absent("once", b"x", long).await.expect("put");
    let takers = (0..32).map(|_| {
        let cache = cache.clone();
        tokio::spawn(async move { cache.take("once").await })
    });
    let mut winners = 0;
    for taker in takers {
        if taker.await.expect("join").expect("take").is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);

    cache
        .put_if_absent("short", b"x", Duration::from_millis(150))
        .await
        .expect("put");
    wait_until(
        "a short-lived entry expires",
        Duration::from_secs(5),
        || async {
            cache
                .get("short")
                .await
                .expect("get")
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(
        cache.put_if_absent("short", b"y", long).await.expect("put"),
        "an expired key is free again"
    );

    for expected in 1..=3 {
        let (count, left) = cache.hit("hits", long).await.expect("hit");
        assert_eq!(count, expected);
        assert!(left > Duration::ZERO && left <= long);
    }
    cache.delete("hits").await.expect("delete");
    assert_eq!(
        cache.hit("hits", long).await.expect("hit").0,
        1,
        "deleting resets the counter"
    );

    provisioned.cleanup().await;
}
