//! Short-lived shared state: single-use tokens, counters with a window.
//!
//! Embedded mode keeps it in process ([`MemoryCache`]); production keeps it in Redis
//! ([`RedisCache`]) so several daemons share it. Both give the same guarantees, and
//! one conformance test suite runs against both.

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;

pub use self::memory::MemoryCache;
pub use self::redis::{RedisCache, manager_config as redis_manager_config};

/// A cache failure; its text never reaches a client.
#[derive(Debug, thiserror::Error)]
#[error("cache: {0}")]
pub struct CacheError(pub String);

/// Short-lived key-value state with expiry.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// `embedded` or `redis`, for logs and `/ready`.
    fn backend(&self) -> &'static str;

    /// Whether other daemons may share this cache, and with it the database: true for
    /// Redis. An embedded cache is one daemon's own, and that daemon is the only one.
    fn is_shared(&self) -> bool;

    /// A round trip to the cache.
    async fn health(&self) -> Result<(), CacheError>;

    /// Stores `value` under `key` for `ttl` unless the key exists; true if stored.
    async fn put_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, CacheError>;

    /// Stores `value` under `key` for `ttl`, replacing what was there.
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError>;

    /// Reads and deletes `key` atomically: of concurrent callers, one gets the value.
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;

    /// Reads `key` without consuming it.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;

    /// Reads each of `keys`, in order, in one round trip per few hundred keys.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, CacheError>;

    /// Deletes `key`; deleting a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), CacheError>;

    /// Deletes `key` only if it holds `value` (atomically); true if deleted.
    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, CacheError>;

    /// Sets `key`'s time to live; false if the key does not exist.
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError>;

    /// Sets `key`'s time to live only if it holds `value` (atomically); false if it
    /// does not (it expired, or holds another value).
    async fn expire_if(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError>;

    /// Adds `member` to the set at `key` and sets the set's time to live.
    async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> Result<(), CacheError>;

    /// Removes `member` from the set at `key`.
    async fn set_remove(&self, key: &str, member: &str) -> Result<(), CacheError>;

    /// The members of the set at `key` (empty if none).
    async fn set_members(&self, key: &str) -> Result<Vec<String>, CacheError>;

    /// Counts one hit on `key` in a fixed window of `window` that starts at the first
    /// hit; returns the hits so far and the time left in the window.
    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration), CacheError>;
}
