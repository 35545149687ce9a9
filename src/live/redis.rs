//! Live streams in Redis: one capped stream per user (replay, also across daemon
//! restarts) and one pub/sub channel that tells every daemon what was appended.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{LiveBus, LiveEvent, RETAINED_PER_USER, Replay};

/// Redis streams and pub/sub.
pub struct RedisBus {
    conn: ConnectionManager,
    prefix: String,
    sender: broadcast::Sender<LiveEvent>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    user_id: String,
    id: String,
    kind: String,
    payload: String,
}

impl RedisBus {
    /// Connects, and relays the channel to local subscribers until `stop`.
    pub async fn connect(
        url: &SecretString,
        prefix: &str,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let client = redis::Client::open(url.expose_secret())?;
        let conn = ConnectionManager::new(client.clone()).await?;
        let sender = broadcast::channel(4096).0;
        let bus = Self {
            conn,
            prefix: prefix.to_owned(),
            sender: sender.clone(),
        };
        let channel = bus.channel();
        // Subscribe before returning, so nothing published after start-up is missed.
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        tokio::spawn(relay(client, channel, pubsub, sender, stop));
        Ok(bus)
    }

    fn channel(&self) -> String {
        format!("{}live", self.prefix)
    }

    fn stream(&self, user_id: &str) -> String {
        format!("{}stream:{user_id}", self.prefix)
    }
}

/// Forwards the channel to local subscribers, resubscribing after a lost connection
/// (clients then catch up by replay).
async fn relay(
    client: redis::Client,
    channel: String,
    mut pubsub: redis::aio::PubSub,
    sender: broadcast::Sender<LiveEvent>,
    stop: CancellationToken,
) {
    loop {
        {
            let mut messages = pubsub.on_message();
            loop {
                let message = tokio::select! {
                    () = stop.cancelled() => return,
                    m = messages.next() => m,
                };
                let Some(message) = message else { break };
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                if let Ok(w) = serde_json::from_str::<Wire>(&payload) {
                    let _ = sender.send(LiveEvent {
                        user_id: w.user_id,
                        id: w.id,
                        kind: w.kind,
                        payload: w.payload,
                    });
                }
            }
        }
        tracing::warn!("lost the Redis live channel; resubscribing");
        let _ = sender.send(super::resync());
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            match client.get_async_pubsub().await {
                Ok(mut fresh) => {
                    if fresh.subscribe(&channel).await.is_ok() {
                        pubsub = fresh;
                        break;
                    }
                }
                Err(error) => tracing::warn!(%error, "Redis live channel unavailable"),
            }
        }
    }
}

/// Appends once per (user, event) and publishes, atomically: a crash cannot leave an
/// event marked delivered but missing, and publish order is stream order.
/// KEYS: delivered marker, stream. ARGV: cap, kind, payload, channel, user id.
const DELIVER: &str = r"
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', 86400) then return false end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'kind', ARGV[2], 'payload', ARGV[3])
redis.call('PUBLISH', ARGV[4], cjson.encode({user_id = ARGV[5], id = id, kind = ARGV[2], payload = ARGV[3]}))
return id
";

/// A stream id `ms-seq` as a comparable pair.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(ms) || !digits(seq) {
        return None;
    }
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

#[async_trait]
impl LiveBus for RedisBus {
    async fn deliver(
        &self,
        user_id: &str,
        dedup_key: &str,
        kind: &str,
        payload: &str,
    ) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _: Option<String> = redis::Script::new(DELIVER)
            .key(format!("{}delivered:{user_id}:{dedup_key}", self.prefix))
            .key(self.stream(user_id))
            .arg(RETAINED_PER_USER)
            .arg(kind)
            .arg(payload)
            .arg(self.channel())
            .arg(user_id)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn replay(&self, user_id: &str, cursor: &str) -> anyhow::Result<Replay> {
        let Some(after) = parse_id(cursor) else {
            return Ok(Replay::Reset);
        };
        let mut conn = self.conn.clone();
        let stream = self.stream(user_id);
        let first: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(&stream)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        // Trimming removes the oldest entries, so while the cursor's own entry is
        // kept nothing after it is missing.
        match first.first().and_then(|(id, _)| parse_id(id)) {
            Some(oldest) if after >= oldest => {}
            _ => return Ok(Replay::Reset),
        }
        let range: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(&stream)
            .arg(format!("({cursor}"))
            .arg("+")
            .query_async(&mut conn)
            .await?;
        let events = range
            .into_iter()
            .map(|(id, fields)| {
                let field = |name: &str| {
                    fields
                        .chunks(2)
                        .find(|kv| kv[0] == name)
                        .and_then(|kv| kv.get(1))
                        .cloned()
                        .unwrap_or_default()
                };
                LiveEvent {
                    user_id: user_id.to_owned(),
                    kind: field("kind"),
                    payload: field("payload"),
                    id,
                }
            })
            .collect();
        Ok(Replay::Events(events))
    }

    fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.sender.subscribe()
    }

    fn is_after(&self, a: &str, b: &str) -> bool {
        matches!((parse_id(a), parse_id(b)), (Some(a), Some(b)) if a > b)
    }

    async fn prune(&self) -> anyhow::Result<()> {
        // Streams are capped as they grow (XADD MAXLEN).
        Ok(())
    }

    async fn latest_id(&self, user_id: &str) -> anyhow::Result<Option<String>> {
        let mut conn = self.conn.clone();
        let last: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
            .arg(self.stream(user_id))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        Ok(last.into_iter().next().map(|(id, _)| id))
    }
}
