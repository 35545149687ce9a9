//! Live streams in Redis: one capped stream per user (replay, also across daemon
//! restarts) and one pub/sub channel that tells every daemon what was appended.
//!
//! What the feed delivers is appended without a script, as the entry `place-0` (its
//! event's place in the event log) of each recipient's stream: Redis refuses an id not
//! above a stream's newest, which is what keeps an event fed again from being appended
//! twice. What has no place (typing, receipts) goes through a script (`keyed.rs`). The
//! streams' keys name the event log's identity, so a new database, whose places start
//! at 1 again, gets new streams.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use ruma::UserId;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

mod keyed;

use super::wire::{self, Wire};
use super::{
    Delivery, Hub, LiveError, LiveEvent, RETAINED_PER_USER, Replay, StreamKind, StreamLog,
};

/// Redis streams and pub/sub.
pub struct RedisLog {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    /// The event log's identity (see [`crate::store::EventLog::identity`]): the
    /// streams' entry ids are places in that log.
    log_id: String,
}

/// Deliveries sent to Redis in one pipeline.
const PIPELINE: usize = 1000;
/// The feed's entries appended (and published) in one transaction: each carries its
/// payload, so fewer than [`PIPELINE`].
const PLACED: usize = 250;
/// Commands queued between two yields while a transaction of appends is built: the
/// feed shares the runtime with the daemon's requests (see the feed's own yields).
const YIELD_EVERY: usize = 64;

/// Deliveries that follow each other with one dedup key, kind and payload: what one
/// event brings its recipients.
pub(super) fn same_payload(deliveries: &[Delivery]) -> impl Iterator<Item = &[Delivery]> {
    deliveries
        .chunk_by(|a, b| a.dedup_key == b.dedup_key && a.kind == b.kind && a.payload == b.payload)
}

/// Whether Redis refused an XADD because the stream already has an entry at or after
/// its id.
fn is_appended_already(error: &redis::RedisError) -> bool {
    error
        .detail()
        .is_some_and(|d| d.contains("equal or smaller than the target stream top item"))
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
    /// Connects to Redis at `url`; every key starts with `prefix`, and the streams'
    /// keys name `log_id`, the identity of the event log whose places their ids are.
    pub async fn connect(
        url: &SecretString,
        prefix: &str,
        log_id: &str,
        timeout: Duration,
    ) -> Result<Self, LiveError> {
        let client = redis::Client::open(url.expose_secret())?;
        let config = crate::cache::redis_manager_config(timeout);
        let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.to_owned(),
            log_id: log_id.to_owned(),
        })
    }

    fn channel(&self) -> String {
        format!("{}live", self.prefix)
    }

    fn stream(&self, user_id: &UserId) -> String {
        format!("{}stream:{}:{user_id}", self.prefix, self.log_id)
    }

    /// Appends what the feed delivers (deliveries with a place): each as the entry
    /// `place-0` of its user's stream, without a script. Redis refuses an id not above
    /// the stream's newest, and the feed delivers in the log's order, so an event fed
    /// again appends nothing. [`PLACED`] entries at a time, in a transaction (`MULTI`)
    /// with their publish: a command Redis refuses to queue (out of memory) keeps all
    /// of it out, so no later entry of a user goes in without an earlier one, which a
    /// refeed could then no longer append; and the streams are woken part by part, as
    /// Redis appends. The publish names every entry, the refused ones too: an earlier
    /// try may have appended them and lost its publish, and an open stream skips what
    /// it has already had (its ids only grow).
    async fn append_placed(&self, deliveries: &[Delivery]) -> Result<(), LiveError> {
        let mut conn = self.conn.clone();
        let mut keys: HashMap<&UserId, String> = HashMap::new();
        for part in deliveries.chunks(PLACED) {
            let ids: Vec<String> = part
                .iter()
                .map(|d| format!("{}-0", d.place.unwrap_or_default()))
                .collect();
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (n, (d, id)) in part.iter().zip(&ids).enumerate() {
                if n % YIELD_EVERY == YIELD_EVERY - 1 {
                    tokio::task::yield_now().await;
                }
                let key = keys
                    .entry(&d.user_id)
                    .or_insert_with(|| self.stream(&d.user_id));
                pipe.cmd("XADD")
                    .arg(key.as_str())
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(RETAINED_PER_USER)
                    .arg(id)
                    .arg("kind")
                    .arg(d.kind.as_str())
                    .arg("payload")
                    .arg(&*d.payload);
            }
            let mut at = 0;
            let blocks = same_payload(part).map(|group| {
                let ids = &ids[at..at + group.len()];
                at += group.len();
                let entries = group.iter().zip(ids);
                Wire::block(
                    group[0].kind,
                    &group[0].payload,
                    entries.map(|(d, id)| (d.user_id.as_str(), id.as_str())),
                )
            });
            for message in wire::join_blocks(blocks) {
                pipe.cmd("PUBLISH").arg(self.channel()).arg(message);
            }
            let replies: Vec<redis::RedisResult<redis::Value>> =
                pipe.ignore_errors().query_async(&mut conn).await?;
            for reply in replies {
                match reply {
                    Err(e) if !is_appended_already(&e) => return Err(e.into()),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl StreamLog for RedisLog {
    async fn append(&self, deliveries: &[Delivery]) -> Result<Vec<LiveEvent>, LiveError> {
        for run in deliveries.chunk_by(|a, b| a.place.is_some() == b.place.is_some()) {
            if run[0].place.is_some() {
                self.append_placed(run).await?;
            } else {
                self.append_keyed(run).await?;
            }
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
