//! Events pushed by the homeserver: recorded durably before Synapse gets its answer,
//! then fed, in order and once, to the room index and the live streams of the
//! ChatSender users who should see them.
//!
//! Recording wakes the feeder and returns: Synapse never waits for a delivery. What a
//! crash interrupts is still marked unfed and is fed at the next start; feeding an
//! event twice delivers it once (streams keep one entry per event and user).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ruma::events::AnyTimelineEvent;
use ruma::events::room::member::MembershipState;
use ruma::serde::Raw;
use ruma::{OwnedEventId, OwnedUserId, RoomId};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::event::{self, Content, RoomEvent};
use super::message::{MembershipChange, Message, RoomChange};
use crate::cache::{Cache, CacheError};
use crate::identity::Namespace;
use crate::live::{Delivery, Live, LiveError, StreamKind};
use crate::store::{
    EventLog, IncomingTransaction, RoomIndex, RoomUpdate, StoreError, TransactionOutcome,
};

/// Why feeding stopped; the events stay unfed and are tried again.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error("cannot encode a stream payload: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Events read from the log per round.
const BATCH: u32 = 200;
/// The cache key of the feeder's lease, and how long a lease lasts unrenewed: one
/// feeder at a time across daemons, so events are applied in order.
const LEASE_KEY: &str = "ingest-lease";
const LEASE_TTL: Duration = Duration::from_secs(60);
/// How long a feeder waits for another daemon's before leaving the work to it.
const LEASE_WAIT: Duration = Duration::from_secs(5);
/// How often the feeder looks for work nobody woke it for (another daemon's, a
/// failed round's).
const POLL: Duration = Duration::from_secs(5);

/// Records transactions and feeds their events on.
pub struct Ingest {
    events: Arc<dyn EventLog>,
    rooms: Arc<dyn RoomIndex>,
    cache: Arc<dyn Cache>,
    live: Live,
    namespace: Namespace,
    /// Rung by each recording; the feeder waits on it.
    wake: Notify,
    /// One feed at a time in this daemon.
    running: tokio::sync::Mutex<()>,
    /// When each failing event first failed (std mutex: never held across an await).
    failures: Mutex<HashMap<OwnedEventId, Instant>>,
    /// How long feeding one event may keep failing before it is skipped.
    give_up_after: Duration,
}

impl Ingest {
    /// An ingest over the daemon's state. `give_up_after`: see [`Ingest::run_pending`].
    pub fn new(
        events: Arc<dyn EventLog>,
        rooms: Arc<dyn RoomIndex>,
        cache: Arc<dyn Cache>,
        live: Live,
        namespace: Namespace,
        give_up_after: Duration,
    ) -> Self {
        Self {
            events,
            rooms,
            cache,
            live,
            namespace,
            wake: Notify::new(),
            running: tokio::sync::Mutex::new(()),
            failures: Mutex::default(),
            give_up_after,
        }
    }

    /// Records a pushed transaction once, durably, and wakes the feeder. An event
    /// that is not a room event is logged and skipped; the rest are recorded.
    pub async fn record(
        &self,
        txn_id: &str,
        body_sha256: [u8; 32],
        events: &[Raw<AnyTimelineEvent>],
    ) -> Result<TransactionOutcome, StoreError> {
        let events = events
            .iter()
            .enumerate()
            .filter_map(|(index, raw)| match event::envelope(raw) {
                Ok(record) => Some(record),
                Err(error) => {
                    metrics::counter!("chatsender_events_skipped_total").increment(1);
                    tracing::warn!(txn_id, index, %error, "skipping an event");
                    None
                }
            })
            .collect();
        let txn = IncomingTransaction {
            txn_id: txn_id.to_owned(),
            body_sha256,
            events,
        };
        let outcome = self.events.record_transaction(&txn).await?;
        match outcome {
            TransactionOutcome::Duplicate => {
                metrics::counter!("chatsender_transactions_duplicate_total").increment(1);
                tracing::info!(txn_id, "transaction already processed");
            }
            TransactionOutcome::Recorded { new_events } => {
                metrics::counter!("chatsender_events_processed_total").increment(new_events as u64);
                tracing::debug!(txn_id, events = new_events, "transaction recorded");
                self.wake.notify_one();
            }
        }
        Ok(outcome)
    }

    /// Feeds events as they are recorded until `stop`: woken by each recording, and
    /// every few seconds for what another daemon left or a failed round kept.
    pub async fn run(&self, stop: CancellationToken) {
        loop {
            if let Err(error) = self.run_pending().await {
                tracing::warn!(error = %error, "could not feed events; trying again");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Feeds every recorded event not fed yet (after a crash too), oldest first.
    /// Returns how many were fed; 0 also when another daemon's feeder is at work.
    ///
    /// An event whose feeding keeps failing for `give_up_after` (as long as streams
    /// keep events for replay, after which delivering it is moot) is skipped with an
    /// error, so one bad event cannot stop the feed for good while a passing outage
    /// loses nothing. It stays in the history.
    pub async fn run_pending(&self) -> Result<usize, FeedError> {
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

    async fn feed(&self) -> Result<usize, FeedError> {
        let mut done = 0;
        loop {
            let records = self.events.pending_events(BATCH).await?;
            if records.is_empty() {
                return Ok(done);
            }
            let mut applied = Vec::with_capacity(records.len());
            let mut failure = None;
            for record in &records {
                let event = RoomEvent::from_record(record);
                match self.apply(&event).await {
                    Ok(()) => {
                        self.forget_failure(&record.event_id);
                        applied.push(&*record.event_id);
                    }
                    Err(error) if self.give_up(&record.event_id) => {
                        tracing::error!(
                            event_id = %record.event_id,
                            error = %error,
                            "an event kept failing for {:?}; it stays in the history but is not fed to the live streams",
                            self.give_up_after
                        );
                        applied.push(&*record.event_id);
                    }
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
            }
            // Keep the progress made, even when an event stops the batch.
            self.events.mark_fed(&applied).await?;
            self.cache.expire(LEASE_KEY, LEASE_TTL).await?;
            done += applied.len();
            if let Some(error) = failure {
                return Err(error);
            }
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedEventId, Instant>> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn forget_failure(&self, event_id: &ruma::EventId) {
        self.failures().remove(event_id);
    }

    /// Notes a failure of `event_id`; true once it has kept failing long enough.
    fn give_up(&self, event_id: &ruma::EventId) -> bool {
        let mut failures = self.failures();
        let first = *failures
            .entry(event_id.to_owned())
            .or_insert_with(Instant::now);
        if first.elapsed() >= self.give_up_after {
            failures.remove(event_id);
            return true;
        }
        false
    }

    /// Applies one event to the room index and delivers it to whom it concerns.
    async fn apply(&self, event: &RoomEvent) -> Result<(), FeedError> {
        let room = &event.room_id;
        match &event.content {
            Content::Member(m) => {
                let mut update = RoomUpdate::default();
                let ours = self.namespace.contains(&m.target);
                if ours && m.membership == MembershipState::Invite {
                    update.name = m.invite_name.clone();
                    update.encrypted = m.invite_encrypted.then_some(true);
                    update.is_direct = m.is_direct;
                }
                self.rooms.update_room(room, &update).await?;
                if let Some(record) = event.membership() {
                    self.rooms.set_membership(&record).await?;
                }
                let mut to = self.joined(room).await?;
                if ours && !to.contains(&m.target) {
                    to.push(m.target.clone());
                }
                let change = MembershipChange {
                    room_id: room.clone(),
                    user_id: m.target.clone(),
                    membership: m.membership.clone(),
                    sender: event.sender.clone(),
                };
                self.deliver(to, event, StreamKind::Membership, &change)
                    .await
            }
            Content::Name(name) => {
                self.rooms.update_room(room, &event.room_update()).await?;
                let change = RoomChange {
                    room_id: room.clone(),
                    name: name.clone(),
                };
                let to = self.joined(room).await?;
                self.deliver(to, event, StreamKind::Room, &change).await
            }
            Content::Encryption => {
                self.rooms.update_room(room, &event.room_update()).await?;
                Ok(())
            }
            Content::Message { .. } => {
                let sender = self.rooms.membership(room, &event.sender).await?;
                let Some(message) = Message::of(event, sender.and_then(|m| m.display_name)) else {
                    return Ok(());
                };
                self.rooms.set_last_message(room, &event.event_id).await?;
                let to = self.joined(room).await?;
                self.deliver(to, event, StreamKind::Message, &message).await
            }
            Content::Other => Ok(()),
        }
    }

    /// ChatSender users joined to the room.
    async fn joined(&self, room: &RoomId) -> Result<Vec<OwnedUserId>, StoreError> {
        let members = self.rooms.members(room, &MembershipState::Join).await?;
        Ok(members
            .into_iter()
            .map(|m| m.user_id)
            .filter(|u| self.namespace.contains(u))
            .collect())
    }

    async fn deliver(
        &self,
        to: Vec<OwnedUserId>,
        event: &RoomEvent,
        kind: StreamKind,
        payload: &impl serde::Serialize,
    ) -> Result<(), FeedError> {
        let payload = serde_json::to_string(payload)?;
        let deliveries: Vec<Delivery> = to
            .into_iter()
            .map(|user_id| Delivery {
                user_id,
                dedup_key: event.event_id.to_string(),
                kind,
                payload: payload.clone(),
            })
            .collect();
        self.live.deliver(&deliveries).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use ruma::{ServerName, UserId};
    use serde_json::{Value, json};
    use tokio::sync::Semaphore;

    use super::*;
    use crate::cache::MemoryCache;
    use crate::live::{DatabaseLog, Hub, LiveEvent, Replay, StreamLog};
    use crate::store::UserStreams;
    use crate::store::memory::MemoryStore;

    const HOUR: Duration = Duration::from_secs(3600);

    fn namespace() -> Namespace {
        let server = ServerName::parse("x").expect("server name");
        Namespace::new("cs_", &server, "cs_bot").expect("namespace")
    }

    fn user(name: &str) -> OwnedUserId {
        UserId::parse(format!("@{name}:x")).expect("user id")
    }

    fn raw(event: Value) -> Raw<AnyTimelineEvent> {
        Raw::from_json(serde_json::value::to_raw_value(&event).expect("json"))
    }

    fn join(id: &str, who: &str) -> Raw<AnyTimelineEvent> {
        raw(
            json!({"type": "m.room.member", "event_id": id, "room_id": "!r:x",
            "sender": format!("@{who}:x"), "state_key": format!("@{who}:x"),
            "origin_server_ts": 1, "content": {"membership": "join"}}),
        )
    }

    fn text(id: &str, who: &str, body: &str) -> Raw<AnyTimelineEvent> {
        raw(
            json!({"type": "m.room.message", "event_id": id, "room_id": "!r:x",
            "sender": format!("@{who}:x"), "origin_server_ts": 2,
            "content": {"msgtype": "m.text", "body": body}}),
        )
    }

    /// The database log, with gates before and after each append that a test opens.
    struct GatedLog {
        inner: DatabaseLog,
        before: Semaphore,
        after: Semaphore,
        entered: AtomicUsize,
    }

    impl GatedLog {
        fn new(store: &Arc<MemoryStore>, before: usize, after: usize) -> Arc<Self> {
            Arc::new(Self {
                inner: DatabaseLog::new(store.clone()),
                before: Semaphore::new(before),
                after: Semaphore::new(after),
                entered: AtomicUsize::new(0),
            })
        }

        fn open() -> usize {
            Semaphore::MAX_PERMITS / 2
        }
    }

    #[async_trait]
    impl StreamLog for GatedLog {
        async fn append(&self, deliveries: &[Delivery]) -> Result<Vec<LiveEvent>, LiveError> {
            self.entered.fetch_add(1, Ordering::SeqCst);
            self.before.acquire().await.expect("gate").forget();
            let appended = self.inner.append(deliveries).await?;
            self.after.acquire().await.expect("gate").forget();
            Ok(appended)
        }
        async fn replay(&self, user_id: &UserId, cursor: &str) -> Result<Replay, LiveError> {
            self.inner.replay(user_id, cursor).await
        }
        async fn latest(&self, user_id: &UserId) -> Result<Option<String>, LiveError> {
            self.inner.latest(user_id).await
        }
        fn is_after(&self, a: &str, b: &str) -> bool {
            self.inner.is_after(a, b)
        }
        async fn prune(&self) -> Result<(), LiveError> {
            self.inner.prune().await
        }
        async fn relay(&self, hub: Arc<Hub>, stop: CancellationToken) -> Result<(), LiveError> {
            self.inner.relay(hub, stop).await
        }
    }

    fn ingest(store: &Arc<MemoryStore>, log: Arc<dyn StreamLog>, give_up: Duration) -> Arc<Ingest> {
        Arc::new(Ingest::new(
            store.clone(),
            store.clone(),
            Arc::new(MemoryCache::default()),
            Live::new(log),
            namespace(),
            give_up,
        ))
    }

    /// What a user's stream holds: messages by event id, memberships by user.
    async fn stream(store: &MemoryStore, who: &str) -> Vec<String> {
        let entries = store
            .entries_after(&user(who), 0, 100)
            .await
            .expect("entries");
        entries
            .into_iter()
            .map(|e| {
                let payload: Value = serde_json::from_str(&e.payload).expect("json");
                let about = match e.kind.as_str() {
                    "membership" => &payload["user_id"],
                    _ => &payload["event_id"],
                };
                format!("{} {}", e.kind, about.as_str().unwrap_or("-"))
            })
            .collect()
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..5000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("never happened: {what}");
    }

    #[tokio::test]
    async fn a_transaction_is_answered_before_a_slow_delivery_and_delivered_once() {
        let store = Arc::new(MemoryStore::default());
        let log = GatedLog::new(&store, GatedLog::open(), GatedLog::open());
        let first = ingest(&store, log.clone(), HOUR);
        first
            .record("1", [1; 32], &[join("$j", "cs_alice")])
            .await
            .expect("record");
        first.run_pending().await.expect("feed");

        // Deliveries now wait at the gate; recording does not.
        let log = GatedLog::new(&store, 0, GatedLog::open());
        let second = ingest(&store, log.clone(), HOUR);
        let stop = CancellationToken::new();
        let feeder = tokio::spawn({
            let (second, stop) = (second.clone(), stop.clone());
            async move { second.run(stop).await }
        });
        // Bounded only so that a regression fails instead of hanging: an answer that
        // waited for the delivery would never come while the gate is shut.
        let answered = tokio::time::timeout(
            Duration::from_secs(30),
            second.record("2", [2; 32], &[text("$m", "carol", "hi")]),
        )
        .await
        .expect("answered while the delivery is held up");
        let outcome = answered.expect("record");
        assert_eq!(outcome, TransactionOutcome::Recorded { new_events: 1 });
        until("the feeder is delivering", || {
            log.entered.load(Ordering::SeqCst) == 1
        })
        .await;
        assert_eq!(
            stream(&store, "cs_alice").await,
            ["membership @cs_alice:x"],
            "not yet delivered"
        );

        log.before.add_permits(GatedLog::open());
        until("the message is delivered", || {
            store.pending_events_now().is_empty()
        })
        .await;
        assert_eq!(
            stream(&store, "cs_alice").await,
            ["membership @cs_alice:x", "message $m"]
        );
        stop.cancel();
        feeder.await.expect("feeder");
    }

    #[tokio::test]
    async fn a_crash_between_recording_and_delivery_delivers_once_at_the_next_start() {
        let store = Arc::new(MemoryStore::default());
        let open = GatedLog::new(&store, GatedLog::open(), GatedLog::open());
        let setup = ingest(&store, open.clone(), HOUR);
        setup
            .record("1", [1; 32], &[join("$j", "cs_alice")])
            .await
            .expect("record");
        setup.run_pending().await.expect("feed");

        // A crash before the delivery, and one after it but before it was marked fed.
        for (before, after, id) in [(0, GatedLog::open(), "$m1"), (GatedLog::open(), 0, "$m2")] {
            let log = GatedLog::new(&store, before, after);
            let crashing = ingest(&store, log.clone(), HOUR);
            crashing
                .record(id, [id.len() as u8; 32], &[text(id, "carol", "hi")])
                .await
                .expect("record");
            let feed = tokio::spawn({
                let crashing = crashing.clone();
                async move { crashing.run_pending().await }
            });
            until("the feeder is delivering", || {
                log.entered.load(Ordering::SeqCst) == 1
            })
            .await;
            feed.abort();
            let _ = feed.await;

            let restarted = ingest(&store, open.clone(), HOUR);
            assert_eq!(restarted.run_pending().await.expect("feed"), 1);
            assert_eq!(restarted.run_pending().await.expect("feed"), 0, "fed once");
        }
        assert_eq!(
            stream(&store, "cs_alice").await,
            ["membership @cs_alice:x", "message $m1", "message $m2"],
            "each message once"
        );
    }

    #[tokio::test]
    async fn a_failing_event_waits_through_an_outage_and_is_skipped_only_after_the_window() {
        let store = Arc::new(MemoryStore::default());
        let log = GatedLog::new(&store, GatedLog::open(), GatedLog::open());
        let patient = ingest(&store, log.clone(), HOUR);
        patient
            .record("1", [1; 32], &[join("$j", "cs_alice")])
            .await
            .expect("record");
        patient.run_pending().await.expect("feed");

        store.fail("rooms", true);
        patient
            .record("2", [2; 32], &[text("$m1", "carol", "one")])
            .await
            .expect("record");
        assert!(
            patient.run_pending().await.is_err(),
            "the outage stops the feed"
        );
        assert_eq!(store.pending_events_now(), ["$m1"], "nothing lost");
        store.fail("rooms", false);
        assert_eq!(patient.run_pending().await.expect("feed"), 1);

        // An event that keeps failing past the window is skipped; the feed goes on.
        store.fail("rooms", true);
        let impatient = ingest(&store, log, Duration::ZERO);
        impatient
            .record("3", [3; 32], &[text("$m2", "carol", "two")])
            .await
            .expect("record");
        assert_eq!(impatient.run_pending().await.expect("feed"), 1);
        store.fail("rooms", false);
        assert!(store.pending_events_now().is_empty());
        impatient
            .record("4", [4; 32], &[text("$m3", "carol", "three")])
            .await
            .expect("record");
        impatient.run_pending().await.expect("feed");
        assert_eq!(
            stream(&store, "cs_alice").await,
            ["membership @cs_alice:x", "message $m1", "message $m3"]
        );
    }

    #[tokio::test]
    async fn members_outside_the_namespace_get_nothing_and_invites_reach_the_invited() {
        let store = Arc::new(MemoryStore::default());
        let log = GatedLog::new(&store, GatedLog::open(), GatedLog::open());
        let ingest = ingest(&store, log, HOUR);
        let invite = raw(
            json!({"type": "m.room.member", "event_id": "$i", "room_id": "!r:x",
            "sender": "@cs_alice:x", "state_key": "@cs_dave:x", "origin_server_ts": 3,
            "content": {"membership": "invite", "is_direct": true},
            "unsigned": {"invite_room_state": [
                {"type": "m.room.name", "state_key": "", "sender": "@cs_alice:x", "content": {"name": "Tea"}}]}}),
        );
        let events = [
            join("$a", "cs_alice"),
            join("$c", "carol"),
            text("$m", "carol", "hi"),
            invite,
        ];
        ingest.record("1", [1; 32], &events).await.expect("record");
        ingest.run_pending().await.expect("feed");
        assert_eq!(
            stream(&store, "cs_alice").await,
            [
                "membership @cs_alice:x",
                "membership @carol:x",
                "message $m",
                "membership @cs_dave:x"
            ]
        );
        assert_eq!(
            stream(&store, "cs_dave").await,
            ["membership @cs_dave:x"],
            "only the invite"
        );
        let room = store
            .room(&RoomId::parse("!r:x").expect("room"))
            .await
            .expect("room");
        let room = room.expect("indexed");
        assert_eq!((room.name.as_deref(), room.is_direct), (Some("Tea"), true));
        assert_eq!(room.last_event_id.as_ref().map(|e| e.as_str()), Some("$m"));
    }
}
