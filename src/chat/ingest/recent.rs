//! The events this daemon recorded and has not fed yet, kept in memory so the feeder
//! need not read back what it was just handed. Only a cache: the feed's queue in the
//! store says what is pending, and what is not here is read from the store.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::store::{EventLog, EventRecord, StoreError};

/// At most this many bytes of event JSON are kept; past it, the feeder reads from the
/// store (it is behind, or another daemon's feeder does the work).
const MAX_BYTES: usize = 64 << 20;

#[derive(Default)]
pub(super) struct Recent {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    events: BTreeMap<i64, EventRecord>,
    bytes: usize,
}

impl Recent {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps events just recorded, by their place in the log, while there is room.
    pub(super) fn keep(&self, events: impl IntoIterator<Item = (i64, EventRecord)>) {
        let mut inner = self.inner();
        for (seq, event) in events {
            if inner.bytes + size(&event) > MAX_BYTES {
                break;
            }
            inner.bytes += size(&event);
            if let Some(old) = inner.events.insert(seq, event) {
                inner.bytes -= size(&old);
            }
        }
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
                let kept = inner.events.split_off(&first);
                let dropped = std::mem::replace(&mut inner.events, kept);
                inner.bytes -= dropped.values().map(size).sum::<usize>();
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

    /// Forgets everything (nothing is pending).
    pub(super) fn clear(&self) {
        let mut inner = self.inner();
        inner.events.clear();
        inner.bytes = 0;
    }
}

fn size(event: &EventRecord) -> usize {
    event.json.json().get().len()
}
