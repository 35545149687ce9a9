//! Live streams in Redis: one capped stream per user (replay, also across daemon
//! restarts) and one pub/sub channel that tells every daemon what was appended.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use ruma::{OwnedUserId, UserId};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{
    Delivery, Hub, LiveError, LiveEvent, RETAINED_PER_USER, Replay, StreamKind, StreamLog,
};

/// Redis streams and pub/sub.
pub struct RedisLog {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
}

/// What the channel carries: one payload appended to the streams of `users`, as the
/// entries `ids` (one each, in the same order).
#[derive(Serialize, Deserialize)]
struct Wire {
    users: Vec<OwnedUserId>,
    ids: Vec<String>,
    kind: String,
    payload: String,
}

/// Users whose entries of one payload go in one script call.
const CALL: usize = 500;
/// Deliveries sent to Redis in one pipeline.
const PIPELINE: usize = 1000;

/// Appends one payload once per (user, dedup key, kind) to each user's stream and
/// publishes what it appended in one message, atomically: a crash cannot leave an
/// entry marked delivered but missing, and publish order is stream order. Who has the
/// payload is a set per dedup key and kind, kept a day after its last delivery.
/// KEYS: that set, then each user's stream. ARGV: cap, kind, payload, channel, then
/// the user ids.
static DELIVER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local users, ids = {}, {}
for i = 5, #ARGV do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    ids[#ids + 1] = redis.call('XADD', KEYS[i - 3], 'MAXLEN', '~', ARGV[1], '*', 'kind', ARGV[2], 'payload', ARGV[3])
    users[#users + 1] = ARGV[i]
  end
end
redis.call('EXPIRE', KEYS[1], 86400)
if #users > 0 then
  redis.call('PUBLISH', ARGV[4], cjson.encode({users = users, ids = ids, kind = ARGV[2], payload = ARGV[3]}))
end
return #users
",
    )
});

/// Deliveries that follow each other with one dedup key, kind and payload: what one
/// event brings its recipients.
fn same_payload(deliveries: &[Delivery]) -> impl Iterator<Item = &[Delivery]> {
    deliveries
        .chunk_by(|a, b| a.dedup_key == b.dedup_key && a.kind == b.kind && a.payload == b.payload)
}

/// A stream id `ms-seq` as a comparable pair.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(ms) || !digits(seq) {
        return None;
    }
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

impl RedisLog {
    /// Connects to Redis at `url`; every key starts with `prefix`.
    pub async fn connect(
        url: &SecretString,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Self, LiveError> {
        let client = redis::Client::open(url.expose_secret())?;
        let config = crate::cache::redis_manager_config(timeout);
        let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.to_owned(),
        })
    }

    /// Runs a pipeline of delivery calls, loading the script if Redis lost it.
    async fn send(&self, pipe: &redis::Pipeline) -> Result<(), LiveError> {
        let mut conn = self.conn.clone();
        match pipe.query_async::<()>(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                DELIVER.load_async(&mut conn).await?;
                pipe.query_async::<()>(&mut conn).await?;
            }
            done => done?,
        }
        Ok(())
    }

    fn channel(&self) -> String {
        format!("{}live", self.prefix)
    }

    fn stream(&self, user_id: &UserId) -> String {
        format!("{}stream:{user_id}", self.prefix)
    }
}

#[async_trait]
impl StreamLog for RedisLog {
    async fn append(&self, deliveries: &[Delivery]) -> Result<Vec<LiveEvent>, LiveError> {
        // A script call per payload and up to `CALL` users, a pipeline of such calls
        // per round trip. Each call is atomic on its own; running a pipeline again
        // (after NOSCRIPT, when Redis lost its scripts) delivers nothing twice.
        let mut pipe = redis::pipe();
        let mut piped = 0;
        for group in same_payload(deliveries) {
            for call in group.chunks(CALL) {
                let first = &call[0];
                let cmd = pipe
                    .cmd("EVALSHA")
                    .arg(DELIVER.get_hash())
                    .arg(1 + call.len())
                    .arg(format!(
                        "{}recipients:{}:{}",
                        self.prefix,
                        first.kind.as_str(),
                        first.dedup_key
                    ));
                for d in call {
                    cmd.arg(self.stream(&d.user_id));
                }
                cmd.arg(RETAINED_PER_USER)
                    .arg(first.kind.as_str())
                    .arg(&*first.payload)
                    .arg(self.channel());
                for d in call {
                    cmd.arg(d.user_id.as_str());
                }
                cmd.ignore();
                piped += call.len();
                if piped >= PIPELINE {
                    self.send(&pipe).await?;
                    pipe.clear();
                    piped = 0;
                }
            }
        }
        if piped > 0 {
            self.send(&pipe).await?;
        }
        // The channel brings every entry back, to this daemon too.
        Ok(Vec::new())
    }

    async fn replay(&self, user_id: &UserId, cursor: &str) -> Result<Replay, LiveError> {
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
        Ok(Replay::Events(
            self.range(user_id, &format!("({cursor}")).await?,
        ))
    }

    async fn replay_all(&self, user_id: &UserId) -> Result<Vec<LiveEvent>, LiveError> {
        self.range(user_id, "-").await
    }

    async fn latest(&self, user_id: &UserId) -> Result<Option<String>, LiveError> {
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

    fn is_after(&self, a: &str, b: &str) -> bool {
        matches!((parse_id(a), parse_id(b)), (Some(a), Some(b)) if a > b)
    }

    async fn prune(&self) -> Result<(), LiveError> {
        // Streams are capped as they grow (XADD MAXLEN).
        Ok(())
    }

    async fn relay(&self, hub: Arc<Hub>, stop: CancellationToken) -> Result<(), LiveError> {
        let channel = self.channel();
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        tokio::spawn(relay(self.client.clone(), channel, pubsub, hub, stop));
        Ok(())
    }
}

/// Hands the channel's entries to the hub, resubscribing after a lost connection
/// (streams then catch up from their last id).
async fn relay(
    client: redis::Client,
    channel: String,
    mut pubsub: redis::aio::PubSub,
    hub: Arc<Hub>,
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
                let Ok(wire) = serde_json::from_str::<Wire>(&payload) else {
                    continue;
                };
                let Some(kind) = StreamKind::parse(&wire.kind) else {
                    continue;
                };
                let payload: Arc<str> = wire.payload.into();
                for (user_id, id) in wire.users.into_iter().zip(wire.ids) {
                    hub.publish(LiveEvent {
                        user_id,
                        id,
                        kind,
                        payload: payload.clone(),
                    });
                }
            }
        }
        tracing::warn!("lost the Redis live channel; resubscribing");
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            match client.get_async_pubsub().await {
                Ok(mut fresh) => {
                    if fresh.subscribe(&channel).await.is_ok() {
                        pubsub = fresh;
                        // Listening again: whatever was appended while the channel
                        // was lost is caught up from the streams themselves.
                        hub.resync_all();
                        break;
                    }
                }
                Err(error) => tracing::warn!(%error, "Redis live channel unavailable"),
            }
        }
    }
}

impl RedisLog {
    /// The user's entries from `start` (an XRANGE bound) on.
    async fn range(&self, user_id: &UserId, start: &str) -> Result<Vec<LiveEvent>, LiveError> {
        let mut conn = self.conn.clone();
        let stream = self.stream(user_id);
        let range: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(&stream)
            .arg(start)
            .arg("+")
            .query_async(&mut conn)
            .await?;
        let events = range
            .into_iter()
            .filter_map(|(id, fields)| {
                let field = |name: &str| {
                    fields
                        .chunks(2)
                        .find(|kv| kv[0] == name)
                        .and_then(|kv| kv.get(1))
                        .cloned()
                        .unwrap_or_default()
                };
                let Some(kind) = StreamKind::parse(&field("kind")) else {
                    tracing::warn!(id, "skipping a stream entry of an unknown kind");
                    return None;
                };
                Some(LiveEvent {
                    user_id: user_id.to_owned(),
                    kind,
                    payload: field("payload").into(),
                    id,
                })
            })
            .collect();
        Ok(events)
    }
}
