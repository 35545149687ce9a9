//! What the feed delivers carries its event's place in the log: a user's stream keeps
//! one entry per place, in the log's order, around the entries that have no place
//! (typing, receipts); and a new database's log never meets an old log's entries.

use std::sync::Arc;
use std::time::Duration;

use chatsender::live::{Delivery, Hub, Signal, StreamKind, StreamLog};
use ruma::OwnedUserId;
use tokio_util::sync::CancellationToken;

use crate::for_each_backend;
use crate::harness::{Backends, Provisioned, unique};
use crate::live::{append, stream_log};

for_each_backend!(
    an_event_fed_again_appends_nothing_and_unplaced_entries_keep_the_order,
    a_new_database_starts_its_streams_afresh,
    an_event_to_more_users_than_one_redis_transaction_takes_reaches_each_once,
);

fn delivery(user: &OwnedUserId, place: Option<i64>, kind: StreamKind, body: &str) -> Delivery {
    Delivery {
        user_id: user.clone(),
        dedup_key: format!("{body}-{place:?}"),
        place,
        kind,
        payload: format!(r#"{{"body":"{body}"}}"#).into(),
    }
}

/// A stream log on fresh backends, relaying to a hub of its own until `stop`.
async fn relayed(
    backends: Backends,
) -> (Provisioned, Box<dyn StreamLog>, Arc<Hub>, CancellationToken) {
    let provisioned = Provisioned::new(backends).await;
    let log = stream_log(&provisioned).await;
    let hub = Arc::new(Hub::default());
    let stop = CancellationToken::new();
    log.relay(hub.clone(), stop.clone()).await.expect("relay");
    (provisioned, log, hub, stop)
}

/// The payloads' bodies of the user's stream, and whether its ids increase.
async fn bodies(log: &dyn StreamLog, user: &OwnedUserId) -> (Vec<String>, bool) {
    let events = log.replay_all(user).await.expect("replay");
    let increasing = events.windows(2).all(|w| log.is_after(&w[1].id, &w[0].id));
    let bodies = events
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.payload).expect("json");
            v["body"].as_str().expect("body").to_owned()
        })
        .collect();
    (bodies, increasing)
}

/// Places 5 and 7 fed, then a typing entry (no place), then the same places fed again
/// after a crash, then place 9: each user's stream has each entry once, in that order,
/// with ids that increase, and an open stream hears each entry (the refeed's are
/// skipped by their ids, which a stream of the API does, see `stream.rs`).
async fn an_event_fed_again_appends_nothing_and_unplaced_entries_keep_the_order(
    backends: Backends,
) {
    let (_provisioned, log, hub, stop) = relayed(backends).await;
    let tag = unique("placed");
    let user = |n: usize| OwnedUserId::try_from(format!("@{tag}-{n}:localhost")).expect("id");
    let (alice, bob) = (user(0), user(1));
    let mut heard = hub.subscribe(&alice);
    let fed = [
        delivery(&alice, Some(5), StreamKind::Message, "five"),
        delivery(&bob, Some(5), StreamKind::Message, "five"),
        delivery(&alice, Some(7), StreamKind::Room, "seven"),
    ];
    append(&*log, &hub, &fed).await;
    let typing = delivery(&alice, None, StreamKind::Typing, "typing");
    append(&*log, &hub, &[typing]).await;
    append(&*log, &hub, &fed).await;
    append(
        &*log,
        &hub,
        &[delivery(&alice, Some(9), StreamKind::Message, "nine")],
    )
    .await;

    let (got, increasing) = bodies(&*log, &alice).await;
    assert_eq!(got, ["five", "seven", "typing", "nine"], "alice's stream");
    assert!(increasing, "alice's ids increase");
    assert_eq!(bodies(&*log, &bob).await.0, ["five"], "bob's stream");
    // What the open stream hears, skipping by id what it has had (as a stream of the
    // API does).
    let mut last: Option<String> = None;
    let mut live = Vec::new();
    while live.len() < 4 {
        let received = tokio::time::timeout(Duration::from_secs(10), heard.recv()).await;
        let Ok(Ok(Signal::Event(event))) = received else {
            panic!("an entry, got {received:?}");
        };
        if last.as_deref().is_some_and(|l| !log.is_after(&event.id, l)) {
            continue;
        }
        last = Some(event.id.clone());
        let v: serde_json::Value = serde_json::from_str(&event.payload).expect("json");
        live.push(v["body"].as_str().expect("body").to_owned());
    }
    assert_eq!(live, ["five", "seven", "typing", "nine"], "heard live");
    stop.cancel();
}

/// Two databases, one Redis prefix: the second log's streams hold none of the first's
/// entries, and its place 1 is appended although the first log's streams are past it.
async fn a_new_database_starts_its_streams_afresh(backends: Backends) {
    let first = Provisioned::new(backends).await;
    let mut second = Provisioned::new(backends).await;
    second.key_prefix = first.key_prefix.clone();
    let ids = (
        first.stores().await.events.identity().await.expect("id"),
        second.stores().await.events.identity().await.expect("id"),
    );
    assert!(!ids.0.is_empty(), "a log has an identity");
    assert_ne!(ids.0, ids.1, "each database's log has its own");
    let again = first.stores().await.events.identity().await.expect("id");
    assert_eq!(again, ids.0, "and keeps it");

    let user = OwnedUserId::try_from(format!("@{}:localhost", unique("fresh"))).expect("id");
    let hub = Hub::default();
    let old = stream_log(&first).await;
    append(
        &*old,
        &hub,
        &[delivery(&user, Some(40), StreamKind::Message, "old")],
    )
    .await;
    let new = stream_log(&second).await;
    assert_eq!(bodies(&*new, &user).await.0, Vec::<String>::new());
    append(
        &*new,
        &hub,
        &[delivery(&user, Some(1), StreamKind::Message, "new")],
    )
    .await;
    assert_eq!(bodies(&*new, &user).await.0, ["new"]);
    assert_eq!(bodies(&*old, &user).await.0, ["old"]);
}

/// One event fed to 600 users, more than one Redis transaction takes (250): each user's
/// stream has it once, an open stream of the first and of the last part hears it, and
/// feeding it again appends nothing.
async fn an_event_to_more_users_than_one_redis_transaction_takes_reaches_each_once(
    backends: Backends,
) {
    let (_provisioned, log, hub, stop) = relayed(backends).await;
    let tag = unique("wide");
    let user = |n: usize| OwnedUserId::try_from(format!("@{tag}-{n}:localhost")).expect("id");
    let mut heard = [0, 249, 250, 599].map(|n| (n, hub.subscribe(&user(n))));
    let fed: Vec<Delivery> = (0..600)
        .map(|n| delivery(&user(n), Some(3), StreamKind::Message, "wide"))
        .collect();
    append(&*log, &hub, &fed).await;
    for (n, subscription) in &mut heard {
        let received = tokio::time::timeout(Duration::from_secs(10), subscription.recv()).await;
        let Ok(Ok(Signal::Event(event))) = received else {
            panic!("user {n}: an entry, got {received:?}");
        };
        assert!(event.payload.contains("wide"), "user {n} hears it");
    }
    append(&*log, &hub, &fed).await;
    for n in [0, 249, 250, 599] {
        assert_eq!(bodies(&*log, &user(n)).await.0, ["wide"], "user {n}, once");
    }
    stop.cancel();
}
