//! Live streams in Redis: one capped stream per user (replay, also across daemon
//! restarts) and one pub/sub channel that tells every daemon what was appended.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use ruma::UserId;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use super::wire::Wire;
use super::{
    Delivery, Hub, LiveError, LiveEvent, RETAINED_PER_USER, Replay, StreamKind, StreamLog,
};

/// Redis streams and pub/sub.
pub struct RedisLog {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
}

/// Deliveries in one script call (a payload to more users takes several).
const CALL: usize = 500;
/// Deliveries sent to Redis in one pipeline.
const PIPELINE: usize = 1000;

/// For each of its payloads, appends the payload once per (user, dedup key, kind) to
/// each user's stream, then publishes what it appended, atomically: a crash cannot
/// leave an entry marked delivered but missing, and publish order is stream order. It
/// publishes one message (see [`Wire::parse_all`]), or one per MiB of blocks, so no
/// message comes near the limits Redis puts by default on a subscriber's pending
/// output (8 MB for a minute, 32 MB at once). Who has a payload is a set per dedup
/// key and kind, kept a day after its last delivery. The message is joined once, at
/// the end, from its pieces: Redis's Lua hashes every string a script makes, and a
/// string per block or per line would hash each payload once more.
/// KEYS: for each payload, that set, then each user's stream. ARGV: cap, channel, then
/// for each payload its kind, the payload, the number of users n, and the n user ids.
static DELIVER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local cap, channel = ARGV[1], ARGV[2]
local a, k = 3, 1
local parts, size = {}, 0
while a <= #ARGV do
  local kind, payload, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local head, block = #parts, 0
  for j = 1, n do
    local user = ARGV[a + 2 + j]
    if redis.call('SADD', KEYS[k], user) == 1 then
      local id = redis.call('XADD', KEYS[k + j], 'MAXLEN', '~', cap, '*', 'kind', kind, 'payload', payload)
      if block == 0 then
        if head > 0 then parts[#parts + 1] = '\n\n' end
        parts[#parts + 1] = kind
        parts[#parts + 1] = '\n'
        parts[#parts + 1] = payload
        block = #kind + 1 + #payload
      end
      parts[#parts + 1] = '\n'
      parts[#parts + 1] = user
      parts[#parts + 1] = ' '
      parts[#parts + 1] = id
      block = block + 2 + #user + #id
    end
  end
  redis.call('EXPIRE', KEYS[k], 86400)
  if block > 0 and size > 0 and size + block > 1048576 then
    redis.call('PUBLISH', channel, table.concat(parts, '', 1, head))
    local rest = {}
    for i = head + 2, #parts do rest[#rest + 1] = parts[i] end
    parts, size = rest, 0
  end
  size = size + block
  a = a + 3 + n
  k = k + 1 + n
end
if #parts > 0 then
  redis.call('PUBLISH', channel, table.concat(parts))
end
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

    /// Adds one script call delivering `parts` (each one payload's) to `pipe`.
    fn call(&self, pipe: &mut redis::Pipeline, parts: &[&[Delivery]]) {
        let keys: usize = parts.iter().map(|part| 1 + part.len()).sum();
        let cmd = pipe.cmd("EVALSHA").arg(DELIVER.get_hash()).arg(keys);
        for part in parts {
            let first = &part[0];
            cmd.arg(format!(
                "{}recipients:{}:{}",
                self.prefix,
                first.kind.as_str(),
                first.dedup_key
            ));
            for d in *part {
                cmd.arg(self.stream(&d.user_id));
            }
        }
        cmd.arg(RETAINED_PER_USER).arg(self.channel());
        for part in parts {
            let first = &part[0];
            cmd.arg(first.kind.as_str())
                .arg(&*first.payload)
                .arg(part.len());
            for d in *part {
                cmd.arg(d.user_id.as_str());
            }
        }
        cmd.ignore();
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
        // Script calls of up to `CALL` deliveries (the payloads of many events, or
        // one payload's part), a pipeline of such calls per round trip. Each call is
        // atomic on its own; running a pipeline again (after NOSCRIPT, when Redis lost
        // its scripts) delivers nothing twice.
        let mut pipe = redis::pipe();
        let (mut call, mut in_call, mut piped) = (Vec::new(), 0, 0);
        for group in same_payload(deliveries) {
            for part in group.chunks(CALL) {
                if in_call + part.len() > CALL {
                    self.call(&mut pipe, &std::mem::take(&mut call));
                    in_call = 0;
                }
                call.push(part);
                in_call += part.len();
                piped += part.len();
                if piped >= PIPELINE {
                    self.call(&mut pipe, &std::mem::take(&mut call));
                    self.send(&pipe).await?;
                    pipe.clear();
                    (in_call, piped) = (0, 0);
                }
            }
        }
        if !call.is_empty() {
            self.call(&mut pipe, &call);
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
                let Some(wires) = Wire::parse_all(&payload) else {
                    tracing::warn!("skipping a live channel message of another form");
                    continue;
                };
                for wire in wires {
                    for (user_id, id) in wire.entries {
                        hub.publish(LiveEvent {
                            user_id,
                            id,
                            kind: wire.kind,
                            payload: wire.payload.clone(),
                        });
                    }
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
