//! Storage outages: with MariaDB or Redis cut off, requests and `/ready` answer 503 at
//! once, naming the part that is down, and work again once it is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatsender::config::{DatabaseUrl, Settings};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::clients::{User, room_of_two};
use crate::harness::{Backends, EventStream, TestApp, http, unique, wait_until};
use crate::on_backend;
use crate::provision::{mysql_admin_url, redis_url};

on_backend!(
    a_database_outage: mariadb_embedded(Mariadb, Embedded),
    a_redis_outage: sqlite_redis(Sqlite, Redis),
    redis_restarted_empty: sqlite_redis(Sqlite, Redis),
);

async fn a_database_outage(backends: Backends) {
    outage(backends, Part::Database).await;
}

async fn a_redis_outage(backends: Backends) {
    outage(backends, Part::Redis).await;
}

/// Redis restarted without its data: sessions are gone (sign in again, as the README
/// says), and a reconnect with the last `Last-Event-ID` gets `reset`, then new events.
async fn redis_restarted_empty(backends: Backends) {
    let app = TestApp::spawn(backends).await;
    let person = |name: &str| {
        let (json, key) = app.generate(&["--name", &unique(name)]);
        let user_id = json["user_id"].as_str().expect("user").to_owned();
        (key, user_id)
    };
    let app = &app;
    let sign_in = |key, user_id: &str| {
        let user_id = user_id.to_owned();
        async move {
            User {
                base: app.daemon().base_url.clone(),
                token: app.login(key).await,
                user_id,
            }
        }
    };
    let ((alice_key, alice_id), (bob_key, bob_id)) = (person("alice"), person("bob"));
    let (alice, bob) = (
        sign_in(&alice_key, &alice_id).await,
        sign_in(&bob_key, &bob_id).await,
    );
    let mut bob_events = bob.events().await;
    let room = room_of_two(&alice, &bob, &mut bob_events).await;
    let a = alice.send(&room, "a").await;
    bob_events
        .wait_for("message a", |e| e.data["event_id"] == a.as_str())
        .await;
    let cursor = bob_events.last_id.clone().expect("a cursor");
    drop(bob_events);

    app.provisioned.wipe_redis().await.expect("wipe");
    let (status, _) = bob.call(Method::GET, "/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "sessions went with Redis");
    let (alice, bob) = (
        sign_in(&alice_key, &alice_id).await,
        sign_in(&bob_key, &bob_id).await,
    );
    let mut resumed = EventStream::connect(&bob.base, &bob.token, Some(&cursor)).await;
    let reset = resumed
        .next(Duration::from_secs(10))
        .await
        .expect("an event");
    assert_eq!(reset.event, "reset", "{reset:?}");
    let b = alice.send(&room, "b").await;
    resumed
        .wait_for("a new message after the reset", |e| {
            e.data["event_id"] == b.as_str()
        })
        .await;
}

/// A TCP proxy in front of a backend, which a test can cut (every connection
/// closed, new ones closed at once) and restore.
struct Proxy {
    address: String,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let (up, connections) = (
            Arc::new(AtomicBool::new(true)),
            Arc::new(Mutex::new(CancellationToken::new())),
        );
        let stop = CancellationToken::new();
        let (is_up, cut, stopped) = (up.clone(), connections.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stopped.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                if !is_up.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let (target, cut) = (target.clone(), cut.lock().expect("lock").clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = cut.cancelled() => {}
                    }
                });
            }
        });
        Proxy {
            address,
            up,
            connections,
            stop,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut connections = self.connections.lock().expect("lock");
        std::mem::replace(&mut *connections, CancellationToken::new()).cancel();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Part {
    Database,
    Redis,
}

/// `scheme://[user@]host:port/…` with host:port replaced by `address`.
fn through(url: &str, address: &str) -> String {
    let mut url = url::Url::parse(url).expect("url");
    let (host, port) = address.split_once(':').expect("host:port");
    url.set_host(Some(host)).expect("host");
    url.set_port(Some(port.parse().expect("port")))
        .expect("port");
    url.to_string()
}

fn target(url: &str) -> String {
    let url = url::Url::parse(url).expect("url");
    let port = url.port_or_known_default().unwrap_or(3306);
    format!("{}:{port}", url.host_str().expect("host"))
}

/// Signs in, cuts `part` off, and checks that a request and `/ready` answer 503 with
/// `Retry-After` naming it (the test client gives up after 10 s, where they used to
/// hang 8 to 30 s) and that an open stream ends, then that requests work again once
/// it is back.
async fn outage(backends: Backends, part: Part) {
    let server = match part {
        Part::Database => mysql_admin_url(),
        Part::Redis => redis_url(),
    };
    let proxy = Proxy::start(target(&server)).await;
    let address = proxy.address.clone();
    let app = TestApp::spawn_with(backends, move |s: &mut Settings| match part {
        Part::Database => {
            if let DatabaseUrl::Mysql(url) = &s.database.url {
                let proxied = through(url.expose_secret(), &address);
                s.database.url = DatabaseUrl::Mysql(SecretString::from(proxied));
            }
        }
        Part::Redis => {
            if let Some(url) = &s.redis.url {
                s.redis.url = Some(SecretString::from(through(url.expose_secret(), &address)));
            }
        }
    })
    .await;
    let alice = app.user("alice").await;
    let base = app.daemon().base_url.clone();
    let me = || async {
        http()
            .get(format!("{base}/api/v1/me"))
            .bearer_auth(&alice.token)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("an answer within 10 s")
    };
    assert_eq!(me().await.status(), StatusCode::OK);
    let mut stream = EventStream::connect(&base, &alice.token, None).await;

    proxy.cut();
    let (name, check) = match part {
        Part::Database => ("the database", "database"),
        Part::Redis => ("Redis", "cache"),
    };
    let down = me().await;
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(down.headers().contains_key("retry-after"), "{down:?}");
    let body: Value = down.json().await.expect("json");
    assert_eq!(body["errcode"], "M_UNKNOWN", "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("{name} is unavailable")),
        "{body}"
    );
    let ready = http()
        .get(format!("{base}/ready"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("/ready answers within 10 s");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["failing"], serde_json::json!([check]), "{ready}");
    assert!(
        stream.ends_within(Duration::from_secs(15)).await,
        "a stream whose session cannot be checked ends cleanly, so the client reconnects"
    );

    proxy.restore();
    wait_until("requests work again", Duration::from_secs(30), || async {
        (me().await.status() == StatusCode::OK).then_some(())
    })
    .await;
}
