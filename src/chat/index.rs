//! Feeding received room events to the room index (rooms, memberships) and to the
//! live streams of the ChatSender users who should see them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use super::message::{self, MembershipChange, RoomChange};
use crate::cache::Cache;
use crate::live::LiveBus;
use crate::store::{MembershipRecord, RoomEvent, Store};

/// Which users are ChatSender's: `@{prefix}…:{server_name}`.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub user_prefix: String,
    pub server_name: String,
}

impl Namespace {
    /// Whether `user_id` is one of ChatSender's users.
    pub fn contains(&self, user_id: &str) -> bool {
        user_id
            .strip_prefix('@')
            .and_then(|rest| rest.strip_prefix(self.user_prefix.as_str()))
            // Localparts hold no ':'; a server name may (a port).
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(_, server)| server == self.server_name)
    }
}

/// Feeds recorded events, in order, once.
pub struct Ingest {
    store: Arc<dyn Store>,
    cache: Arc<dyn Cache>,
    bus: Arc<dyn LiveBus>,
    namespace: Namespace,
    /// One feeder at a time in this daemon; the lease in the cache makes it one at a
    /// time across daemons, so events are applied in order.
    running: Mutex<()>,
    /// When each failing event first failed (std mutex: never held across an await).
    failures: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
}

/// How long feeding one event may keep failing before it is skipped: as long as
/// live streams keep events for replay, after which delivering it is moot.
const GIVE_UP_AFTER: Duration = Duration::from_millis(crate::live::RETAINED_MS as u64);

/// The cache key of the feeder's lease, and how long a lease lasts unrenewed.
const LEASE_KEY: &str = "ingest-lease";
const LEASE_TTL: Duration = Duration::from_secs(60);
/// How long to wait for another daemon's feeder before leaving the work to it.
const LEASE_WAIT: Duration = Duration::from_secs(5);

impl Ingest {
    /// A feeder over the daemon's state.
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<dyn Cache>,
        bus: Arc<dyn LiveBus>,
        namespace: Namespace,
    ) -> Self {
        Self {
            store,
            cache,
            bus,
            namespace,
            running: Mutex::new(()),
            failures: Default::default(),
        }
    }

    /// Feeds every recorded event not fed yet (after a crash too), oldest first.
    /// Returns how many were fed; 0 also when another daemon's feeder is at work
    /// (it feeds them, and the periodic run catches anything left).
    pub async fn run_pending(&self) -> anyhow::Result<usize> {
        let _one_at_a_time = self.running.lock().await;
        let holder = crate::keys::encode_base64url(&rand::random::<[u8; 16]>());
        let started = Instant::now();
        while !self
            .cache
            .put_if_absent(LEASE_KEY, holder.as_bytes(), LEASE_TTL)
            .await?
        {
            if started.elapsed() > LEASE_WAIT {
                return Ok(0);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let fed = self.feed().await;
        self.cache.delete_if(LEASE_KEY, holder.as_bytes()).await?;
        fed
    }

    async fn feed(&self) -> anyhow::Result<usize> {
        let mut done = 0;
        loop {
            let events = self.store.pending_events(200).await?;
            if events.is_empty() {
                return Ok(done);
            }
            let mut applied: Vec<&str> = Vec::with_capacity(events.len());
            let mut failure = None;
            for event in &events {
                match self.apply(event).await {
                    Ok(()) => {
                        self.forget_failure(event.event_id.as_str());
                        applied.push(event.event_id.as_str());
                    }
                    Err(error) if self.give_up(event.event_id.as_str()) => {
                        tracing::error!(
                            event_id = %event.event_id,
                            error = format!("{error:#}"),
                            "an event kept failing for {GIVE_UP_AFTER:?}; it stays in the history but is not fed to the live streams"
                        );
                        applied.push(event.event_id.as_str());
                    }
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
            }
            // Keep the progress made, even when an event stops the batch.
            self.store.mark_ingested(&applied).await?;
            self.cache.expire(LEASE_KEY, LEASE_TTL).await?;
            done += applied.len();
            if let Some(error) = failure {
                return Err(error);
            }
        }
    }

    fn forget_failure(&self, event_id: &str) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        failures.remove(event_id);
    }

    /// Notes a failure of `event_id`; true once it has kept failing for
    /// [`GIVE_UP_AFTER`], so one bad event cannot stop the feed for good while a
    /// passing outage (database, Redis) loses nothing.
    fn give_up(&self, event_id: &str) -> bool {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let first = *failures
            .entry(event_id.to_owned())
            .or_insert_with(Instant::now);
        if first.elapsed() >= GIVE_UP_AFTER {
            failures.remove(event_id);
            return true;
        }
        false
    }

    async fn apply(&self, event: &RoomEvent) -> anyhow::Result<()> {
        let json: Value = serde_json::from_str(&event.json).unwrap_or_default();
        let content = &json["content"];
        let room_id = event.room_id.as_str();
        match (event.event_type.as_str(), event.state_key.as_deref()) {
            ("m.room.member", Some(target)) => {
                let membership = content["membership"].as_str().unwrap_or("leave").to_owned();
                if self.namespace.contains(target) && membership == "invite" {
                    let name = stripped_state(&json, "m.room.name")
                        .and_then(|c| c["name"].as_str().map(str::to_owned));
                    let encrypted = stripped_state(&json, "m.room.encryption").map(|_| true);
                    let direct = content["is_direct"].as_bool();
                    self.store
                        .update_room(room_id, name.as_deref(), direct, encrypted)
                        .await?;
                } else {
                    self.store.update_room(room_id, None, None, None).await?;
                }
                let record = MembershipRecord {
                    room_id: room_id.to_owned(),
                    user_id: target.to_owned(),
                    membership: membership.clone(),
                    display_name: content["displayname"].as_str().map(str::to_owned),
                    sender: event.sender.to_string(),
                };
                self.store.set_membership(&record).await?;
                let change = MembershipChange {
                    room_id: room_id.to_owned(),
                    user_id: target.to_owned(),
                    membership,
                    sender: event.sender.to_string(),
                };
                let mut to = self.joined(room_id).await?;
                if self.namespace.contains(target) && !to.iter().any(|u| u == target) {
                    to.push(target.to_owned());
                }
                self.deliver(&to, event, "membership", &serde_json::to_string(&change)?)
                    .await
            }
            ("m.room.name", Some("")) => {
                let name = content["name"].as_str().filter(|n| !n.is_empty());
                self.store
                    .update_room(room_id, Some(name.unwrap_or("")), None, None)
                    .await?;
                let change = RoomChange {
                    room_id: room_id.to_owned(),
                    name: name.map(str::to_owned),
                };
                let to = self.joined(room_id).await?;
                self.deliver(&to, event, "room", &serde_json::to_string(&change)?)
                    .await
            }
            ("m.room.encryption", Some("")) => {
                self.store
                    .update_room(room_id, None, None, Some(true))
                    .await?;
                Ok(())
            }
            (event_type, None) if message::is_message_type(event_type) => {
                let sender = self
                    .store
                    .membership(room_id, event.sender.as_str())
                    .await?;
                let name = sender.and_then(|m| m.display_name);
                let Some(message) = message::from_event_json(&event.json, |_| name) else {
                    return Ok(());
                };
                let to = self.joined(room_id).await?;
                self.deliver(&to, event, "message", &serde_json::to_string(&message)?)
                    .await
            }
            _ => Ok(()),
        }
    }

    /// ChatSender users joined to the room.
    async fn joined(&self, room_id: &str) -> anyhow::Result<Vec<String>> {
        let members = self.store.members(room_id, "join").await?;
        Ok(members
            .into_iter()
            .map(|m| m.user_id)
            .filter(|u| self.namespace.contains(u))
            .collect())
    }

    async fn deliver(
        &self,
        to: &[String],
        event: &RoomEvent,
        kind: &str,
        payload: &str,
    ) -> anyhow::Result<()> {
        for user in to {
            self.bus
                .deliver(user, event.event_id.as_str(), kind, payload)
                .await?;
        }
        Ok(())
    }
}

/// The content of a stripped state event of `event_type` sent along with an invite.
fn stripped_state<'a>(event: &'a Value, event_type: &str) -> Option<&'a Value> {
    event["unsigned"]["invite_room_state"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == event_type)
        .map(|e| &e["content"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespace_is_prefix_and_server() {
        let ns = Namespace {
            user_prefix: "cs_".into(),
            server_name: "example.org".into(),
        };
        assert!(ns.contains("@cs_alice:example.org"));
        assert!(!ns.contains("@cs_alice:other.org"));
        assert!(!ns.contains("@carol:example.org"));
        assert!(!ns.contains("cs_alice:example.org"));
        let with_port = Namespace {
            user_prefix: "cs_".into(),
            server_name: "example.org:8448".into(),
        };
        assert!(with_port.contains("@cs_alice:example.org:8448"));
    }
}
