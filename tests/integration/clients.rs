//! Clients of the daemon and the homeserver that tests act through: a logged-in
//! ChatSender user on the JSON API, its live stream, and an ordinary Matrix user.

use std::time::{Duration, Instant};

use chatsender::keys::encode_base64;
use ed25519_dalek::{Signer as _, SigningKey};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{env, http, unique, urlencode};

/// The base64 public key of `key`.
pub fn public_b64(key: &SigningKey) -> String {
    encode_base64(key.verifying_key().as_bytes())
}

/// The base64 signature of a challenge's message.
pub fn sign_challenge(key: &SigningKey, challenge: &Value) -> String {
    let message = challenge["message"].as_str().expect("a challenge message");
    encode_base64(&key.sign(message.as_bytes()).to_bytes())
}

/// A logged-in ChatSender user on the JSON API.
pub struct User {
    pub base: String,
    pub token: String,
    pub user_id: String,
}

impl User {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
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

    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method, path, body).await;
        assert!(status.is_success(), "{path}: {status} {value}");
        value
    }

    pub async fn events(&self) -> EventStream {
        EventStream::connect(&self.base, &self.token, None).await
    }

    pub async fn send(&self, room: &str, body: &str) -> String {
        let path = format!("/rooms/{}/send/{}", urlencode(room), unique("t"));
        self.ok(Method::PUT, &path, Some(json!({"body": body})))
            .await["event_id"]
            .as_str()
            .expect("event_id")
            .to_owned()
    }

    pub async fn messages(&self, room: &str, query: &str) -> (StatusCode, Value) {
        self.call(
            Method::GET,
            &format!("/rooms/{}/messages{query}", urlencode(room)),
            None,
        )
        .await
    }
}

/// `/rooms/{room}/{action}`.
pub fn room_path(room: &str, action: &str) -> String {
    format!("/rooms/{}/{action}", urlencode(room))
}

/// Alice opens a room and invites Bob, who sees the invite and joins.
pub async fn room_of_two(alice: &User, bob: &User, bob_events: &mut EventStream) -> String {
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

// --- Ordinary Matrix users ---------------------------------------------------------

/// An ordinary (password) user on the shared Synapse, driven over the Client-Server API.
pub struct MatrixUser {
    pub user_id: String,
    pub token: String,
    base: String,
    since: Option<String>,
}

impl MatrixUser {
    /// Registers a new user with a password.
    pub async fn register(name_prefix: &str) -> MatrixUser {
        let base = env().synapse_url.clone();
        let username = unique(name_prefix);
        let body = json!({
            "username": username, "password": "correct horse battery staple",
            "auth": {"type": "m.login.dummy"}, "inhibit_login": false,
        });
        let r: Value = http()
            .post(format!("{base}/_matrix/client/v3/register"))
            .json(&body)
            .send()
            .await
            .expect("register")
            .json()
            .await
            .expect("register answer");
        let token = r["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("registration failed: {r}"));
        MatrixUser {
            user_id: r["user_id"].as_str().expect("user_id").to_owned(),
            token: token.to_owned(),
            base,
            since: None,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = http()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("client request");
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path} answered {status}: {value}");
        value
    }

    /// Joins a room (after an invite).
    pub async fn join(&self, room_id: &str) {
        let path = format!("/_matrix/client/v3/join/{}", urlencode(room_id));
        self.call(Method::POST, &path, Some(json!({}))).await;
    }

    /// Sends a text message; returns its event id.
    pub async fn send_text(&self, room_id: &str, body: &str) -> String {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
            urlencode(room_id),
            unique("t")
        );
        let r = self
            .call(
                Method::PUT,
                &path,
                Some(json!({"msgtype": "m.text", "body": body})),
            )
            .await;
        r["event_id"].as_str().expect("event_id").to_owned()
    }

    /// Syncs until `find` picks something out of a sync answer.
    pub async fn sync_until<T>(
        &mut self,
        what: &str,
        mut find: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut path = "/_matrix/client/v3/sync?timeout=1000".to_owned();
            if let Some(since) = &self.since {
                path.push_str(&format!("&since={since}"));
            }
            let r = self.call(Method::GET, &path, None).await;
            self.since = r["next_batch"].as_str().map(str::to_owned);
            if let Some(found) = find(&r) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{} never saw {what} in /sync",
                self.user_id
            );
        }
    }
}

// --- Server-Sent Events ------------------------------------------------------------

/// One SSE event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// A live `GET /api/v1/events` connection.
pub struct EventStream {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
    /// The id of the last event read, for reconnecting.
    pub last_id: Option<String>,
    /// Comment lines read (`: keepalive`).
    pub comments: Vec<String>,
}

impl EventStream {
    /// Connects as `token`, resuming after `last_event_id` if given.
    pub async fn connect(base_url: &str, token: &str, last_event_id: Option<&str>) -> EventStream {
        let mut request = http()
            .get(format!("{base_url}/api/v1/events"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .expect("events");
        assert_eq!(response.status(), 200, "GET /api/v1/events");
        EventStream {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
            last_id: last_event_id.map(str::to_owned),
            comments: Vec::new(),
        }
    }

    /// Whether the server ends the stream within `timeout` (what comes before the end
    /// is read and dropped).
    pub async fn ends_within(&mut self, timeout: Duration) -> bool {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The next event, or `None` if none comes within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, "message".to_owned(), String::new());
                for line in block.lines() {
                    if let Some(comment) = line.strip_prefix(':') {
                        self.comments.push(comment.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim_start().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim_start().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() && id.is_none() {
                    continue; // A comment (keepalive).
                }
                if id.is_some() {
                    self.last_id.clone_from(&id);
                }
                return Some(SseEvent {
                    id,
                    event,
                    data: serde_json::from_str(&data).unwrap_or(Value::Null),
                });
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??;
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk.ok()?).replace("\r\n", "\n"));
        }
    }

    /// Reads events until one matches, failing after 30 s; returns it and what came before.
    pub async fn wait_for(
        &mut self,
        what: &str,
        mut matches: impl FnMut(&SseEvent) -> bool,
    ) -> (SseEvent, Vec<SseEvent>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next(left).await.unwrap_or_else(|| {
                panic!("no {what} on the event stream within 30 s; saw {before:?}")
            });
            if matches(&event) {
                return (event, before);
            }
            before.push(event);
        }
    }
}

// --- A Matrix client library, steered ----------------------------------------------

/// An ordinary Matrix user driven by matrix-nio (`tests/matrix-client/nio_user.py`),
/// one command at a time; the process ends when this is dropped.
pub struct NioUser {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    answers: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl NioUser {
    /// Starts matrix-nio as `user`.
    pub async fn start(user: &MatrixUser) -> NioUser {
        use std::process::Stdio;
        use tokio::io::AsyncBufReadExt;
        let env = env();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/matrix-client/nio_user.py");
        let mut child = tokio::process::Command::new(&env.nio_python)
            .arg(script)
            .args(["--homeserver", &env.synapse_url])
            .args(["--user-id", &user.user_id, "--token", &user.token])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the matrix-nio client");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        NioUser {
            _child: child,
            stdin,
            answers: tokio::io::BufReader::new(stdout).lines(),
        }
    }

    /// Runs one command (see the script) and returns its answer; a failure fails the test.
    pub async fn ask(&mut self, command: Value) -> Value {
        use tokio::io::AsyncWriteExt;
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("command to matrix-nio");
        let answer = self
            .answers
            .next_line()
            .await
            .expect("answer from matrix-nio")
            .unwrap_or_else(|| panic!("matrix-nio ended before answering {command}"));
        let answer: Value = serde_json::from_str(&answer).expect("a JSON answer");
        assert!(answer.get("error").is_none(), "matrix-nio: {answer}");
        answer
    }
}
