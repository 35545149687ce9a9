//! The events this daemon recorded and has not fed yet, kept in memory so the feeder
//! need not read back what it was just handed. The feed's queue in the store says what
//! is pending, and what is not here is read from the store.
//!
//! Where this daemon is the only one (an embedded cache), what is kept here can also
//! say what is pending, and the feeder need not read the queue: once a read of the
//! queue found nothing, every event recorded since is kept here, unless a recording
//! failed or did not fit, or a round of feeding failed, which sends the feeder back to
//! the queue.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::store::{EventLog, EventRecord, StoreError};

/// At most this many bytes of event JSON are kept; past it, the feeder reads from the
/// store (it is behind, or another daemon's feeder does the work).
const MAX_BYTES: usize = 64 << 20;

pub(super) struct Recent {
    inner: Mutex<Inner>,
    /// Whether this daemon is the only one recording into the log, so that what it
    /// keeps can be all there is to feed.
    alone: bool,
}

#[derive(Default)]
struct Inner {
    events: BTreeMap<i64, EventRecord>,
    bytes: usize,
    /// Recordings begun and not yet kept or given up.
    recording: usize,
    /// Whether `events` holds every recorded event not fed yet (never unless `alone`).
    complete: bool,
    /// Counts the times `complete` was lost, so that a read of the queue begun before
    /// a loss cannot restore it.
    losses: u64,
    /// The newest place in the log fed here: an event at or below it is fed, and is
    /// not kept again (its recording may finish after its feeding).
    fed_through: Option<i64>,
}

/// A feed in progress: unless it ends with [`Feeding::done`] (on an error, or when its
/// future is dropped), events it took may be neither fed nor kept any more.
pub(super) struct Feeding<'a> {
    recent: &'a Recent,
    done: bool,
}

/// Taken before the feeder reads the queue; see [`Recent::settle`].
pub(super) struct Mark {
    losses: u64,
    newest: Option<i64>,
}

/// One recording in progress: kept with [`Recording::keep`], or, dropped without,
/// given up (it may have committed).
pub(super) struct Recording<'a> {
    recent: &'a Recent,
    kept: bool,
}

impl Recent {
    /// `alone`: whether this daemon is the only one recording into the log.
    pub(super) fn new(alone: bool) -> Self {
        Self {
            inner: Mutex::default(),
            alone,
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a recording about to begin; it must end in [`Recording::keep`].
    pub(super) fn begin(&self) -> Recording<'_> {
        self.inner().recording += 1;
        Recording {
            recent: self,
            kept: false,
        }
    }

    /// Notes a feed about to begin; see [`Feeding`].
    pub(super) fn feeding(&self) -> Feeding<'_> {
        Feeding {
            recent: self,
            done: false,
        }
    }

    /// The first `limit` places pending, oldest first, when what is kept is all there
    /// is to feed; `None` when the queue must be read. Not while a recording is in
    /// progress: one that committed before another may keep its events after it.
    pub(super) fn pending(&self, limit: u32) -> Option<Vec<i64>> {
        let inner = self.inner();
        (inner.complete && inner.recording == 0).then(|| {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            inner.events.keys().take(limit).copied().collect()
        })
    }

    /// Before a read of the queue, for [`Recent::settle`].
    pub(super) fn mark(&self) -> Mark {
        let inner = self.inner();
        Mark {
            losses: inner.losses,
            newest: inner.events.keys().next_back().copied(),
        }
    }

    /// After a read of the queue begun at `mark` found nothing pending: what was kept
    /// then had committed, so it is fed, and every event recorded since is kept here
    /// unless `complete` was lost in the meantime.
    pub(super) fn settle(&self, mark: Mark) {
        let mut inner = self.inner();
        if let Some(newest) = mark.newest {
            inner.drop_before(newest + 1);
        }
        if self.alone && inner.losses == mark.losses {
            inner.complete = true;
        }
    }

    /// Events at `seqs` were fed (in order).
    pub(super) fn fed(&self, seqs: &[i64]) {
        if let Some(&last) = seqs.last() {
            let mut inner = self.inner();
            inner.fed_through = inner.fed_through.max(Some(last));
        }
    }

    /// What is kept may no longer be all there is to feed: the feeder reads the queue
    /// until a read finds it empty.
    pub(super) fn lose(&self) {
        self.inner().lose();
    }

    /// Forgets what is kept: another daemon's feeder feeds it.
    pub(super) fn clear(&self) {
        let mut inner = self.inner();
        inner.events.clear();
        inner.bytes = 0;
        inner.lose();
    }

    /// The events at `seqs` (pending, oldest first), from memory or else from the
    /// store. What is kept from before the first of them was fed elsewhere and is
    /// dropped.
    pub(super) async fn take(
        &self,
        log: &dyn EventLog,
        seqs: &[i64],
    ) -> Result<Vec<(i64, EventRecord)>, StoreError> {
        let mut found = Vec::with_capacity(seqs.len());
        let mut missing = Vec::new();
        {
            let mut inner = self.inner();
            if let Some(&first) = seqs.first() {
                inner.drop_before(first);
            }
            for &seq in seqs {
                match inner.events.remove(&seq) {
                    Some(event) => {
                        inner.bytes -= size(&event);
                        found.push((seq, event));
                    }
                    None => missing.push(seq),
                }
            }
        }
        if !missing.is_empty() {
            found.extend(log.events_at(&missing).await?);
            found.sort_unstable_by_key(|(seq, _)| *seq);
        }
        Ok(found)
    }
}

impl Inner {
    /// Drops what is kept below `seq`.
    fn drop_before(&mut self, seq: i64) {
        let kept = self.events.split_off(&seq);
        let dropped = std::mem::replace(&mut self.events, kept);
        self.bytes -= dropped.values().map(size).sum::<usize>();
    }

    fn lose(&mut self) {
        self.complete = false;
        self.losses += 1;
    }
}

impl Recording<'_> {
    /// Keeps the events just recorded, by their place in the log, while there is
    /// room; past it, what is kept is no longer all there is to feed.
    pub(super) fn keep(mut self, events: impl IntoIterator<Item = (i64, EventRecord)>) {
        self.kept = true;
        let mut inner = self.recent.inner();
        for (seq, event) in events {
            if inner.fed_through >= Some(seq) {
                continue;
            }
            if inner.bytes + size(&event) > MAX_BYTES {
                inner.lose();
                break;
            }
            inner.bytes += size(&event);
            if let Some(old) = inner.events.insert(seq, event) {
                inner.bytes -= size(&old);
            }
        }
    }
}

impl Feeding<'_> {
    /// The feed ended well.
    pub(super) fn done(mut self) {
        self.done = true;
    }
}

impl Drop for Feeding<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.recent.lose();
        }
    }
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        let mut inner = self.recent.inner();
        inner.recording -= 1;
        if !self.kept {
            inner.lose();
        }
    }
}

fn size(event: &EventRecord) -> usize {
    event.json.json().get().len()
}
