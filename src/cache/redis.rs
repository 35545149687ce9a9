//! The Redis cache of production: shared by every daemon.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use secrecy::{ExposeSecret, SecretString};

use super::{Cache, CacheError};

/// A Redis connection (reconnecting on failure) and the prefix of every key.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl From<redis::RedisError> for CacheError {
    fn from(e: redis::RedisError) -> Self {
        CacheError(e.to_string())
    }
}

/// INCR that starts the window's expiry on the first hit; returns (count, ms left).
static HIT_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
",
    )
});

/// Keys read by one MGET: a reply of a few hundred values keeps Redis responsive.
const MGET_CHUNK: usize = 500;

/// DEL if the value matches.
static DELETE_IF: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});

/// PEXPIRE if the value matches.
static EXPIRE_IF: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
",
    )
});

/// Commands and reconnects bounded by `timeout`: with Redis down a request fails
/// within about that long instead of retrying for seconds.
pub fn manager_config(timeout: Duration) -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(timeout)
}

impl RedisCache {
    /// Connects and checks the server answers; a command that takes longer than
    /// `timeout` (connecting included) fails.
    pub async fn connect(
        url: &SecretString,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Self, CacheError> {
        let client = redis::Client::open(url.expose_secret())?;
        let conn = ConnectionManager::new_with_config(client, manager_config(timeout)).await?;
        let cache = Self {
            conn,
            prefix: prefix.to_owned(),
        };
        cache.health().await?;
        Ok(cache)
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

#[async_trait]
impl Cache for RedisCache {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn health(&self) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    async fn put_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let mut conn = self.conn.clone();
        let ms = millis(ttl);
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut conn = self.conn.clone();
        Ok(conn.get_del(self.key(key)).await?)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut conn = self.conn.clone();
        Ok(conn.get(self.key(key)).await?)
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
        let mut conn = self.conn.clone();
        let mut values = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MGET_CHUNK) {
            let mut mget = redis::cmd("MGET");
            for key in chunk {
                mget.arg(self.key(key));
            }
            let got: Vec<Option<Vec<u8>>> = mget.query_async(&mut conn).await?;
            values.extend(got);
        }
        Ok(values)
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let _: u64 = conn.del(self.key(key)).await?;
        Ok(())
    }

    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, CacheError> {
        let mut conn = self.conn.clone();
        let deleted: u64 = DELETE_IF
            .key(self.key(key))
            .arg(value)
            .invoke_async(&mut conn)
            .await?;
        Ok(deleted == 1)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        let mut conn = self.conn.clone();
        Ok(conn.pexpire(self.key(key), millis(ttl)).await?)
    }

    async fn expire_if(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let mut conn = self.conn.clone();
        let renewed: u64 = EXPIRE_IF
            .key(self.key(key))
            .arg(value)
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await?;
        Ok(renewed == 1)
    }

    async fn set_add(&self, key: &str, member: &str, ttl: Duration) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let key = self.key(key);
        let _: () = redis::pipe()
            .atomic()
            .sadd(&key, member)
            .ignore()
            .pexpire(&key, millis(ttl))
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn set_remove(&self, key: &str, member: &str) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let _: u64 = conn.srem(self.key(key), member).await?;
        Ok(())
    }

    async fn set_members(&self, key: &str) -> Result<Vec<String>, CacheError> {
        let mut conn = self.conn.clone();
        Ok(conn.smembers(self.key(key)).await?)
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, Duration), CacheError> {
        let mut conn = self.conn.clone();
        let ms = millis(window);
        let (count, left): (u64, i64) = HIT_SCRIPT
            .key(self.key(key))
            .arg(ms)
            .invoke_async(&mut conn)
            .await?;
        Ok((
            count,
            Duration::from_millis(u64::try_from(left).unwrap_or(0)),
        ))
    }
}

/// A duration in whole milliseconds, at least 1 (Redis refuses 0).
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}
