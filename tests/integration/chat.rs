//! Conversations through the JSON API, against a real Synapse: rooms, history,
//! access control, bad input, and an ordinary Matrix client on the other side.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::clients::{room_of_two, room_path};
use crate::harness::{Backends, MatrixUser, TestApp, env, http, unique, urlencode};
use crate::{for_each_backend, on_sqlite};

for_each_backend!(
    two_key_holders_talk_and_page_through_history,
    nobody_reads_or_acts_outside_their_rooms,
    a_user_of_a_standard_matrix_client_talks_with_chatsender_users,
);
on_sqlite!(
    bad_input_gets_errcodes_that_name_the_problem,
    the_daemon_serves_the_web_client_beside_its_api,
);

/// 1. Two key holders talk: invite on the stream and in `GET /rooms`, messages on
///    both streams and in history, in order, with paging through 300 messages.
async fn two_key_holders_talk_and_page_through_history(backends: Backends) {
    let s = TestApp::spawn(backends).await;
    let (alice, bob) = (s.user("alice").await, s.user("bob").await);
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
}

/// 3. A user cannot read, send to or invite into a room they are not in, nor see
///    another user's stream.
async fn nobody_reads_or_acts_outside_their_rooms(backends: Backends) {
    let s = TestApp::spawn(backends).await;
    let (alice, bob, mallory) = (
        s.user("alice").await,
        s.user("bob").await,
        s.user("mallory").await,
    );
    let mut mallory_events = mallory.events().await;
    let mut bob_events = bob.events().await;
    let room = room_of_two(&alice, &bob, &mut bob_events).await;
    let secret = alice.send(&room, "for Bob only").await;
    bob_events
        .wait_for("the secret", |e| e.data["event_id"] == secret.as_str())
        .await;

    // A txn_id used in one room is no pass into another: there it is a send of its
    // own, with the membership check, never the first room's event again.
    let dup = unique("dup");
    let send = |room: &str| format!("/rooms/{}/send/{dup}", urlencode(room));
    let first = alice
        .ok(Method::PUT, &send(&room), Some(json!({"body": "one"})))
        .await;
    let carol = s.user("carol").await;
    let mut carol_events = carol.events().await;
    let not_hers = room_of_two(&bob, &carol, &mut carol_events).await;
    let (status, body) = alice
        .call(Method::PUT, &send(&not_hers), Some(json!({"body": "one"})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let other = room_of_two(&alice, &bob, &mut bob_events).await;
    let second = alice
        .ok(Method::PUT, &send(&other), Some(json!({"body": "two"})))
        .await;
    assert_ne!(
        first["event_id"], second["event_id"],
        "another room, another event"
    );

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
}

/// 6. Bad input gets its errcode and a message that names the problem.
async fn bad_input_gets_errcodes_that_name_the_problem(backends: Backends) {
    let s = TestApp::spawn(backends).await;
    let (alice, bob) = (s.user("alice").await, s.user("bob").await);
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
    for (name, mentions) in [
        ("ali\u{1b}[31mce", "control characters (found U+001B)"),
        ("\u{202e}ecilA", "bidirectional overrides"),
        (
            "\u{200b}",
            "blank once its invisible characters are removed",
        ),
    ] {
        check(
            alice
                .call(
                    Method::PUT,
                    "/me/display_name",
                    Some(json!({"display_name": name})),
                )
                .await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            mentions,
        );
    }
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
}

/// 2. An ordinary Matrix user on matrix-nio is invited by a ChatSender user, joins
///    and talks both ways; their encrypted event arrives as `kind: encrypted`; their
///    invite to a ChatSender user shows up as an invite.
async fn a_user_of_a_standard_matrix_client_talks_with_chatsender_users(backends: Backends) {
    let s = TestApp::spawn(backends).await;
    let alice = s.user("alice").await;
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
}

/// With `web.static_dir`, the daemon serves the web client at `/` (its routes falling
/// back to the app) while its own paths answer as before.
async fn the_daemon_serves_the_web_client_beside_its_api(backends: Backends) {
    let web = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        web.path().join("index.html"),
        "<!doctype html><title>ChatSender</title>",
    )
    .expect("write");
    let dir = web.path().to_owned();
    let s = TestApp::spawn_with(backends, move |settings| {
        settings.web.static_dir = Some(dir.clone());
    })
    .await;
    let get = |path: &str| http().get(s.url(path)).send();
    for path in ["/", "/chat/anything"] {
        let page = get(path).await.expect("page");
        assert_eq!(page.status(), 200, "{path}");
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .expect("csp");
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(
            page.text()
                .await
                .expect("html")
                .contains("<title>ChatSender</title>")
        );
    }
    let missing = get("/api/v1/nothing-here").await.expect("api");
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("json");
    assert_eq!(
        body["errcode"], "M_UNRECOGNIZED",
        "the API never answers with the app"
    );
    let doc = get("/api/v1/openapi.json").await.expect("openapi");
    assert!(doc.json::<Value>().await.expect("json")["openapi"].is_string());
    assert_eq!(get("/health").await.expect("health").status(), 200);
}
