//! Added latency through a real Synapse: a Matrix user of a bare appservice sends to a
//! room with a ChatSender user; Synapse pushes each message to the bare listener and
//! to the daemon; the figure is how much later the ChatSender user's live stream has
//! it than the bare listener. Synapse's push to the daemon goes through a tap that
//! notes when it arrives and forwards it: the time from there to the stream is the
//! daemon's own (the tap's forwarding hop included), apart from when Synapse sends to
//! each of the two.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::routing::{post, put};
use serde_json::{Value, json};

use super::{http, log_in, read_keys, watch};

pub struct LatencySetup {
    pub url: String,
    /// Where Synapse pushes to the daemon (the tap), and the daemon's own address.
    pub tap: String,
    pub daemon: String,
    pub homeserver: String,
    pub listen: String,
    pub bare_as_token: String,
    pub bare_hs_token: String,
    pub sender: String,
    pub keys: PathBuf,
    pub messages: usize,
}

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn bare_transaction(
    State((arrivals, token)): State<(Arrivals, Arc<str>)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    let at = Instant::now();
    let expected = format!("Bearer {token}");
    if headers
        .get("authorization")
        .is_none_or(|v| v.as_bytes() != expected.as_bytes())
    {
        let refusal = json!({"errcode": "M_FORBIDDEN"});
        return (axum::http::StatusCode::FORBIDDEN, axum::Json(refusal));
    }
    if let Ok(txn) = serde_json::from_slice::<Value>(&body) {
        let mut arrivals = arrivals.lock().expect("arrivals");
        for event in txn["events"].as_array().into_iter().flatten() {
            if let Some(id) = event["event_id"].as_str() {
                arrivals.insert(id.to_owned(), at);
            }
        }
    }
    (axum::http::StatusCode::OK, axum::Json(json!({})))
}

/// Notes when each pushed event reaches the tap, then forwards the request (any
/// path: transactions, pings, queries) to the daemon and its answer back.
async fn tap(
    State((arrivals, client, daemon)): State<(Arrivals, reqwest::Client, Arc<str>)>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    };
    if parts
        .uri
        .path()
        .starts_with("/_matrix/app/v1/transactions/")
        && let Ok(txn) = serde_json::from_slice::<Value>(&body)
    {
        let mut arrivals = arrivals.lock().expect("arrivals");
        for event in txn["events"].as_array().into_iter().flatten() {
            if let Some(id) = event["event_id"].as_str() {
                arrivals.insert(id.to_owned(), at);
            }
        }
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forward = client.request(parts.method, format!("{daemon}{path}"));
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST {
            forward = forward.header(name, value);
        }
    }
    match forward.body(body).send().await {
        Ok(answer) => {
            let status = answer.status();
            let headers = answer.headers().clone();
            let body = answer.bytes().await.unwrap_or_default();
            let mut response = (status, body).into_response();
            if let Some(kind) = headers.get(axum::http::header::CONTENT_TYPE) {
                response
                    .headers_mut()
                    .insert(axum::http::header::CONTENT_TYPE, kind.clone());
            }
            response
        }
        Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
    }
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

impl LatencySetup {
    async fn matrix(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let response = client
            .request(method, format!("{}{path}", self.homeserver))
            .query(&[("user_id", &self.sender)])
            .bearer_auth(&self.bare_as_token)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or_default();
        if !status.is_success() && answer["errcode"] != "M_USER_IN_USE" {
            bail!("{path}: {status} {answer}");
        }
        Ok(answer)
    }

    pub async fn run(self) -> anyhow::Result<Value> {
        let bare: Arrivals = Arc::default();
        let app = Router::new()
            .route(
                "/_matrix/app/v1/transactions/{txn_id}",
                put(bare_transaction),
            )
            .route(
                "/_matrix/app/v1/ping",
                post(|| async { axum::Json(json!({})) }),
            )
            .with_state((bare.clone(), Arc::from(self.bare_hs_token.as_str())));
        let listener = tokio::net::TcpListener::bind(&self.listen).await?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        let tapped: Arrivals = Arc::default();
        let tap_app = Router::new().fallback(tap).with_state((
            tapped.clone(),
            http(),
            Arc::from(self.daemon.as_str()),
        ));
        let tap_listener = tokio::net::TcpListener::bind(&self.tap).await?;
        tokio::spawn(async move { axum::serve(tap_listener, tap_app).await });

        let client = http();
        // The daemon is ready once its ping of Synapse came back through the tap.
        let deadline = Instant::now() + Duration::from_secs(60);
        while client
            .get(format!("{}/ready", self.url))
            .send()
            .await
            .map_or(true, |r| r.status() != 200)
        {
            if Instant::now() > deadline {
                bail!("the daemon was not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let localpart = self
            .sender
            .trim_start_matches('@')
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        self.matrix(&client, reqwest::Method::POST, "/_matrix/client/v3/register",
            json!({"type": "m.login.application_service", "username": localpart, "inhibit_login": true})).await?;
        let key = read_keys(&self.keys)?
            .into_iter()
            .next()
            .context("one key")?;
        let token = log_in(&client, &self.url, &key).await?;
        let room: Value = client
            .post(format!("{}/api/v1/rooms", self.url))
            .bearer_auth(&token)
            .json(&json!({"name": "latency", "invite": [self.sender]}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let room_id = room["room_id"].as_str().context("a room id")?.to_owned();
        let room_path =
            url::form_urlencoded::byte_serialize(room_id.as_bytes()).collect::<String>();
        self.matrix(
            &client,
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/join/{room_path}"),
            json!({}),
        )
        .await?;

        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let stream = client
            .get(format!("{}/api/v1/events", self.url))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?;
        let watcher = tokio::spawn(watch(stream, arrivals.clone()));

        let mut push = Vec::new();
        let mut added = Vec::new();
        let mut own = Vec::new();
        // The first messages warm both paths up and are not counted.
        for n in 0..self.messages + 5 {
            let sent = Instant::now();
            let answer = self
                .matrix(
                    &client,
                    reqwest::Method::PUT,
                    &format!(
                        "/_matrix/client/v3/rooms/{room_path}/send/m.room.message/lat{n}-{}",
                        rand::random::<u32>()
                    ),
                    json!({"msgtype": "m.text", "body": format!("latency {n}")}),
                )
                .await?;
            let event_id = answer["event_id"]
                .as_str()
                .context("an event id")?
                .to_owned();
            let deadline = sent + Duration::from_secs(30);
            let (at_bare, at_stream) = loop {
                let at_bare = bare.lock().expect("arrivals").get(&event_id).copied();
                let at_stream = arrivals
                    .lock()
                    .expect("arrivals")
                    .iter()
                    .find(|(id, _)| *id == event_id)
                    .map(|(_, at)| *at);
                if let (Some(b), Some(s)) = (at_bare, at_stream) {
                    break (b, s);
                }
                if Instant::now() > deadline {
                    bail!("{event_id}: bare listener {at_bare:?}, stream {at_stream:?} after 30 s");
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            };
            if n >= 5 {
                push.push(at_bare.duration_since(sent).as_secs_f64() * 1e3);
                added.push((at_stream.saturating_duration_since(at_bare)).as_secs_f64() * 1e3);
                let at_tap = tapped.lock().expect("arrivals").get(&event_id).copied();
                let at_tap = at_tap.context("the push went through the tap")?;
                own.push((at_stream.saturating_duration_since(at_tap)).as_secs_f64() * 1e3);
            }
        }
        watcher.abort();
        push.sort_by(f64::total_cmp);
        added.sort_by(f64::total_cmp);
        own.sort_by(f64::total_cmp);
        Ok(json!({
            "messages": added.len(),
            "push_p50_ms": percentile(&push, 50),
            "added_p50_ms": percentile(&added, 50),
            "added_p99_ms": percentile(&added, 99),
            "own_p50_ms": percentile(&own, 50),
            "own_p99_ms": percentile(&own, 99),
        }))
    }
}
