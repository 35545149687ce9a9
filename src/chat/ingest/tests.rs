//! The feed against in-memory fakes: timing, crashes, outages and who gets what.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use ruma::{OwnedUserId, RoomId, ServerName, UserId};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::lease::{LAST_FEEDER_KEY, LAST_FEEDER_TTL, LEASE_KEY, LEASE_TTL};
use super::*;

mod durability;
mod failures;
mod large_rooms;
mod lease;
mod queue;
mod watched;
use crate::cache::MemoryCache;
use crate::live::{DatabaseLog, Delivery, Hub, LiveEvent, Replay, StreamLog};
use crate::store::UserStreams;
use crate::store::memory::MemoryStore;

const HOUR: Duration = Duration::from_secs(3600);
/// No ephemeral data.
const NONE: &[Raw<Value>] = &[];

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

/// `who` changing their own membership to `membership`.
fn membership(id: &str, who: &str, membership: &str) -> Raw<AnyTimelineEvent> {
    raw(
        json!({"type": "m.room.member", "event_id": id, "room_id": "!r:x",
        "sender": format!("@{who}:x"), "state_key": format!("@{who}:x"),
        "origin_server_ts": 1, "content": {"membership": membership}}),
    )
}

fn join(id: &str, who: &str) -> Raw<AnyTimelineEvent> {
    membership(id, who, "join")
}

/// One message more than a round of feeding takes (`$m0` … `$m1000`), from carol: their
/// ids and events.
fn past_a_batch() -> (Vec<String>, Vec<Raw<AnyTimelineEvent>>) {
    let ids: Vec<String> = (0..=BATCH).map(|i| format!("$m{i}")).collect();
    let events = ids.iter().map(|id| text(id, "carol", "hi")).collect();
    (ids, events)
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
    /// The most deliveries one append was given.
    largest: AtomicUsize,
}

impl GatedLog {
    fn new(store: &Arc<MemoryStore>, before: usize, after: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: DatabaseLog::new(store.clone()),
            before: Semaphore::new(before),
            after: Semaphore::new(after),
            entered: AtomicUsize::new(0),
            largest: AtomicUsize::new(0),
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
        self.largest.fetch_max(deliveries.len(), Ordering::SeqCst);
        self.before.acquire().await.expect("gate").forget();
        let appended = self.inner.append(deliveries).await?;
        self.after.acquire().await.expect("gate").forget();
        Ok(appended)
    }
    async fn replay(&self, user_id: &UserId, cursor: &str) -> Result<Replay, LiveError> {
        self.inner.replay(user_id, cursor).await
    }
    async fn replay_all(&self, user_id: &UserId) -> Result<Vec<LiveEvent>, LiveError> {
        self.inner.replay_all(user_id).await
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
        .entries_after(&user(who), 0, 10_000)
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

/// Feeds what is pending in a task of its own, returned once the feed has reached
/// `log`'s gate for the `appends`th time.
async fn feed_until_appending(
    ingest: &Arc<Ingest>,
    log: &GatedLog,
    appends: usize,
) -> tokio::task::JoinHandle<Result<usize, FeedError>> {
    let feed = tokio::spawn({
        let ingest = ingest.clone();
        async move { ingest.run_pending().await }
    });
    until("the feeder is delivering", || {
        log.entered.load(Ordering::SeqCst) == appends
    })
    .await;
    feed
}

#[tokio::test]
async fn a_transaction_is_answered_before_a_slow_delivery_and_delivered_once() {
    let store = Arc::new(MemoryStore::default());
    let log = GatedLog::new(&store, GatedLog::open(), GatedLog::open());
    let first = ingest(&store, log.clone(), HOUR);
    first
        .record("1", [1; 32], &[join("$j", "cs_alice")], NONE)
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
        second.record("2", [2; 32], &[text("$m", "carol", "hi")], NONE),
    )
    .await
    .expect("answered while the delivery is held up");
    let outcome = answered.expect("record");
    assert_eq!(outcome.new_events(), 1);
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
        .record("1", [1; 32], &[join("$j", "cs_alice")], NONE)
        .await
        .expect("record");
    setup.run_pending().await.expect("feed");

    // A crash before the delivery, and one after it but before it was marked fed.
    for (before, after, id) in [(0, GatedLog::open(), "$m1"), (GatedLog::open(), 0, "$m2")] {
        let log = GatedLog::new(&store, before, after);
        let crashing = ingest(&store, log.clone(), HOUR);
        crashing
            .record(id, [id.len() as u8; 32], &[text(id, "carol", "hi")], NONE)
            .await
            .expect("record");
        let feed = feed_until_appending(&crashing, &log, 1).await;
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
    ingest
        .record("1", [1; 32], &events, NONE)
        .await
        .expect("record");
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
    let last = store
        .last_message(&room.room_id)
        .await
        .expect("last message");
    assert_eq!(last.map(|e| e.event_id.to_string()).as_deref(), Some("$m"));
}

#[tokio::test]
async fn typing_and_receipts_reach_the_rooms_members_and_clear_unread_counts() {
    let store = Arc::new(MemoryStore::default());
    let log = GatedLog::new(&store, GatedLog::open(), GatedLog::open());
    let ingest = ingest(&store, log, HOUR);
    let events = [
        join("$a", "cs_alice"),
        join("$b", "cs_bob"),
        join("$c", "carol"),
        text("$m", "carol", "hi"),
    ];
    ingest
        .record("1", [1; 32], &events, NONE)
        .await
        .expect("record");
    ingest.run_pending().await.expect("feed");
    let room = RoomId::parse("!r:x").expect("room");
    let unread = |who: &str| {
        let (store, room, who) = (store.clone(), room.clone(), user(who));
        async move { store.unread(&room, &who).await.expect("unread") }
    };
    assert_eq!((unread("cs_alice").await, unread("carol").await), (1, 0));

    let ephemeral = [
        raw(json!({"type": "m.typing", "room_id": "!r:x",
            "content": {"user_ids": ["@carol:x"]}})),
        raw(json!({"type": "m.receipt", "room_id": "!r:x",
            "content": {"$m": {"m.read": {"@cs_alice:x": {"ts": 1}}}}})),
    ];
    ingest
        .record("2", [2; 32], &[], &ephemeral)
        .await
        .expect("record");
    ingest.run_ephemeral().await;
    assert_eq!((unread("cs_alice").await, unread("cs_bob").await), (0, 1));
    assert_eq!(
        stream(&store, "cs_alice").await[3..],
        ["message $m", "typing -", "read $m"]
    );
    assert_eq!(
        stream(&store, "cs_bob").await[2..],
        ["message $m", "typing -", "receipt $m"],
        "Bob sees Alice's receipt"
    );
}
