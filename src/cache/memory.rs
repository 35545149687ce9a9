//! The in-process cache of embedded mode.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Cache, CacheError};

/// Entries in a map guarded by a std `Mutex`: every operation is a short critical
/// section with no `.await` inside, so a tokio mutex would only add overhead.
#[derive(Debug, Default)]
pub struct MemoryCache {
    entries: Mutex<Entries>,
    /// Whether it says it is shared ([`Cache::is_shared`]): a test's stand-in for Redis.
    shared: bool,
}

#[derive(Debug)]
enum Value {
    Bytes(Vec<u8>),
    Counter(u64),
    Set(BTreeSet<String>),
}

#[derive(Debug)]
struct Entry {
    value: Value,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, Entry>,
    /// When the map next drops expired entries, so it cannot grow without bound.
    next_sweep: Option<Instant>,
}

impl Entries {
    /// The entry at `key` unless it has expired (an expired one is dropped).
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.map.get(key).is_some_and(|e| e.expires <= now) {
            self.map.remove(key);
        }
        self.map.get_mut(key)
    }

    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_none_or(|at| at <= now) {
            self.map.retain(|_, e| e.expires > now);
            self.next_sweep = Some(now + Duration::from_secs(30));
        }
    }

    /// The live entry at `key`, or a new one made by `value` expiring after `ttl`.
    fn entry(
        &mut self,
        key: &str,
        now: Instant,
        ttl: Duration,
        value: fn() -> Value,
    ) -> &mut Entry {
        self.sweep(now);
        if self.live(key, now).is_none() {
            self.map.insert(
                key.to_owned(),
                Entry {
                    value: value(),
                    expires: now + ttl,
                },
            );
        }
        self.map.get_mut(key).expect("inserted above")
    }
}

impl MemoryCache {
    /// A cache that says it is shared with other daemons, as Redis is, so that a test
    /// takes the paths a daemon beside others takes.
    #[cfg(test)]
    pub fn shared() -> Self {
        Self {
            shared: true,
            ..Self::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves the map consistent (every update is
        // a single insert, remove or field write), so a poisoned lock is still usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn wrong_type(key: &str) -> CacheError {
    CacheError(format!("{key}: holds another kind of value"))
}

#[async_trait]
impl Cache for MemoryCache {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn is_shared(&self) -> bool {
        self.shared
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
        let entry = Entry {
            value: Value::Bytes(value.to_vec()),
            expires: now + ttl,
        };
        entries.map.insert(key.to_owned(), entry);
        Ok(true)
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.sweep(now);
        let entry = Entry {
            value: Value::Bytes(value.to_vec()),
            expires: now + ttl,
        };
        entries.map.insert(key.to_owned(), entry);
        Ok(())
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut entries = self.lock();
        if entries.live(key, Instant::now()).is_none() {
            return Ok(None);
        }
        match entries.map.remove(key).map(|e| e.value) {
            Some(Value::Bytes(bytes)) => Ok(Some(bytes)),
            _ => Err(wrong_type(key)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        match self.lock().live(key, Instant::now()).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Bytes(bytes)) => Ok(Some(bytes.clone())),
            Some(_) => Err(wrong_type(key)),
        }
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
        let mut entries = self.lock();
        let now = Instant::now();
        keys.iter()
            .map(|key| match entries.live(key, now).map(|e| &e.value) {
                None => Ok(None),
                Some(Value::Bytes(bytes)) => Ok(Some(bytes.clone())),
                Some(_) => Err(wrong_type(key)),
            })
            .collect()
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.lock().map.remove(key);
        Ok(())
    }

    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, CacheError> {
        let mut entries = self.lock();
        let holds = matches!(
            entries.live(key, Instant::now()).map(|e| &e.value),
            Some(Value::Bytes(v)) if v == value
        );
        if holds {
            entries.map.remove(key);
        }
        Ok(holds)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        let now = Instant::now();
        Ok(self
            .lock()
            .live(key, now)
            .map(|e| e.expires = now + ttl)
            .is_some())
    }

    async fn expire_if(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let now = Instant::now();
        let mut entries = self.lock();
        Ok(match entries.live(key, now) {
            Some(entry) if matches!(&entry.value, Value::Bytes(v) if v == value) => {
                entry.expires = now + ttl;
                true
            }
            _ => false,
        })
    }

    async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> Result<(), CacheError> {
        let now = Instant::now();
        let mut entries = self.lock();
        let entry = entries.entry(key, now, ttl, || Value::Set(BTreeSet::new()));
        entry.expires = now + ttl;
        match &mut entry.value {
            Value::Set(set) => {
                set.insert(member.to_owned());
                Ok(())
            }
            _ => Err(wrong_type(key)),
        }
    }

    async fn set_remove(&self, key: &str, member: &str) -> Result<(), CacheError> {
        match self.lock().live(key, Instant::now()).map(|e| &mut e.value) {
            None => Ok(()),
            Some(Value::Set(set)) => {
                set.remove(member);
                Ok(())
            }
            Some(_) => Err(wrong_type(key)),
        }
    }

    async fn set_members(&self, key: &str) -> Result<Vec<String>, CacheError> {
        match self.lock().live(key, Instant::now()).map(|e| &e.value) {
            None => Ok(Vec::new()),
            Some(Value::Set(set)) => Ok(set.iter().cloned().collect()),
            Some(_) => Err(wrong_type(key)),
        }
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration), CacheError> {
        let now = Instant::now();
        let mut entries = self.lock();
        let entry = entries.entry(key, now, window, || Value::Counter(0));
        let Value::Counter(count) = &mut entry.value else {
            return Err(wrong_type(key));
        };
        *count += 1;
        Ok((*count, entry.expires.saturating_duration_since(now)))
    }
}
