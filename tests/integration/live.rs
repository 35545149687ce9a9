//! The live stream: across daemons, across reconnects and restarts, keepalives, and
//! delivery that never holds up the homeserver.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use chatsender::live::{
    DatabaseLog, Delivery, Hub, RedisLog, Signal, StreamKind, StreamLog, Subscription,
};
use ruma::OwnedUserId;
use tokio_util::sync::CancellationToken;

use crate::clients::room_of_two;
use crate::harness::{
    Backends, CacheKind, EventStream, Provisioned, TestApp, http, unique, urlencode, wait_until,
};
use crate::{for_each_backend, on_sqlite};

for_each_backend!(
    live_events_cross_daemons_and_survive_reconnects,
    a_message_wakes_only_its_recipients_streams,
    an_event_fed_again_after_a_crash_reaches_each_stream_once,
    one_append_of_many_payloads_gives_each_user_their_own_once,
    more_than_a_mib_of_payloads_in_one_append_reaches_an_open_stream_in_order,
);
on_sqlite!(
    the_stream_sends_keepalives,
    streams_are_capped_per_session_and_a_closed_one_frees_its_place
);

/// 4 and 5. The same txn_id gives one event; with Redis, a stream client on another
/// daemon gets the message, and after that daemon dies, reconnecting elsewhere with
/// Last-Event-ID loses and repeats nothing; a restart keeps rooms, history and
/// sessions.
async fn live_events_cross_daemons_and_survive_reconnects(backends: Backends) {
    let mut s = TestApp::spawn(backends).await;
    let (alice, bob) = (s.user("alice").await, s.user("bob").await);
    let mut bob_events = bob.events().await;
    let room = room_of_two(&alice, &bob, &mut bob_events).await;

    let path = format!("/rooms/{}/send/{}", urlencode(&room), unique("same"));
    let first = alice
        .ok(Method::PUT, &path, Some(json!({"body": "once"})))
        .await;
    let second = alice
        .ok(Method::PUT, &path, Some(json!({"body": "once"})))
        .await;
    assert_eq!(
        first["event_id"], second["event_id"],
        "the same txn_id gives the same event"
    );

    // Bob listens on a second daemon (Redis mode) or reconnects to the same one.
    let other = match backends.cache {
        CacheKind::Redis => Some(s.another_daemon().await),
        CacheKind::Embedded => None,
    };
    let listen_at = other
        .as_ref()
        .map_or(s.daemon().base_url.clone(), |d| d.base_url.clone());
    let mut on_other = EventStream::connect(&listen_at, &bob.token, None).await;
    let a = alice.send(&room, "a").await;
    let (got, _) = on_other
        .wait_for("message a on the other daemon", |e| {
            e.data["event_id"] == a.as_str()
        })
        .await;
    assert_eq!(got.data["body"], "a");
    let cursor = on_other.last_id.clone().expect("an id");
    drop(on_other);
    if let Some(daemon) = other {
        daemon.stop().await;
    }
    let missed = [alice.send(&room, "b").await, alice.send(&room, "c").await];
    let mut resumed = EventStream::connect(&s.daemon().base_url, &bob.token, Some(&cursor)).await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let event = resumed
            .next(Duration::from_secs(30))
            .await
            .expect("replayed events");
        if event.event == "message" {
            got.push(event.data["event_id"].as_str().expect("id").to_owned());
        }
    }
    assert_eq!(got, missed, "missed messages replayed once, in order");
    if let Some(extra) = resumed.next(Duration::from_millis(500)).await {
        panic!("nothing else is replayed, got {extra:?}");
    }
    drop(resumed);

    // A cursor the stream does not know gets `reset`.
    let mut stale = EventStream::connect(&s.daemon().base_url, &bob.token, Some("0-1")).await;
    let reset = stale.next(Duration::from_secs(10)).await.expect("an event");
    assert_eq!(reset.event, "reset");
    let newest = reset.id.clone().expect("a reset carries the newest id");
    drop(stale);
    let mut after_reset =
        EventStream::connect(&s.daemon().base_url, &bob.token, Some(&newest)).await;
    if let Some(extra) = after_reset.next(Duration::from_millis(500)).await {
        panic!("resuming from the reset's id repeats nothing, got {extra:?}");
    }
    drop(after_reset);

    // A cursor from the future (the database or Redis was restored or wiped since the
    // client saw it) gets `reset` too, and then new events.
    let future = match backends.cache {
        CacheKind::Redis => "99999999999999-0",
        CacheKind::Embedded => "99999999",
    };
    let mut ahead = EventStream::connect(&s.daemon().base_url, &bob.token, Some(future)).await;
    let reset = ahead.next(Duration::from_secs(10)).await.expect("an event");
    assert_eq!(reset.event, "reset", "a future cursor: {reset:?}");
    assert_eq!(reset.id.as_deref(), Some(newest.as_str()), "the newest id");
    let d = alice.send(&room, "d").await;
    ahead
        .wait_for("a new message after the reset", |e| {
            e.data["event_id"] == d.as_str()
        })
        .await;
    drop(ahead);

    // A restart keeps rooms, history and sessions.
    s.stop().await;
    s.start().await;
    let rooms = bob.ok(Method::GET, "/rooms", None).await;
    assert!(
        rooms["rooms"]
            .as_array()
            .expect("rooms")
            .iter()
            .any(|r| r["room_id"] == room.as_str())
    );
    let (status, page) = bob.messages(&room, "?limit=4").await;
    assert_eq!(status, 200);
    let bodies: Vec<&str> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(bodies, ["a", "b", "c", "d"]);
}

/// The stream sends a `: keepalive` comment every 15 s (the same code on every
/// backend, so tested once).
async fn the_stream_sends_keepalives(backends: Backends) {
    let s = TestApp::spawn(backends).await;
    let alice = s.user("alice").await;
    let mut events = alice.events().await;
    let started = std::time::Instant::now();
    while !events.comments.iter().any(|c| c == "keepalive") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no keepalive within 20 s"
        );
        if let Some(event) = events.next(Duration::from_secs(1)).await {
            panic!("an idle stream sent {event:?}");
        }
    }
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "keepalives are not sent too often"
    );
}

/// One session holds at most `server.max_streams_per_session` streams (8 by default);
/// the next is refused with 429 naming the cap, and closing one frees its place (the
/// same code on every backend, so tested once).
async fn streams_are_capped_per_session_and_a_closed_one_frees_its_place(backends: Backends) {
    let s = TestApp::spawn(backends).await;
    let alice = s.user("alice").await;
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(alice.events().await);
    }
    let extra = || async {
        http()
            .get(format!("{}/api/v1/events", alice.base))
            .bearer_auth(&alice.token)
            .send()
            .await
            .expect("events")
    };
    let refused = extra().await;
    assert_eq!(refused.status(), 429);
    let body: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED", "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains("8 live streams open"), "{body}");
    drop(open.pop());
    let reopened = wait_until(
        "a closed stream's place is free",
        Duration::from_secs(10),
        || async {
            let response = extra().await;
            (response.status() == 200).then_some(response)
        },
    )
    .await;
    drop(reopened);
    drop(open);
}

/// A message wakes the open streams of its room's ChatSender members and no others,
/// however many other streams are open (in Redis mode after a round trip through
/// pub/sub).
async fn a_message_wakes_only_its_recipients_streams(backends: Backends) {
    let s = TestApp::spawn(backends).await;
    let (alice, bob) = (s.user("alice").await, s.user("bob").await);
    let mut alice_events = alice.events().await;
    let mut bob_events = bob.events().await;
    let room = room_of_two(&alice, &bob, &mut bob_events).await;
    for stream in [&mut alice_events, &mut bob_events] {
        stream
            .wait_for("Bob's join", |e| {
                e.event == "membership"
                    && e.data["user_id"] == bob.user_id.as_str()
                    && e.data["membership"] == "join"
            })
            .await;
    }
    let mut others = Vec::new();
    for _ in 0..20 {
        let other = s.user("other").await;
        others.push((other.events().await, other));
    }

    let before = s.daemon().live.wakeups();
    let hello = alice.send(&room, "hello").await;
    for stream in [&mut alice_events, &mut bob_events] {
        stream
            .wait_for("hello", |e| e.data["event_id"] == hello.as_str())
            .await;
    }
    assert_eq!(
        s.daemon().live.wakeups() - before,
        2,
        "Alice's and Bob's streams, none of the 20 others"
    );
}

/// The feed may deliver an event again after a crash (delivered, not yet marked fed):
/// each stream keeps it once, live and on replay, in the database and in Redis.
async fn an_event_fed_again_after_a_crash_reaches_each_stream_once(backends: Backends) {
    let s = TestApp::spawn(backends).await;
    let alice = s.user("alice").await;
    let user = OwnedUserId::try_from(alice.user_id.as_str()).expect("user id");
    let delivery = |key: &str| Delivery {
        user_id: user.clone(),
        dedup_key: key.to_owned(),
        place: None,
        kind: StreamKind::Message,
        payload: json!({"event_id": key}).to_string().into(),
    };
    let live = &s.daemon().live;
    let mut stream = alice.events().await;
    live.deliver(&[delivery("$a")]).await.expect("deliver");
    let (first, _) = stream.wait_for("$a", |e| e.data["event_id"] == "$a").await;
    let cursor = first.id.expect("an id");
    for key in ["$b", "$b", "$c"] {
        live.deliver(&[delivery(key)]).await.expect("deliver");
    }
    let (_, before) = stream.wait_for("$c", |e| e.data["event_id"] == "$c").await;
    let seen: Vec<_> = before.iter().map(|e| e.data["event_id"].clone()).collect();
    assert_eq!(seen, [json!("$b")], "$b once on the open stream");
    let mut replay = EventStream::connect(&alice.base, &alice.token, Some(&cursor)).await;
    let (_, before) = replay.wait_for("$c", |e| e.data["event_id"] == "$c").await;
    let seen: Vec<_> = before.iter().map(|e| e.data["event_id"].clone()).collect();
    assert_eq!(seen, [json!("$b")], "$b once on replay");
}

/// One append carrying several payloads, one of them to more users than one Redis
/// script call takes: each user gets each of their own payloads once, in order, and
/// appending it all again adds nothing.
async fn one_append_of_many_payloads_gives_each_user_their_own_once(backends: Backends) {
    let provisioned = Provisioned::new(backends).await;
    let log = stream_log(&provisioned).await;
    let tag = unique("many");
    let user = |n: usize| OwnedUserId::try_from(format!("@{tag}-{n}:localhost")).expect("id");
    let to = |n: usize, key: &str, kind: StreamKind, payload: &std::sync::Arc<str>| Delivery {
        user_id: user(n),
        dedup_key: key.into(),
        place: None,
        kind,
        payload: payload.clone(),
    };
    let (a, b, read): (std::sync::Arc<str>, _, _) = (
        r#"{"a":1}"#.into(),
        r#"{"b":1}"#.into(),
        r#"{"read":1}"#.into(),
    );
    let mut batch: Vec<Delivery> = (0..600)
        .map(|n| to(n, "$a", StreamKind::Message, &a))
        .collect();
    batch.extend([600, 601].map(|n| to(n, "$b", StreamKind::Message, &b)));
    batch.push(to(0, "$a", StreamKind::Read, &read));
    batch.push(to(1, "$a", StreamKind::Message, &a)); // given twice
    // Open streams hear of each entry once: from the append itself (embedded mode) or
    // from the channel, whose message carries every payload of a script call (Redis).
    let hub = std::sync::Arc::new(Hub::default());
    let stop = CancellationToken::new();
    log.relay(hub.clone(), stop.clone()).await.expect("relay");
    let mut heard = [0, 1, 599, 600, 601].map(|n| (n, hub.subscribe(&user(n))));
    append(&*log, &hub, &batch).await;
    let got = |n: usize| {
        let log = &log;
        async move {
            let events = log.replay_all(&user(n)).await.expect("replay");
            events
                .iter()
                .map(|e| (e.kind, e.payload.to_string()))
                .collect::<Vec<_>>()
        }
    };
    let message = |p: &str| (StreamKind::Message, p.to_owned());
    assert_eq!(
        got(0).await,
        [
            message(r#"{"a":1}"#),
            (StreamKind::Read, r#"{"read":1}"#.into())
        ]
    );
    for n in [1, 499, 500, 599] {
        assert_eq!(got(n).await, [message(r#"{"a":1}"#)], "user {n}");
    }
    assert_eq!(got(601).await, [message(r#"{"b":1}"#)]);
    for (n, subscription) in &mut heard {
        for entry in got(*n).await {
            assert_eq!(
                next(subscription).await,
                entry,
                "user {n} hears its entries"
            );
        }
    }
    append(&*log, &hub, &batch).await;
    assert_eq!(got(0).await.len(), 2, "nothing twice");
    assert_eq!(got(599).await.len(), 1, "nothing twice");
    // Anything the second append published would come before this.
    let after: std::sync::Arc<str> = r#"{"after":1}"#.into();
    let last = [0, 1, 599, 600, 601].map(|n| to(n, "$after", StreamKind::Message, &after));
    append(&*log, &hub, &last).await;
    for (n, subscription) in &mut heard {
        let heard = next(subscription).await;
        assert_eq!(
            heard,
            message(r#"{"after":1}"#),
            "user {n} hears nothing twice"
        );
    }
    stop.cancel();
}

/// Appends `batch` and hands this daemon's hub what the log returns, as
/// `Live::deliver` does (in Redis mode the channel brings the entries instead).
pub async fn append(log: &dyn StreamLog, hub: &Hub, batch: &[Delivery]) {
    for event in log.append(batch).await.expect("append") {
        hub.publish(event);
    }
}

/// The next entry a subscription hears, as (kind, payload).
async fn next(subscription: &mut Subscription) -> (StreamKind, String) {
    match tokio::time::timeout(Duration::from_secs(10), subscription.recv()).await {
        Ok(Ok(Signal::Event(e))) => (e.kind, e.payload.to_string()),
        other => panic!("an entry, got {other:?}"),
    }
}

/// The backends' stream log, as the daemon makes it.
pub async fn stream_log(provisioned: &Provisioned) -> Box<dyn StreamLog> {
    match &provisioned.redis_url {
        Some(url) => {
            let events = provisioned.stores().await.events;
            let log_id = events.identity().await.expect("the log's identity");
            Box::new(
                RedisLog::connect(
                    &url.clone().into(),
                    &provisioned.key_prefix,
                    &log_id,
                    Duration::from_secs(5),
                )
                .await
                .expect("redis"),
            )
        }
        None => Box::new(DatabaseLog::new(provisioned.stores().await.streams)),
    }
}

/// Payloads near the size of the largest Matrix event, 1.4 MB of them in one append:
/// in Redis mode the channel carries them in more than one message.
async fn more_than_a_mib_of_payloads_in_one_append_reaches_an_open_stream_in_order(
    backends: Backends,
) {
    let provisioned = Provisioned::new(backends).await;
    let log = stream_log(&provisioned).await;
    let hub = std::sync::Arc::new(Hub::default());
    let stop = CancellationToken::new();
    log.relay(hub.clone(), stop.clone()).await.expect("relay");
    let user = OwnedUserId::try_from(format!("@{}:localhost", unique("large"))).expect("id");
    let mut heard = hub.subscribe(&user);
    let payloads: Vec<std::sync::Arc<str>> = (0..24)
        .map(|n| format!(r#"{{"n":{n},"body":"{}"}}"#, "x".repeat(60_000)).into())
        .collect();
    let batch: Vec<Delivery> = payloads
        .iter()
        .enumerate()
        .map(|(n, payload)| Delivery {
            user_id: user.clone(),
            dedup_key: format!("$large-{n}"),
            place: None,
            kind: StreamKind::Message,
            payload: payload.clone(),
        })
        .collect();
    append(&*log, &hub, &batch).await;
    for (n, payload) in payloads.iter().enumerate() {
        let (kind, heard) = next(&mut heard).await;
        assert_eq!(kind, StreamKind::Message);
        assert!(heard == **payload, "payload {n} heard in its place");
    }
    stop.cancel();
}
