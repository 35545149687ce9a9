//! Events pushed by the homeserver: recorded durably before Synapse gets its answer,
//! then fed, in order and once, to the room index and the live streams of the
//! ChatSender users who should see them.
//!
//! Recording wakes the feeder and returns: Synapse never waits for a delivery. What a
//! crash interrupts is still marked unfed and is fed at the next start; feeding an
//! event twice delivers it once (streams keep one entry per event and user).
//!
//! Ephemeral data (typing, read receipts) is not recorded: the feeder hands it on from
//! memory, and a crash loses what it had not handled (Synapse does not send it again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ruma::OwnedEventId;
use ruma::events::AnyTimelineEvent;
use ruma::serde::Raw;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

mod apply;
mod ephemeral;
mod lease;
mod members;
mod recent;
mod round;

use lease::LINGER;

use round::Round;

use super::event::{self, Ephemeral, RoomEvent};
use crate::cache::{Cache, CacheError};
use crate::identity::Namespace;
use crate::live::{Live, LiveError};
use crate::store::{
    EventLog, EventRecord, IncomingTransaction, Receipts, RoomIndex, StoreError, TransactionOutcome,
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
    #[error(
        "the feeder's lease ran out and another daemon's feeder holds it; that one feeds the rest"
    )]
    LeaseLost,
}

/// Events read from the log per round.
const BATCH: u32 = 1000;
/// How often the feeder looks for work nobody woke it for (another daemon's, a
/// failed round's).
const POLL: Duration = Duration::from_secs(5);
/// The feed runs on the runtime that answers Synapse, which on a one-core server is
/// one thread: it yields after this many events, so that a transaction that arrived
/// meanwhile is parsed and sent to the store first, and the feed's work fills the time
/// that recording waits for the database instead of coming before it.
const YIELD_EVERY: usize = 8;
/// Above this many joined members, a membership change is delivered to its target
/// only (see [`Ingest::apply`]).
pub const LARGE_ROOM: usize = 1000;
/// Records transactions and feeds their events on.
pub struct Ingest {
    events: Arc<dyn EventLog>,
    rooms: Arc<dyn RoomIndex>,
    receipts: Arc<dyn Receipts>,
    cache: Arc<dyn Cache>,
    live: Live,
    namespace: Namespace,
    /// Rung by each recording; the feeder waits on it.
    wake: Notify,
    /// Ephemeral data received and not yet handed on (std mutex: never held across an
    /// await).
    ephemeral: Mutex<Vec<Ephemeral>>,
    /// One feed at a time in this daemon; true while this feeder keeps its lease
    /// between feeds ([`Ingest::run`]).
    running: tokio::sync::Mutex<bool>,
    /// This daemon's feeder, as named in the lease.
    holder: String,
    /// Who is in each room, as fed (valid while no other daemon's feeder ran).
    members: members::Members,
    /// Events recorded here and not fed yet.
    recent: recent::Recent,
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
        receipts: Arc<dyn Receipts>,
        cache: Arc<dyn Cache>,
        live: Live,
        namespace: Namespace,
        give_up_after: Duration,
    ) -> Self {
        let recent = recent::Recent::new(!cache.is_shared());
        Self {
            events,
            rooms,
            receipts,
            cache,
            live,
            namespace,
            wake: Notify::new(),
            ephemeral: Mutex::default(),
            running: tokio::sync::Mutex::new(false),
            holder: crate::keys::encode_base64url(&rand::random::<[u8; 16]>()),
            members: members::Members::default(),
            recent,
            failures: Mutex::default(),
            give_up_after,
        }
    }

    /// Records a pushed transaction once, durably, and wakes the feeder. An event
    /// that is not a room event is logged and skipped; the rest are recorded. The
    /// transaction's ephemeral data is queued for the feeder. The feeder is woken as
    /// soon as the recording has committed and may work on its events while the store
    /// makes them survive a power loss ([`EventLog::sync`]); this returns only after.
    pub async fn record<E>(
        &self,
        txn_id: &str,
        body_sha256: [u8; 32],
        events: &[Raw<AnyTimelineEvent>],
        ephemeral: &[Raw<E>],
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
        let recording = self.recent.begin();
        let outcome = self.events.record_transaction(&txn).await?;
        match &outcome {
            TransactionOutcome::Duplicate => {
                recording.keep([]);
                metrics::counter!("chatsender_transactions_duplicate_total").increment(1);
                tracing::info!(txn_id, "transaction already processed");
            }
            TransactionOutcome::Recorded { new } => {
                let count = new.len();
                metrics::counter!("chatsender_events_processed_total").increment(count as u64);
                tracing::debug!(txn_id, events = count, "transaction recorded");
                let mut events: Vec<_> = txn.events.into_iter().map(Some).collect();
                recording.keep(
                    new.iter()
                        .filter_map(|&(seq, i)| Some((seq, events.get_mut(i)?.take()?))),
                );
                let ephemeral = ephemeral.iter().flat_map(event::ephemeral);
                self.queued().extend(ephemeral);
                self.wake.notify_one();
            }
        }
        // A duplicate too: its first recording may have committed and then failed to
        // sync.
        self.events.sync().await?;
        Ok(outcome)
    }

    /// Feeds events as they are recorded until `stop`: woken by each recording, and
    /// every few seconds for what another daemon left or a failed round kept.
    pub async fn run(&self, stop: CancellationToken) {
        loop {
            self.run_ephemeral().await;
            if let Err(error) = self.feed_pending(true).await {
                tracing::warn!(error = %error, "could not feed events; trying again");
            }
            // The lease is kept from one recording's feed to the next while they come
            // within `LINGER`, then let go of for other daemons' feeders.
            tokio::select! {
                () = stop.cancelled() => {}
                () = self.wake.notified() => continue,
                () = tokio::time::sleep(LINGER) => {}
            }
            if let Err(error) = self.let_go().await {
                tracing::warn!(error = %error, "could not let go of the feeder's lease");
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
        self.feed_pending(false).await
    }

    async fn feed(&self) -> Result<usize, FeedError> {
        let mut done = 0;
        loop {
            // Alone, the feeder knows what it was handed; else it reads the queue.
            let mut shared_read = false;
            let pending = match self.recent.pending(BATCH) {
                Some(pending) => pending,
                None => {
                    shared_read = self.cache.is_shared();
                    let mark = self.recent.mark();
                    let pending = self.events.pending(BATCH).await?;
                    if pending.is_empty() {
                        self.recent.settle(mark);
                    }
                    pending
                }
            };
            if pending.is_empty() {
                return Ok(done);
            }
            let records = self.recent.take(&*self.events, &pending).await?;
            let mut round = Round::default();
            let mut failure = None;
            for (n, (seq, record)) in records.iter().enumerate() {
                if n % YIELD_EVERY == YIELD_EVERY - 1 {
                    tokio::task::yield_now().await;
                }
                let event = RoomEvent::from_record(record);
                round.place = *seq;
                match self.apply(&event, &mut round).await {
                    Ok(()) => round.applied.push(*seq),
                    Err(error) if self.give_up(&record.event_id) => {
                        self.skip(&record.event_id, &error);
                        round.applied.push(*seq);
                    }
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
                // Filling a room delivers more than a round should hold: write what
                // is held and go on (the round is marked fed only at its end).
                if round.is_full() {
                    if let Err(error) = self.flush(&mut round).await {
                        failure = Some(error);
                        break;
                    }
                    self.renew().await?;
                }
            }
            // Keep the progress made, even when an event stops the batch.
            let delivered = self.flush(&mut round).await;
            self.renew().await?;
            self.events.mark_fed(&round.applied).await?;
            self.recent.fed(&round.applied);
            // Fed: their failures are over (`applied` is the batch's first events). An
            // event whose delivery fails keeps its first failure's time until then.
            self.forget_failures(records.iter().take(round.applied.len()));
            metrics::counter!("chatsender_events_fed_total").increment(round.applied.len() as u64);
            done += round.applied.len();
            if let Some(error) = failure.or(delivered.err()) {
                return Err(error);
            }
            // With a shared cache the queue was read, and a short read found all there
            // was: what this daemon recorded since has rung `wake`, and what another
            // daemon recorded, its feeder feeds once this one lets go of the lease (or
            // this one, at its next feed). Reading the queue again would find nothing.
            if shared_read && pending.len() < BATCH as usize {
                return Ok(done);
            }
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedEventId, Instant>> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn forget_failures<'a>(&self, fed: impl Iterator<Item = &'a (i64, EventRecord)>) {
        let mut failures = self.failures();
        if !failures.is_empty() {
            for (_, record) in fed {
                failures.remove(&record.event_id);
            }
        }
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
}

#[cfg(test)]
mod tests;
