//! Added latency through a real Synapse: a Matrix user of a bare appservice sends to a
//! room with a ChatSender user; Synapse pushes each message to the bare listener and
//! to the daemon; the figure is how much later the ChatSender user's live stream has
//! it than the bare listener.

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

        let client = http();
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
            }
        }
        watcher.abort();
        push.sort_by(f64::total_cmp);
        added.sort_by(f64::total_cmp);
        Ok(json!({
            "messages": added.len(),
            "push_p50_ms": percentile(&push, 50),
            "added_p50_ms": percentile(&added, 50),
            "added_p99_ms": percentile(&added, 99),
        }))
    }
}
