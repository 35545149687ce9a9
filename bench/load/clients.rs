//! The bench's clients: Synapse's push load, live-stream fan-out, logins, latency.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

pub use latency::LatencySetup;

mod latency;

/// A message body of about 250 characters: events of ~310 bytes, as in the issue.
const BODY: &str = "The quick brown fox jumps over the lazy dog while the bench counts every \
event it pushes; this sentence is long enough to make a realistic chat message of a couple \
of hundred characters, which is what people send to each other all day long, more or less.";

fn http() -> reqwest::Client {
    let _already = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()
        .expect("an HTTP client")
}

/// The CPU seconds a process has used (user + system), from /proc.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// A process's resident memory in MB: now, and at its peak.
pub fn rss_mb(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Pushes one transaction; fails unless it gets a 200.
async fn push(
    client: &reqwest::Client,
    url: &str,
    hs_token: &str,
    txn_id: &str,
    body: String,
) -> anyhow::Result<()> {
    let response = client
        .put(format!("{url}/_matrix/app/v1/transactions/{txn_id}"))
        .bearer_auth(hs_token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "transaction {txn_id}: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

fn member_event(room: &str, user: &str, tag: &str, n: usize) -> Value {
    json!({
        "type": "m.room.member", "room_id": room, "sender": user, "state_key": user,
        "event_id": format!("$m{tag}-{n}"), "origin_server_ts": 1_700_000_000_000u64,
        "content": {"membership": "join"}, "unsigned": {"age": 1},
    })
}

/// Joins `users` to `room` by pushed membership events, `per_txn` to a transaction.
async fn join_all(
    client: &reqwest::Client,
    url: &str,
    hs_token: &str,
    room: &str,
    users: &[String],
    tag: &str,
) -> anyhow::Result<()> {
    for (chunk_no, chunk) in users.chunks(500).enumerate() {
        let events: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, user)| member_event(room, user, tag, chunk_no * 500 + i))
            .collect();
        let body = json!({"events": events}).to_string();
        push(
            client,
            url,
            hs_token,
            &format!("join-{tag}-{chunk_no}"),
            body,
        )
        .await?;
    }
    Ok(())
}

pub fn tag() -> String {
    format!("{:08x}", rand::random::<u32>())
}

pub struct IngestLoad {
    pub url: String,
    pub hs_token: String,
    pub seconds: f64,
    pub concurrency: usize,
    pub events_per_txn: usize,
    pub rooms: usize,
    pub members: usize,
    pub user_prefix: String,
    pub server_name: String,
    pub pid: Option<u32>,
    /// Wait, before stopping the clock, until the daemon's feeder has fed everything
    /// (its metrics: events fed = events processed).
    pub drain: bool,
    pub others: Vec<u32>,
}

/// A counter's value in a Prometheus text exposition.
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the daemon has fed every event it recorded.
async fn drain(client: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let metrics = client
            .get(format!("{url}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let processed = counter(&metrics, "chatsender_events_processed_total");
        let fed = counter(&metrics, "chatsender_events_fed_total");
        if fed >= processed {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the daemon fed {fed} of {processed} events in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A pushed transaction's body: `events` messages of ~310 bytes spread over `rooms`
/// rooms, their ids unique per (tag, txn).
pub fn transaction_body(events: usize, rooms: usize, server: &str, tag: &str, txn: u64) -> String {
    let mut body = String::with_capacity(events * 330 + 16);
    body.push_str("{\"events\":[");
    for i in 0..events {
        if i > 0 {
            body.push(',');
        }
        let room = (txn as usize + i) % rooms;
        body.push_str(&format!(
            "{{\"type\":\"m.room.message\",\"room_id\":\"!bench{room}:{server}\",\
             \"sender\":\"@someone{room}:{server}\",\"event_id\":\"$e{tag}-{txn}-{i}\",\
             \"origin_server_ts\":1700000000000,\"content\":{{\"msgtype\":\"m.text\",\
             \"body\":\"{BODY}\"}},\"unsigned\":{{\"age\":1}}}}"
        ));
    }
    body.push_str("]}");
    body
}

impl IngestLoad {
    fn body(&self, tag: &str, txn: u64) -> String {
        transaction_body(self.events_per_txn, self.rooms, &self.server_name, tag, txn)
    }

    pub async fn run(self) -> anyhow::Result<Value> {
        let client = http();
        let tag = tag();
        if self.members > 0 {
            for room in 0..self.rooms {
                let users: Vec<String> = (0..self.members)
                    .map(|m| format!("@{}bench{m}:{}", self.user_prefix, self.server_name))
                    .collect();
                let room_id = format!("!bench{room}:{}", self.server_name);
                join_all(
                    &client,
                    &self.url,
                    &self.hs_token,
                    &room_id,
                    &users,
                    &format!("{tag}r{room}"),
                )
                .await?;
            }
        }
        let this = Arc::new(self);
        let txns = Arc::new(AtomicU64::new(0));
        let counting = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let warmup = Duration::from_secs(1);
        let deadline = Instant::now() + warmup + Duration::from_secs_f64(this.seconds);
        let mut tasks = Vec::new();
        for _ in 0..this.concurrency {
            let (this, client, tag, txns, done, counting) = (
                this.clone(),
                client.clone(),
                tag.clone(),
                txns.clone(),
                done.clone(),
                counting.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let n = txns.fetch_add(1, Ordering::Relaxed);
                    let body = this.body(&tag, n);
                    push(
                        &client,
                        &this.url,
                        &this.hs_token,
                        &format!("{tag}-{n}"),
                        body,
                    )
                    .await?;
                    if counting.load(Ordering::Relaxed) {
                        done.fetch_add(this.events_per_txn as u64, Ordering::Relaxed);
                    }
                }
                anyhow::Ok(())
            }));
        }
        tokio::time::sleep(warmup).await;
        let cpu_before = this.pid.and_then(cpu_seconds);
        let others_before: Vec<Option<f64>> = this.others.iter().map(|&p| cpu_seconds(p)).collect();
        let start = Instant::now();
        counting.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await??;
        }
        let answered = start.elapsed().as_secs_f64();
        if this.drain {
            drain(&client, &this.url).await?;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let events = done.load(Ordering::Relaxed);
        let cpu = match (cpu_before, this.pid.and_then(cpu_seconds)) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        Ok(json!({
            "events": events,
            "seconds": elapsed,
            // Answered: 200s per second; fed: until the daemon had fed them all too.
            "events_per_sec": events as f64 / elapsed,
            "answered_per_sec": events as f64 / answered,
            "drain_seconds": elapsed - answered,
            "cpu_us_per_event": cpu.map(|c| c * 1e6 / events.max(1) as f64),
            "cpu_share": cpu.map(|c| c / elapsed),
            "others_cpu_us_per_event": this.others.iter().zip(others_before).map(|(&pid, before)| {
                let used = cpu_seconds(pid).zip(before).map(|(after, before)| after - before);
                used.map(|c| c * 1e6 / events.max(1) as f64)
            }).collect::<Vec<_>>(),
        }))
    }
}

#[derive(Deserialize)]
struct KeyFile {
    public_key: String,
    private_key_file: String,
    user_id: String,
}

struct Key {
    public_key: String,
    signing: SigningKey,
    user_id: String,
}

fn read_keys(path: &Path) -> anyhow::Result<Vec<Key>> {
    let files: Vec<KeyFile> = serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    files
        .into_iter()
        .map(|k| {
            let pem = std::fs::read_to_string(&k.private_key_file)?;
            let signing = SigningKey::from_pkcs8_pem(&pem)
                .map_err(|e| anyhow::anyhow!("{}: {e}", k.private_key_file))?;
            Ok(Key {
                public_key: k.public_key,
                signing,
                user_id: k.user_id,
            })
        })
        .collect()
}

/// Challenge and signed login; the session's token.
async fn log_in(client: &reqwest::Client, url: &str, key: &Key) -> anyhow::Result<String> {
    let challenge: Value = client
        .post(format!("{url}/api/v1/auth/challenge"))
        .json(&json!({"public_key": key.public_key}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let message = challenge["message"]
        .as_str()
        .context("a challenge message")?;
    let signature = STANDARD.encode(key.signing.sign(message.as_bytes()).to_bytes());
    let session: Value = client
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({"challenge_id": challenge["challenge_id"], "signature": signature}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(session["access_token"]
        .as_str()
        .context("an access token")?
        .to_owned())
}

/// Logs every key in, `parallel` at a time.
async fn log_in_all(
    client: &reqwest::Client,
    url: &str,
    keys: &[Key],
    parallel: usize,
) -> anyhow::Result<Vec<String>> {
    futures_util::stream::iter(keys.iter().map(|key| log_in(client, url, key)))
        .buffered(parallel)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

pub async fn login(
    url: &str,
    keys: &Path,
    clients: usize,
    seconds: f64,
    pid: Option<u32>,
) -> anyhow::Result<Value> {
    let keys = Arc::new(read_keys(keys)?);
    let client = http();
    // First logins register the puppets: not what is measured.
    log_in_all(&client, url, &keys, 16).await?;
    let cpu_before = pid.and_then(cpu_seconds);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (keys, client, count, url) =
            (keys.clone(), client.clone(), count.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while Instant::now() < deadline {
                log_in(&client, &url, &keys[i % keys.len()]).await?;
                count.fetch_add(1, Ordering::Relaxed);
                i += clients;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let logins = count.load(Ordering::Relaxed);
    let cpu = match (cpu_before, pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Ok(json!({
        "logins": logins,
        "logins_per_sec": logins as f64 / elapsed,
        "cpu_ms_per_login": cpu.map(|c| c * 1e3 / logins.max(1) as f64),
    }))
}

/// Reads a live stream until `stop`, noting when each `message` event's id arrives.
async fn watch(
    response: reqwest::Response,
    arrivals: Arc<std::sync::Mutex<Vec<(String, Instant)>>>,
) -> anyhow::Result<()> {
    let mut stream = response.bytes_stream();
    let mut pending = String::new();
    while let Some(chunk) = stream.next().await {
        pending.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = pending.find("\n\n") {
            let block: String = pending.drain(..end + 2).collect();
            if block.lines().any(|l| l == "event: message")
                && let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: "))
            {
                let message: Value = serde_json::from_str(data)?;
                let id = message["event_id"].as_str().unwrap_or_default().to_owned();
                arrivals
                    .lock()
                    .expect("arrivals")
                    .push((id, Instant::now()));
            }
        }
    }
    Ok(())
}

pub async fn fanout(
    url: &str,
    hs_token: &str,
    keys: &Path,
    rounds: usize,
    server_name: &str,
    pid: Option<u32>,
) -> anyhow::Result<Value> {
    let keys = read_keys(keys)?;
    let k = keys.len();
    let client = http();
    let started = Instant::now();
    let tokens = log_in_all(&client, url, &keys, 32).await?;
    eprintln!(
        "fanout K={k}: logged in in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let tag = tag();
    let room = format!("!fanout{tag}:{server_name}");
    let users: Vec<String> = keys.iter().map(|k| k.user_id.clone()).collect();
    let started = Instant::now();
    join_all(&client, url, hs_token, &room, &users, &tag).await?;
    eprintln!(
        "fanout K={k}: joined in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let opened = futures_util::stream::iter(tokens.iter().map(|token| {
        client
            .get(format!("{url}/api/v1/events"))
            .bearer_auth(token)
            .send()
    }))
    .buffer_unordered(256)
    .collect::<Vec<_>>()
    .await;
    let mut watchers = Vec::new();
    for response in opened {
        let response = response?.error_for_status()?;
        watchers.push(tokio::spawn(watch(response, arrivals.clone())));
    }
    eprintln!(
        "fanout K={k}: {} streams open in {:.1} s",
        watchers.len(),
        started.elapsed().as_secs_f64()
    );
    // The joins are fed in the background: the room is full once the last user's own
    // join is in their stream; a first message shows that for everyone.
    let mut worst = Vec::new();
    for round in 0..=rounds {
        let event_id = format!("$f{tag}-{round}");
        let event = json!({
            "type": "m.room.message", "room_id": room, "sender": users[0], "event_id": event_id,
            "origin_server_ts": 1_700_000_000_000u64, "content": {"msgtype": "m.text", "body": BODY},
        });
        let sent = Instant::now();
        push(
            &client,
            url,
            hs_token,
            &format!("msg-{tag}-{round}"),
            json!({"events": [event]}).to_string(),
        )
        .await?;
        let limit = Duration::from_secs(if round == 0 { 600 } else { 120 });
        loop {
            let got: Vec<Instant> = arrivals
                .lock()
                .expect("arrivals")
                .iter()
                .filter(|(id, _)| *id == event_id)
                .map(|(_, at)| *at)
                .collect();
            if got.len() >= k {
                let mut delays: Vec<f64> = got
                    .iter()
                    .map(|at| at.duration_since(sent).as_secs_f64() * 1e3)
                    .collect();
                delays.sort_by(f64::total_cmp);
                if round > 0 {
                    worst.push((
                        delays[delays.len() / 2],
                        delays[delays.len() * 99 / 100],
                        delays[delays.len() - 1],
                    ));
                }
                eprintln!(
                    "fanout K={k}: round {round}: all {k} in {:.1} ms",
                    delays[delays.len() - 1]
                );
                break;
            }
            if sent.elapsed() > limit {
                bail!(
                    "fanout K={k}: only {} of {k} streams got {event_id} within {limit:?}",
                    got.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let busy = pid.and_then(rss_mb);
    // What K open streams cost while nothing happens: the daemon's CPU over a quiet
    // window, as a share of one core, and its memory at the end of it.
    let idle = Duration::from_secs(5);
    let before = pid.and_then(cpu_seconds);
    tokio::time::sleep(idle).await;
    let idle_cpu = pid
        .and_then(cpu_seconds)
        .zip(before)
        .map(|(after, before)| (after - before) / idle.as_secs_f64() * 100.0);
    let memory = pid.and_then(rss_mb);
    if let (Some(share), Some(at_rest), Some(busy)) = (idle_cpu, memory, busy) {
        eprintln!(
            "fanout K={k}: {k} idle streams: {share:.1}% of a core; RSS {:.0} MB \
             (right after the last message: {:.0} MB)",
            at_rest.0, busy.0
        );
    }
    for watcher in watchers {
        watcher.abort();
    }
    let max = |f: fn(&(f64, f64, f64)) -> f64| worst.iter().map(f).fold(0.0, f64::max);
    Ok(json!({
        "k": k,
        "p50_ms": max(|w| w.0),
        "p99_ms": max(|w| w.1),
        "all_ms": max(|w| w.2),
        "rss_mb": memory.map(|m| m.0),
        "rss_after_message_mb": busy.map(|m| m.0),
        "peak_rss_mb": memory.map(|m| m.1),
        "idle_cpu_pct": idle_cpu,
    }))
}
