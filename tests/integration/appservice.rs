//! The application service against a real Synapse: puppets, transactions, restarts.

use std::time::Duration;

use chatsender::config::Settings;
use chatsender::store::EventRecord;
use ruma::{OwnedRoomId, OwnedUserId, RoomId};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::harness::{
    Backends, Daemon, MatrixUser, OwnSynapse, Provisioned, Slot, TestApp, free_port, http, unique,
    urlencode, wait_until,
};
use crate::{for_each_backend, on_sqlite};

for_each_backend!(
    puppet_and_matrix_user_exchange_messages,
    a_transaction_is_processed_once_and_a_restarted_txn_id_again,
    messages_sent_while_the_daemon_is_down_are_processed_once_after_restart,
    sigterm_lets_the_transaction_in_flight_finish,
);

on_sqlite!(
    a_wrong_or_missing_hs_token_is_refused_and_nothing_processed,
    the_daemon_becomes_ready_when_synapse_comes_up,
    malformed_events_are_skipped_and_the_rest_processed,
);

/// Waits until the daemon has recorded an event matching `matches` in `room`.
async fn wait_for_event(
    daemon: &Daemon,
    room: &RoomId,
    what: &str,
    matches: impl Fn(&EventRecord) -> bool,
) -> EventRecord {
    wait_until(what, Duration::from_secs(30), || async {
        let events = daemon
            .stores
            .events
            .room_events(room)
            .await
            .expect("events");
        events.into_iter().find(|e| matches(e))
    })
    .await
}

fn content(event: &EventRecord) -> Value {
    let json: Value = serde_json::from_str(event.json.json().get()).expect("stored json");
    json["content"].clone()
}

/// A puppet and an ordinary Matrix user set up in a shared room.
struct Conversation {
    puppet: OwnedUserId,
    carol: MatrixUser,
    room: OwnedRoomId,
}

/// Alice (a puppet) creates a room and invites Carol (a password user), who joins;
/// returns once the daemon has processed Carol's join.
async fn conversation(app: &TestApp) -> Conversation {
    let daemon = app.daemon();
    let puppet = app.slot.puppet_id(&unique("alice"));
    daemon
        .puppets
        .ensure(&puppet, "Alice")
        .await
        .expect("puppet");
    let mut carol = MatrixUser::register("carol").await;
    let carol_id = OwnedUserId::try_from(carol.user_id.clone()).expect("carol id");
    let room = daemon
        .homeserver
        .create_room(&puppet, Some("Tea"), std::slice::from_ref(&carol_id), false)
        .await
        .expect("create room");
    let invited = room.to_string();
    carol
        .sync_until("the invite", |s| {
            s["rooms"]["invite"].get(&invited).map(|_| ())
        })
        .await;
    carol.join(room.as_str()).await;
    wait_for_event(daemon, &room, "Carol's join reaches the daemon", |e| {
        e.event_type == "m.room.member"
            && e.state_key.as_deref() == Some(carol.user_id.as_str())
            && content(e)["membership"] == "join"
    })
    .await;
    Conversation {
        puppet,
        carol,
        room,
    }
}

/// 1. A puppet's message reaches an ordinary user through /sync, and the reply comes
///    back to the daemon in a transaction.
async fn puppet_and_matrix_user_exchange_messages(backends: Backends) {
    let app = TestApp::spawn(backends).await;
    let daemon = app.daemon();
    let Conversation {
        puppet,
        mut carol,
        room,
    } = conversation(&app).await;

    // Registering again is harmless and keeps the user.
    daemon
        .puppets
        .ensure(&puppet, "Alice")
        .await
        .expect("second ensure");

    let sent = daemon
        .homeserver
        .send_text(&puppet, &room, "txn-1", "hello Carol")
        .await
        .expect("send");
    let resent = daemon
        .homeserver
        .send_text(&puppet, &room, "txn-1", "hello Carol")
        .await
        .expect("resend");
    assert_eq!(sent, resent, "the same txn_id gives the same event");
    let room_key = room.to_string();
    let seen = carol
        .sync_until("Alice's message", |s| {
            let events = s["rooms"]["join"][&room_key]["timeline"]["events"].as_array()?;
            events
                .iter()
                .find(|e| e["event_id"] == sent.as_str())
                .cloned()
        })
        .await;
    assert_eq!(seen["sender"], puppet.as_str());
    assert_eq!(seen["content"]["body"], "hello Carol");

    let profile: Value = http()
        .get(format!(
            "{}/_matrix/client/v3/profile/{}",
            crate::harness::env().synapse_url,
            urlencode(puppet.as_str())
        ))
        .send()
        .await
        .expect("profile")
        .json()
        .await
        .expect("profile json");
    assert_eq!(
        profile["displayname"], "Alice",
        "the puppet's display name is set"
    );

    let reply = carol.send_text(room.as_str(), "hi Alice").await;
    let got = wait_for_event(daemon, &room, "Carol's reply reaches the daemon", |e| {
        e.event_id == reply.as_str()
    })
    .await;
    assert_eq!(got.sender.as_str(), carol.user_id);
    assert_eq!(got.event_type, "m.room.message");
    assert_eq!(content(&got)["body"], "hi Alice");

    // Synapse asks the daemon about users in its namespace: puppets exist, others not.
    let query = |user: String| {
        let daemon = &daemon;
        async move {
            http()
                .get(format!(
                    "{}/_matrix/app/v1/users/{}",
                    daemon.base_url,
                    urlencode(&user)
                ))
                .bearer_auth(&daemon.hs_token)
                .send()
                .await
                .expect("user query")
                .status()
        }
    };
    assert_eq!(query(puppet.to_string()).await, 200);
    assert_eq!(
        query(app.slot.puppet_id(&unique("nobody")).to_string()).await,
        404
    );
}

fn message(room: &str, event_id: &str, body: &str) -> Value {
    json!({
        "event_id": event_id, "room_id": room, "sender": "@carol:localhost",
        "type": "m.room.message", "origin_server_ts": 1_700_000_000_000u64,
        "content": {"msgtype": "m.text", "body": body},
    })
}

async fn event_ids(daemon: &Daemon, room: &str) -> Vec<String> {
    let room = RoomId::parse(room).expect("room id");
    let events = daemon
        .stores
        .events
        .room_events(&room)
        .await
        .expect("events");
    events.into_iter().map(|e| e.event_id.to_string()).collect()
}

/// 2. The same transaction twice is processed once; the same txnId with another body
///    (Synapse restarted and counts from 1 again) is processed again.
async fn a_transaction_is_processed_once_and_a_restarted_txn_id_again(backends: Backends) {
    let app = TestApp::spawn(backends).await;
    let daemon = app.daemon();
    let room = format!("!{}:localhost", unique("r"));
    let (e1, e2, e3) = (
        format!("${}", unique("a")),
        format!("${}", unique("b")),
        format!("${}", unique("c")),
    );

    let first = json!({"events": [message(&room, &e1, "one"), message(&room, &e2, "two")]});
    for _ in 0..2 {
        let r = daemon.push("1", &first).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.expect("json"), json!({}));
    }
    assert_eq!(event_ids(daemon, &room).await, [e1.clone(), e2.clone()]);

    // A restarted Synapse: txnId 1 again, new events (and one it had sent before).
    let after_restart =
        json!({"events": [message(&room, &e3, "three"), message(&room, &e1, "one")]});
    assert_eq!(daemon.push("1", &after_restart).await.status(), 200);
    assert_eq!(event_ids(daemon, &room).await, [e1, e2, e3]);

    // The tables' sizes come from a task that counts them at start and then now and
    // then: wait for its first count.
    let url = format!("{}/metrics", daemon.base_url);
    let text = wait_until(
        "/metrics has the tables' sizes",
        Duration::from_secs(30),
        || async {
            let metrics = http().get(&url).send().await.expect("metrics");
            let text = metrics.text().await.expect("metrics text");
            text.contains(r#"chatsender_table_rows{table="room_events"}"#)
                .then_some(text)
        },
    )
    .await;
    assert!(
        text.contains("chatsender_transactions_duplicate_total"),
        "{text}"
    );
    assert!(text.contains("chatsender_events_processed_total"), "{text}");
}

/// 3. Without the hs_token nothing is processed.
async fn a_wrong_or_missing_hs_token_is_refused_and_nothing_processed(backends: Backends) {
    let app = TestApp::spawn(backends).await;
    let daemon = app.daemon();
    let room = format!("!{}:localhost", unique("r"));
    let body = json!({"events": [message(&room, &format!("${}", unique("e")), "forged")]});
    let url = |path: &str| format!("{}{path}", daemon.base_url);

    for path in ["/_matrix/app/v1/transactions/7", "/transactions/7"] {
        let missing = http().put(url(path)).json(&body).send().await.expect("put");
        assert_eq!(missing.status(), 401);
        assert_eq!(
            missing.json::<Value>().await.expect("json")["errcode"],
            "M_MISSING_TOKEN"
        );

        let wrong = http()
            .put(url(path))
            .bearer_auth("not-the-token")
            .json(&body)
            .send()
            .await
            .expect("put");
        assert_eq!(wrong.status(), 403);
        assert_eq!(
            wrong.json::<Value>().await.expect("json")["errcode"],
            "M_FORBIDDEN"
        );

        let in_query = http()
            .put(url(&format!("{path}?access_token=wrong")))
            .json(&body)
            .send()
            .await
            .expect("put");
        assert_eq!(in_query.status(), 403);
    }
    let ping = http()
        .post(url("/_matrix/app/v1/ping"))
        .json(&json!({}))
        .send()
        .await
        .expect("ping");
    assert_eq!(ping.status(), 401);
    assert!(
        event_ids(daemon, &room).await.is_empty(),
        "nothing was processed"
    );

    // The legacy path and the legacy query-parameter token work with the right token.
    let legacy = http()
        .put(url(&format!(
            "/transactions/8?access_token={}",
            daemon.hs_token
        )))
        .json(&body)
        .send()
        .await
        .expect("put");
    assert_eq!(legacy.status(), 200);
    assert_eq!(event_ids(daemon, &room).await.len(), 1);

    let unknown = http()
        .get(url("/_matrix/app/v1/thirdparty/protocol/x"))
        .bearer_auth(&daemon.hs_token)
        .send()
        .await
        .expect("get");
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<Value>().await.expect("json")["errcode"],
        "M_UNRECOGNIZED"
    );
}

/// 4. Messages sent while the daemon is down are all processed, once, after it
///    starts again: Synapse redelivers, and the start-up ping makes that immediate.
async fn messages_sent_while_the_daemon_is_down_are_processed_once_after_restart(
    backends: Backends,
) {
    let mut app = TestApp::spawn(backends).await;
    let Conversation { carol, room, .. } = conversation(&app).await;
    app.stop().await;

    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(
            carol
                .send_text(room.as_str(), &format!("while you were out {i}"))
                .await,
        );
    }

    app.start().await;
    let daemon = app.daemon();
    let ids = wait_until(
        "every message sent during the outage is processed",
        Duration::from_secs(60),
        || async {
            let ids = event_ids(daemon, room.as_str()).await;
            sent.iter().all(|s| ids.contains(s)).then_some(ids)
        },
    )
    .await;
    for s in &sent {
        assert_eq!(
            ids.iter().filter(|id| *id == s).count(),
            1,
            "{s} processed exactly once"
        );
    }
    let mut unique_ids = ids.clone();
    unique_ids.sort();
    unique_ids.dedup();
    assert_eq!(unique_ids.len(), ids.len(), "no event recorded twice");
}

/// 5. With Synapse down at start `/ready` names the homeserver; once Synapse is up the
///    daemon becomes ready without a restart.
async fn the_daemon_becomes_ready_when_synapse_comes_up(backends: Backends) {
    let provisioned = Provisioned::new(backends).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (hs_port, port) = (free_port(), free_port());
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "homeserver: {{url: 'http://127.0.0.1:{hs_port}', server_name: localhost}}\n\
             appservice:\n  id: late\n  address: 'http://127.0.0.1:{port}'\n  \
             bot_localpart: late_bot\n  user_prefix: late_\n\
             listen: 127.0.0.1:{port}\n"
        ),
    )
    .expect("write config");
    let registration = dir.path().join("registration.yaml");
    chatsender::cli::registration::write(&config, &registration).expect("registration");
    let mut settings = Settings::load(&config).expect("config");
    provisioned.apply(&mut settings);

    let daemon = Daemon::start(settings).await;
    let ready = http()
        .get(format!("{}/ready", daemon.base_url))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["failing"], json!(["homeserver"]), "{body}");
    assert!(
        body["checks"]["homeserver"]
            .as_str()
            .unwrap_or_default()
            .contains("unreachable"),
        "{body}"
    );
    let health = http()
        .get(format!("{}/health", daemon.base_url))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200, "alive while not ready");

    let synapse = OwnSynapse::start(&dir.path().join("synapse"), hs_port, &[registration]);
    daemon.wait_ready().await;

    daemon.stop().await;
    drop(synapse);
}

/// 6. Malformed events are skipped; the valid ones in the same transaction processed.
async fn malformed_events_are_skipped_and_the_rest_processed(backends: Backends) {
    let app = TestApp::spawn(backends).await;
    let daemon = app.daemon();
    let room = format!("!{}:localhost", unique("r"));
    let (good1, good2) = (format!("${}", unique("g")), format!("${}", unique("h")));
    let mut odd_content = message(&room, &good2, "x");
    odd_content["content"] = json!({"msgtype": 5, "body": ["not", "text"]});
    let body = json!({"events": [
        message(&room, &good1, "fine"),
        {"type": "m.room.message", "content": {"body": "no ids"}},
        "not even an object",
        message(&room, "no-sigil", "bad event id"),
        {"event_id": format!("${}", unique("s")), "room_id": room, "sender": "carol", "type": "m.room.message", "origin_server_ts": 1, "content": {}},
        odd_content,
    ]});
    let r = daemon.push(&unique("t"), &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(event_ids(daemon, &room).await, [good1, good2]);

    let not_json = http()
        .put(format!("{}/_matrix/app/v1/transactions/9", daemon.base_url))
        .bearer_auth(&daemon.hs_token)
        .body("{not json")
        .send()
        .await
        .expect("put");
    assert_eq!(not_json.status(), 400);
    let long_id = "7".repeat(256);
    let too_long = daemon.push(&long_id, &json!({"events": []})).await;
    assert_eq!(too_long.status(), 400);
    assert_eq!(
        too_long.json::<Value>().await.expect("json")["errcode"],
        "M_INVALID_PARAM"
    );
    assert_eq!(
        not_json.json::<Value>().await.expect("json")["errcode"],
        "M_NOT_JSON"
    );
}

/// SIGTERM while a transaction is being received: the daemon answers it, records it,
/// and only then exits (cleanly).
async fn sigterm_lets_the_transaction_in_flight_finish(backends: Backends) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let slot = Slot::lease().await;
    let provisioned = Provisioned::new(backends).await;
    let mut daemon = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatsender"))
        .args(["serve", "-c"])
        .arg(&slot.config_path)
        .envs(provisioned.env_overrides())
        .kill_on_drop(true)
        .spawn()
        .expect("start chatsender serve");
    let address = slot.settings.listen;
    wait_until(
        "the daemon process is ready",
        Duration::from_secs(30),
        || async {
            let r = http()
                .get(format!("http://{address}/ready"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;

    let room = format!("!{}:localhost", unique("r"));
    let event_id = format!("${}", unique("e"));
    let body = json!({"events": [message(&room, &event_id, "in flight")]}).to_string();
    let mut conn = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let head = format!(
        "PUT /_matrix/app/v1/transactions/{} HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        unique("t"),
        slot.settings.appservice.hs_token.expose_secret(),
        body.len()
    );
    conn.write_all(head.as_bytes()).await.expect("send head");
    // "100 Continue" means the handler is waiting for the body: the request is in flight.
    let mut buf = vec![0u8; 1024];
    let n = conn.read(&mut buf).await.expect("read 100");
    let interim = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");

    let pid = daemon.id().expect("pid").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    conn.write_all(body.as_bytes()).await.expect("send body");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.expect("read answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .expect("the daemon exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "clean exit, got {status}");

    let settings = chatsender::config::DatabaseSettings {
        url: provisioned.database.clone(),
        max_connections: Some(1),
        retention_days: 7,
        timeout_ms: 1000,
    };
    let stores = chatsender::store::connect(&settings).await.expect("store");
    let recorded = stores
        .events
        .room_events(&RoomId::parse(&room).expect("room"))
        .await
        .expect("events");
    assert_eq!(
        recorded.len(),
        1,
        "the transaction answered during shutdown was recorded"
    );
    assert_eq!(recorded[0].event_id.as_str(), event_id);
}
