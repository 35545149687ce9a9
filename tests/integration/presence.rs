//! Read receipts, unread counts and typing, between ChatSender users and with an
//! ordinary Matrix client.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::clients::{NioUser, room_of_two, room_path};
use crate::harness::{Backends, EventStream, MatrixUser, TestApp, User, wait_until};
use crate::{for_each_backend, on_sqlite};

for_each_backend!(reading_and_typing_reach_the_other_members);
on_sqlite!(a_matrix_client_sees_receipts_and_typing_both_ways);

/// The room as `GET /rooms` lists it for `user`.
async fn listed(user: &User, room: &str) -> Value {
    let rooms = user.ok(Method::GET, "/rooms", None).await;
    let found = rooms["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .find(|r| r["room_id"] == room)
        .cloned();
    found.expect("the room is listed")
}

async fn unread_is(user: &User, room: &str, count: u64) {
    wait_until(
        &format!("{} has {count} unread", user.user_id),
        Duration::from_secs(30),
        || async { (listed(user, room).await["unread"] == count).then_some(()) },
    )
    .await;
}

async fn read(user: &User, room: &str, event_id: &str) {
    let body = json!({"event_id": event_id});
    user.ok(Method::POST, &room_path(room, "read"), Some(body))
        .await;
}

async fn typing(user: &User, room: &str) {
    let body = json!({"typing": true, "timeout_ms": 20000});
    user.ok(Method::PUT, &room_path(room, "typing"), Some(body))
        .await;
}

/// Two ChatSender users: reading clears the reader's unread count, tells the reader's
/// other tabs and shows the receipt to the other member; typing shows too.
async fn reading_and_typing_reach_the_other_members(backends: Backends) {
    let s = TestApp::spawn(backends).await;
    let (alice, bob) = (s.user("alice").await, s.user("bob").await);
    let mut bob_events = bob.events().await;
    let room = room_of_two(&alice, &bob, &mut bob_events).await;
    let mut other_tab = alice.events().await;

    bob.send(&room, "one").await;
    let two = bob.send(&room, "two").await;
    unread_is(&alice, &room, 2).await;
    assert_eq!(listed(&bob, &room).await["unread"], 0, "one's own messages");

    read(&alice, &room, &two).await;
    assert_eq!(listed(&alice, &room).await["unread"], 0);
    let (event, _) = other_tab
        .wait_for("the read on the other tab", |e| e.event == "read")
        .await;
    assert_eq!(event.data, json!({"room_id": room, "event_id": two}));
    let (event, _) = bob_events
        .wait_for("Alice's receipt", |e| e.event == "receipt")
        .await;
    assert_eq!(
        event.data,
        json!({"room_id": room, "user_id": alice.user_id, "event_id": two})
    );
    let members = listed(&bob, &room).await["members"].clone();
    let alice_member = members
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["user_id"] == alice.user_id.as_str())
        .cloned();
    assert_eq!(alice_member.expect("Alice")["read_event_id"], two.as_str());

    typing(&alice, &room).await;
    let (event, _) = bob_events
        .wait_for("Alice typing", |e| {
            e.event == "typing" && e.data["user_ids"] == json!([alice.user_id])
        })
        .await;
    assert_eq!(event.data["room_id"], room.as_str());
    let bad = alice
        .call(
            Method::PUT,
            &room_path(&room, "typing"),
            Some(json!({"typing": true, "timeout_ms": 0})),
        )
        .await;
    assert_eq!(bad.1["errcode"], "M_INVALID_PARAM", "{}", bad.1);
}

/// An ordinary Matrix client (matrix-nio) sees a ChatSender user's read receipt and
/// typing, and the ChatSender user sees the client's.
async fn a_matrix_client_sees_receipts_and_typing_both_ways(backends: Backends) {
    let s = TestApp::spawn(backends).await;
    let alice = s.user("alice").await;
    let mut alice_events: EventStream = alice.events().await;
    let carol = MatrixUser::register("carol").await;
    let mut nio = NioUser::start(&carol).await;
    let created = alice
        .ok(
            Method::POST,
            "/rooms",
            Some(json!({"name": "Receipts", "invite": [carol.user_id]})),
        )
        .await;
    let room = created["room_id"].as_str().expect("room_id").to_owned();
    nio.ask(json!({"cmd": "join", "room": room})).await;
    let hello = nio
        .ask(json!({"cmd": "send", "room": room, "body": "hello from nio"}))
        .await["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned();
    alice_events
        .wait_for("Carol's message", |e| e.data["event_id"] == hello.as_str())
        .await;

    read(&alice, &room, &hello).await;
    let seen = json!({"cmd": "wait_receipt", "room": room, "user": alice.user_id,
        "event_id": hello});
    nio.ask(seen).await;

    let reply = alice.send(&room, "hi Carol").await;
    nio.ask(json!({"cmd": "wait_message", "room": room, "body": "hi Carol"}))
        .await;
    nio.ask(json!({"cmd": "read", "room": room, "event_id": reply}))
        .await;
    let (event, _) = alice_events
        .wait_for("Carol's receipt", |e| {
            e.event == "receipt" && e.data["user_id"] == carol.user_id.as_str()
        })
        .await;
    assert_eq!(event.data["event_id"], reply.as_str());

    nio.ask(json!({"cmd": "typing", "room": room, "typing": true}))
        .await;
    alice_events
        .wait_for("Carol typing", |e| {
            e.event == "typing" && e.data["user_ids"] == json!([carol.user_id])
        })
        .await;
    typing(&alice, &room).await;
    let typing = json!({"cmd": "wait_typing", "room": room, "user": alice.user_id});
    nio.ask(typing).await;
}
