//! Conversations through the JSON API and the live stream, against a real Synapse.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::for_each_backend;
use crate::harness::{
    Backends, CacheKind, Daemon, EventStream, MatrixUser, Slot, daemon_settings, env, http, unique,
    urlencode,
};
use crate::login::{Setup, setup};

for_each_backend!(
    two_key_holders_talk_and_page_through_history,
    nobody_reads_or_acts_outside_their_rooms,
    live_events_cross_daemons_and_survive_reconnects,
    bad_input_gets_errcodes_that_name_the_problem,
    a_user_of_a_standard_matrix_client_talks_with_chatsender_users,
);

/// A logged-in ChatSender user.
struct User {
    base: String,
    token: String,
    user_id: String,
}

impl User {
    async fn new(s: &Setup, name: &str) -> User {
        let name = unique(name);
        let (key_json, key) = s.generate(&["--name", &name]);
        let token = s.login(&key).await;
        User {
            base: s.daemon.base_url.clone(),
            token,
            user_id: key_json["user_id"].as_str().expect("user").to_owned(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = http()
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("api call");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method, path, body).await;
        assert!(status.is_success(), "{path}: {status} {value}");
        value
    }

    async fn events(&self) -> EventStream {
        EventStream::connect(&self.base, &self.token, None).await
    }

    async fn send(&self, room: &str, body: &str) -> String {
        let path = format!("/rooms/{}/send/{}", urlencode(room), unique("t"));
        self.ok(Method::PUT, &path, Some(json!({"body": body})))
            .await["event_id"]
            .as_str()
            .expect("event_id")
            .to_owned()
    }

    async fn messages(&self, room: &str, query: &str) -> (StatusCode, Value) {
        self.call(
            Method::GET,
            &format!("/rooms/{}/messages{query}", urlencode(room)),
            None,
        )
        .await
    }
}

fn room_path(room: &str, action: &str) -> String {
    format!("/rooms/{}/{action}", urlencode(room))
}

/// Alice opens a room and invites Bob, who sees the invite and joins.
async fn room_of_two(alice: &User, bob: &User, bob_events: &mut EventStream) -> String {
    let created = alice
        .ok(
            Method::POST,
            "/rooms",
            Some(json!({"name": "Tea", "invite": [bob.user_id]})),
        )
        .await;
    let room = created["room_id"].as_str().expect("room_id").to_owned();
    let (invite, _) = bob_events
        .wait_for("Bob's invite", |e| {
            e.event == "membership"
                && e.data["room_id"] == room.as_str()
                && e.data["membership"] == "invite"
        })
        .await;
    assert_eq!(invite.data["user_id"], bob.user_id.as_str());
    assert_eq!(invite.data["sender"], alice.user_id.as_str());
    let rooms = bob.ok(Method::GET, "/rooms", None).await;
    let listed = rooms["invites"]
        .as_array()
        .expect("invites")
        .iter()
        .find(|i| i["room_id"] == room.as_str())
        .cloned();
    let listed = listed.expect("the invite is listed");
    assert_eq!(listed["inviter"], alice.user_id.as_str());
    assert_eq!(listed["name"], "Tea");
    bob.ok(Method::POST, &room_path(&room, "join"), Some(json!({})))
        .await;
    room
}

/// 1. Two key holders talk: invite on the stream and in `GET /rooms`, messages on
///    both streams and in history, in order, with paging through 300 messages.
async fn two_key_holders_talk_and_page_through_history(backends: Backends) {
    let s = setup(backends, |_| {}).await;
    let (alice, bob) = (User::new(&s, "alice").await, User::new(&s, "bob").await);
    let (mut alice_events, mut bob_events) = (alice.events().await, bob.events().await);
    let room = room_of_two(&alice, &bob, &mut bob_events).await;
    alice_events
        .wait_for("Bob's join", |e| {
            e.event == "membership"
                && e.data["user_id"] == bob.user_id.as_str()
                && e.data["membership"] == "join"
        })
        .await;

    let hello = alice.send(&room, "hello Bob").await;
    let hi = bob.send(&room, "hi Alice").await;
    for stream in [&mut alice_events, &mut bob_events] {
        let (first, _) = stream
            .wait_for("hello", |e| {
                e.event == "message" && e.data["event_id"] == hello.as_str()
            })
            .await;
        assert_eq!(first.data["body"], "hello Bob");
        assert_eq!(first.data["sender"], alice.user_id.as_str());
        assert_eq!(first.data["kind"], "text");
        assert_eq!(first.data["room_id"], room.as_str());
        let (second, _) = stream
            .wait_for("hi", |e| {
                e.event == "message" && e.data["event_id"] == hi.as_str()
            })
            .await;
        assert_eq!(second.data["body"], "hi Alice");
        assert!(second.id.is_some(), "every event has an id");
    }
    let rooms = alice.ok(Method::GET, "/rooms", None).await;
    let summary = rooms["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .find(|r| r["room_id"] == room.as_str())
        .cloned()
        .expect("room listed");
    assert_eq!(summary["name"], "Tea");
    let members: Vec<&str> = summary["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["user_id"].as_str())
        .collect();
    assert!(
        members.contains(&alice.user_id.as_str()) && members.contains(&bob.user_id.as_str()),
        "{members:?}"
    );
    assert_eq!(summary["last_message"]["event_id"], hi.as_str());

    // Display names: set through the API, seen in /me, /users and the room.
    bob.ok(
        Method::PUT,
        "/me/display_name",
        Some(json!({"display_name": "Bobby"})),
    )
    .await;
    assert_eq!(
        bob.ok(Method::GET, "/me", None).await["display_name"],
        "Bobby"
    );
    let users = alice.ok(Method::GET, "/users", None).await;
    let listed = users["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["user_id"] == bob.user_id.as_str())
        .cloned();
    assert_eq!(listed.expect("Bob is listed")["display_name"], "Bobby");
    let renamed = alice.send(&room, "after the rename").await;
    alice_events
        .wait_for("the message after the rename", |e| {
            e.data["event_id"] == renamed.as_str()
        })
        .await;
    let by_bob = bob.send(&room, "signed Bobby").await;
    let (named, _) = alice_events
        .wait_for("Bob's message", |e| e.data["event_id"] == by_bob.as_str())
        .await;
    assert_eq!(
        named.data["sender_name"], "Bobby",
        "the room knows Bob's new name"
    );

    // 300 more, sent by both in turn.
    let mut sent = vec![hello.clone(), hi.clone(), renamed, by_bob];
    for i in 0..300 {
        let sender = if i % 2 == 0 { &alice } else { &bob };
        sent.push(sender.send(&room, &format!("message {i}")).await);
    }
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let query = match &before {
            Some(token) => format!("?limit=100&before={}", urlencode(token)),
            None => "?limit=100".to_owned(),
        };
        let (status, page) = bob.messages(&room, &query).await;
        assert_eq!(status, 200, "{page}");
        let messages = page["messages"].as_array().expect("messages");
        assert!(messages.len() <= 100);
        let ts: Vec<i64> = messages
            .iter()
            .map(|m| m["ts"].as_i64().expect("ts"))
            .collect();
        assert!(
            ts.windows(2).all(|w| w[0] <= w[1]),
            "oldest first within a page"
        );
        let ids: Vec<String> = messages
            .iter()
            .map(|m| m["event_id"].as_str().expect("id").to_owned())
            .collect();
        seen.splice(0..0, ids);
        match page["prev"].as_str() {
            Some(prev) => before = Some(prev.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        seen, sent,
        "the history holds the 304 messages, once each, in the order sent"
    );
    s.finish().await;
}

/// 3. A user cannot read, send to or invite into a room they are not in, nor see
///    another user's stream.
async fn nobody_reads_or_acts_outside_their_rooms(backends: Backends) {
    let s = setup(backends, |_| {}).await;
    let (alice, bob, mallory) = (
        User::new(&s, "alice").await,
        User::new(&s, "bob").await,
        User::new(&s, "mallory").await,
    );
    let mut mallory_events = mallory.events().await;
    let mut bob_events = bob.events().await;
    let room = room_of_two(&alice, &bob, &mut bob_events).await;
    let secret = alice.send(&room, "for Bob only").await;
    bob_events
        .wait_for("the secret", |e| e.data["event_id"] == secret.as_str())
        .await;

    let (status, body) = mallory.messages(&room, "").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (status, _) = mallory
        .call(
            Method::PUT,
            &format!("/rooms/{}/send/x1", urlencode(&room)),
            Some(json!({"body": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = mallory
        .call(
            Method::POST,
            &room_path(&room, "invite"),
            Some(json!({"user_id": mallory.user_id})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = mallory
        .call(Method::POST, &room_path(&room, "join"), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "joining without an invite");
    let rooms = mallory.ok(Method::GET, "/rooms", None).await;
    assert_eq!(rooms, json!({"rooms": [], "invites": []}));
    // Mallory's stream carries nothing of Alice and Bob's room: only her own events
    // could arrive, and she has none.
    if let Some(event) = mallory_events.next(Duration::from_millis(500)).await {
        panic!("Mallory's stream showed {event:?}");
    }
    s.finish().await;
}

/// 4 and 5. The same txn_id gives one event; with Redis, a stream client on another
/// daemon gets the message, and after that daemon dies, reconnecting elsewhere with
/// Last-Event-ID loses and repeats nothing; a restart keeps rooms, history and
/// sessions.
async fn live_events_cross_daemons_and_survive_reconnects(backends: Backends) {
    let mut s = setup(backends, |_| {}).await;
    let (alice, bob) = (User::new(&s, "alice").await, User::new(&s, "bob").await);
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
    let other = if backends.cache == CacheKind::Redis {
        let slot = Slot::lease().await;
        let daemon = Daemon::start_ready(daemon_settings(&slot, &s.provisioned)).await;
        Some((daemon, slot))
    } else {
        None
    };
    let listen_at = other
        .as_ref()
        .map_or(s.daemon.base_url.clone(), |(d, _)| d.base_url.clone());
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
    if let Some((daemon, _slot)) = other {
        daemon.stop().await;
    }
    let missed = [alice.send(&room, "b").await, alice.send(&room, "c").await];
    let mut resumed = EventStream::connect(&s.daemon.base_url, &bob.token, Some(&cursor)).await;
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
    let mut stale = EventStream::connect(&s.daemon.base_url, &bob.token, Some("0-1")).await;
    let reset = stale.next(Duration::from_secs(10)).await.expect("an event");
    assert_eq!(reset.event, "reset");
    let newest = reset.id.clone().expect("a reset carries the newest id");
    drop(stale);
    let mut after_reset = EventStream::connect(&s.daemon.base_url, &bob.token, Some(&newest)).await;
    if let Some(extra) = after_reset.next(Duration::from_millis(500)).await {
        panic!("resuming from the reset's id repeats nothing, got {extra:?}");
    }
    drop(after_reset);

    // A restart keeps rooms, history and sessions.
    let settings = s.slot_settings();
    s.daemon.stop().await;
    s.daemon = Daemon::start_ready(settings).await;
    let rooms = bob.ok(Method::GET, "/rooms", None).await;
    assert!(
        rooms["rooms"]
            .as_array()
            .expect("rooms")
            .iter()
            .any(|r| r["room_id"] == room.as_str())
    );
    let (status, page) = bob.messages(&room, "?limit=3").await;
    assert_eq!(status, 200);
    let bodies: Vec<&str> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(bodies, ["a", "b", "c"]);
    s.finish().await;
}

/// 6. Bad input gets its errcode and a message that names the problem.
async fn bad_input_gets_errcodes_that_name_the_problem(backends: Backends) {
    let s = setup(backends, |_| {}).await;
    let (alice, bob) = (User::new(&s, "alice").await, User::new(&s, "bob").await);
    let mut bob_events = bob.events().await;
    let room = room_of_two(&alice, &bob, &mut bob_events).await;

    let check = |(status, body): (StatusCode, Value),
                 want_status: StatusCode,
                 errcode: &str,
                 mentions: &str| {
        assert_eq!(status, want_status, "{body}");
        assert_eq!(body["errcode"], errcode, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains(mentions),
            "`{mentions}` not in {body}"
        );
    };
    check(
        alice.messages("not-a-room", "").await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
        "not-a-room",
    );
    check(
        alice.messages("!nosuchroom:localhost", "").await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
        "!nosuchroom:localhost",
    );
    check(
        alice.messages(&room, "?limit=0").await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
        "limit",
    );
    check(
        alice.messages(&room, "?limit=201").await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
        "limit",
    );
    check(
        alice.messages(&room, "?limit=many").await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
        "limit",
    );
    let send = format!("/rooms/{}/send/t1", urlencode(&room));
    check(
        alice
            .call(Method::PUT, &send, Some(json!({"body": ""})))
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
        "body",
    );
    check(
        alice
            .call(Method::PUT, &send, Some(json!({"text": "x"})))
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
        "body",
    );
    let big = "x".repeat(65 * 1024);
    check(
        alice
            .call(Method::PUT, &send, Some(json!({"body": big})))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
        "64 KiB",
    );
    let bad_txn = format!("/rooms/{}/send/{}", urlencode(&room), urlencode("a b"));
    check(
        alice
            .call(Method::PUT, &bad_txn, Some(json!({"body": "x"})))
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
        "txn_id",
    );
    check(
        alice
            .call(
                Method::POST,
                "/rooms",
                Some(json!({"invite": ["not a user"]})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
        "not a user",
    );
    check(
        alice
            .call(
                Method::POST,
                &room_path(&room, "invite"),
                Some(json!({"user_id": "@x"})),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
        "@x",
    );
    let raw = http()
        .post(format!("{}/api/v1/rooms", alice.base))
        .bearer_auth(&alice.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(raw.status(), 400);
    assert_eq!(
        raw.json::<Value>().await.expect("json")["errcode"],
        "M_NOT_JSON"
    );
    s.finish().await;
}

/// 2. An ordinary Matrix user on matrix-nio is invited by a ChatSender user, joins
///    and talks both ways; their encrypted event arrives as `kind: encrypted`; their
///    invite to a ChatSender user shows up as an invite.
async fn a_user_of_a_standard_matrix_client_talks_with_chatsender_users(backends: Backends) {
    let s = setup(backends, |_| {}).await;
    let alice = User::new(&s, "alice").await;
    let mut alice_events = alice.events().await;
    let carol = MatrixUser::register("carol").await;
    let created = alice
        .ok(
            Method::POST,
            "/rooms",
            Some(json!({"name": "Mixed", "invite": [carol.user_id]})),
        )
        .await;
    let room = created["room_id"].as_str().expect("room_id").to_owned();
    alice.send(&room, "hello Carol").await;

    let env = env();
    let room_arg = room.clone();
    let (carol_id, carol_token, alice_id, hs) = (
        carol.user_id.clone(),
        carol.token.clone(),
        alice.user_id.clone(),
        env.synapse_url.clone(),
    );
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&env.nio_python)
            .arg(&env.nio_client)
            .args([
                "--homeserver",
                &hs,
                "--user-id",
                &carol_id,
                "--token",
                &carol_token,
            ])
            .args([
                "--room",
                &room_arg,
                "--expect",
                "hello Carol",
                "--invite",
                &alice_id,
            ])
            .output()
            .expect("run the matrix-nio client")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "matrix-nio client: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let done: Value = serde_json::from_slice(&output.stdout).expect("its JSON line");

    let (joined, _) = alice_events
        .wait_for("Carol's join", |e| {
            e.event == "membership"
                && e.data["user_id"] == carol.user_id.as_str()
                && e.data["membership"] == "join"
        })
        .await;
    assert_eq!(joined.data["room_id"], room.as_str());
    let (reply, _) = alice_events
        .wait_for("Carol's reply", |e| e.data["event_id"] == done["reply"])
        .await;
    assert_eq!(
        (reply.data["body"].as_str(), reply.data["kind"].as_str()),
        (Some("hi from nio"), Some("text"))
    );
    assert_eq!(reply.data["sender"], carol.user_id.as_str());
    let (encrypted, _) = alice_events
        .wait_for("Carol's encrypted event", |e| {
            e.data["event_id"] == done["encrypted"]
        })
        .await;
    assert_eq!(encrypted.data["kind"], "encrypted");
    let (status, page) = alice.messages(&room, "?limit=10").await;
    assert_eq!(status, 200);
    let kinds: Vec<(&str, &str)> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["body"].as_str().unwrap_or_default(),
                m["kind"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("hello Carol", "text"),
            ("hi from nio", "text"),
            ("", "encrypted")
        ]
    );

    let own_room = done["own_room"].as_str().expect("own_room");
    alice_events
        .wait_for("Carol's invite", |e| {
            e.event == "membership"
                && e.data["room_id"] == own_room
                && e.data["membership"] == "invite"
        })
        .await;
    let rooms = alice.ok(Method::GET, "/rooms", None).await;
    let invite = rooms["invites"]
        .as_array()
        .expect("invites")
        .iter()
        .find(|i| i["room_id"] == own_room)
        .cloned();
    let invite = invite.expect("the invite is listed");
    assert_eq!(invite["inviter"], carol.user_id.as_str());
    assert_eq!(invite["name"], "From nio");
    alice
        .ok(Method::POST, &room_path(own_room, "join"), Some(json!({})))
        .await;
    let rooms = alice.ok(Method::GET, "/rooms", None).await;
    let joined = rooms["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .find(|r| r["room_id"] == own_room)
        .cloned();
    let joined = joined.expect("the joined room is listed");
    let members: Vec<&str> = joined["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["user_id"].as_str())
        .collect();
    assert!(
        members.contains(&carol.user_id.as_str()),
        "the room's earlier members are known after joining: {members:?}"
    );
    s.finish().await;
}

/// The stream sends a `: keepalive` comment every 15 s (the same code on every
/// backend, so tested once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_keepalives() {
    let s = setup(Backends::SQLITE_EMBEDDED, |_| {}).await;
    let alice = User::new(&s, "alice").await;
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
    s.finish().await;
}
