//! The in-process cache of embedded mode.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Cache, CacheError};

/// Entries in a map guarded by a std `Mutex`: every operation is a short critical
/// section with no `.await` inside, so a tokio mutex would only add overhead.
#[derive(Debug, Default)]
pub struct MemoryCache {
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, (Vec<u8>, Instant)>,
    /// When the map next drops expired entries, so it cannot grow without bound.
    next_sweep: Option<Instant>,
}

impl Entries {
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut (Vec<u8>, Instant)> {
        if self
            .map
            .get(key)
            .is_some_and(|(_, expires)| *expires <= now)
        {
            self.map.remove(key);
        }
        self.map.get_mut(key)
    }

    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_none_or(|at| at <= now) {
            self.map.retain(|_, (_, expires)| *expires > now);
            self.next_sweep = Some(now + Duration::from_secs(30));
        }
    }
}

impl MemoryCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves the map consistent (every update is
        // a single insert or remove), so a poisoned lock is still usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Cache for MemoryCache {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn health(&self) -> Result<(), CacheError> {
        Ok(())
    }

    async fn put_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.sweep(now);
        if entries.live(key, now).is_some() {
            return Ok(false);
        }
        entries
            .map
            .insert(key.to_owned(), (value.to_vec(), now + ttl));
        Ok(true)
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut entries = self.lock();
        let live = entries.live(key, Instant::now()).is_some();
        Ok(if live {
            entries.map.remove(key).map(|(v, _)| v)
        } else {
            None
        })
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        Ok(self
            .lock()
            .live(key, Instant::now())
            .map(|(v, _)| v.clone()))
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.lock().map.remove(key);
        Ok(())
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration), CacheError> {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.sweep(now);
        let entry = match entries.live(key, now) {
            Some(entry) => entry,
            None => entries
                .map
                .entry(key.to_owned())
                .or_insert_with(|| (0u64.to_be_bytes().to_vec(), now + window)),
        };
        let count = counter(&entry.0) + 1;
        entry.0 = count.to_be_bytes().to_vec();
        Ok((count, entry.1.saturating_duration_since(now)))
    }
}

fn counter(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}
