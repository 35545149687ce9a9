//! Where sessions live: the database in embedded mode (so `keygen revoke`, writing
//! the same database, ends them at once), Redis in production (shared by daemons).
//! Which one is decided once, at start-up.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::AuthError;
use super::journal::GroupCommit;
use crate::cache::Cache;
use crate::store::{KeyRecord, KeyStore, SessionRecord, SessionStore};
use crate::time::{ms, now_ms};

/// Session storage for both modes.
#[async_trait]
pub trait Sessions: Send + Sync + 'static {
    /// Stores a new session.
    async fn create(&self, session: &SessionRecord, idle: Duration) -> Result<(), AuthError>;

    /// The session, unless it is unknown or its key was revoked.
    async fn get(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRecord>, AuthError>;

    /// Of these sessions, those `get` would return, in any order; in a few round trips
    /// for thousands. One whose entry cannot be read is left out (logged), so it ends
    /// its own streams, not every other session's check.
    async fn get_many(&self, token_hashes: &[[u8; 32]]) -> Result<Vec<SessionRecord>, AuthError>;

    /// Records activity at `now` (ms): the idle lifetime starts again.
    async fn touch(
        &self,
        session: &SessionRecord,
        now: i64,
        idle: Duration,
    ) -> Result<(), AuthError>;

    /// Whether `key` is refused now, read where this mode refuses its sessions. A
    /// login asks after it made its session: a revocation that raced the login then
    /// either ended that session or is seen here.
    async fn key_refused(&self, key: &KeyRecord, keys: &dyn KeyStore) -> Result<bool, AuthError>;

    /// Ends one session; false if there was none.
    async fn delete(&self, token_hash: &[u8; 32]) -> Result<bool, AuthError>;

    /// Ends every session of `key_id` and refuses its sessions from now on; returns
    /// how many sessions were alive.
    async fn end_key(&self, key_id: &str, now: i64, idle: Duration) -> Result<u64, AuthError>;

    /// How many sessions of `key_id` are alive at `now`.
    async fn count_live(&self, key_id: &str, now: i64, idle: Duration) -> Result<u64, AuthError>;
}

/// Sessions in the database.
pub struct DatabaseSessions {
    store: Arc<dyn SessionStore>,
    /// New sessions, written together with those of concurrent logins.
    created: GroupCommit<SessionRecord>,
}

impl DatabaseSessions {
    /// Sessions in the database's `sessions` table (starts the writer of new sessions:
    /// call it on the runtime).
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        let writer = store.clone();
        let created = GroupCommit::start("the session writer", move |sessions| {
            let store = writer.clone();
            async move { store.create_sessions(&sessions).await }
        });
        Self { store, created }
    }
}

#[async_trait]
impl Sessions for DatabaseSessions {
    async fn create(&self, session: &SessionRecord, _idle: Duration) -> Result<(), AuthError> {
        Ok(self.created.write(session.clone()).await?)
    }

    async fn get(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRecord>, AuthError> {
        Ok(self.store.session(token_hash).await?)
    }

    async fn get_many(&self, token_hashes: &[[u8; 32]]) -> Result<Vec<SessionRecord>, AuthError> {
        Ok(self.store.sessions(token_hashes).await?)
    }

    async fn touch(
        &self,
        session: &SessionRecord,
        now: i64,
        idle: Duration,
    ) -> Result<(), AuthError> {
        // One write per request would serialize every API call on SQLite's write
        // lock; recording activity every 1/20th of the idle lifetime is precise enough.
        if now - session.last_seen_at >= ms(idle) / 20 {
            self.store.touch_session(&session.token_hash, now).await?;
        }
        Ok(())
    }

    async fn key_refused(&self, key: &KeyRecord, keys: &dyn KeyStore) -> Result<bool, AuthError> {
        // `get` joins on the key: its revocation is what refuses the sessions.
        let now = keys.key_by_fingerprint(&key.fingerprint).await?;
        Ok(now.is_none_or(|k| k.revoked_at.is_some()))
    }

    async fn delete(&self, token_hash: &[u8; 32]) -> Result<bool, AuthError> {
        Ok(self.store.delete_session(token_hash).await?)
    }

    async fn end_key(&self, key_id: &str, now: i64, idle: Duration) -> Result<u64, AuthError> {
        // The key is already revoked, which alone refuses its sessions (`get` joins
        // on it); deleting them reports how many were alive.
        let live = self
            .store
            .count_live_sessions(key_id, now, ms(idle))
            .await?;
        self.store.delete_sessions_of_key(key_id).await?;
        Ok(live)
    }

    async fn count_live(&self, key_id: &str, now: i64, idle: Duration) -> Result<u64, AuthError> {
        Ok(self
            .store
            .count_live_sessions(key_id, now, ms(idle))
            .await?)
    }
}

/// Sessions in the shared cache: `session:{hash}` expiring with the idle lifetime,
/// `key_sessions:{key_id}` listing them, `revoked:{key_id}` refusing them.
pub struct CacheSessions {
    cache: Arc<dyn Cache>,
    session_max: Duration,
}

impl CacheSessions {
    /// Sessions in `cache`, none lasting longer than `session_max`.
    pub fn new(cache: Arc<dyn Cache>, session_max: Duration) -> Self {
        Self { cache, session_max }
    }
}

#[derive(Serialize, Deserialize)]
struct CachedSession {
    key_id: String,
    user_id: String,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
}

fn session_key(token_hash: &[u8; 32]) -> String {
    format!("session:{}", hex::encode(token_hash))
}

fn revoked_key(key_id: &str) -> String {
    format!("revoked:{key_id}")
}

fn key_sessions(key_id: &str) -> String {
    format!("key_sessions:{key_id}")
}

/// The time to live of a session's cache entry: the idle lifetime, cut short by the
/// absolute end.
fn ttl(session: &SessionRecord, now: i64, idle: Duration) -> Duration {
    let left = u64::try_from(session.expires_at - now).unwrap_or(0);
    idle.min(Duration::from_millis(left))
        .max(Duration::from_millis(1))
}

fn corrupt(reason: impl std::fmt::Display) -> AuthError {
    AuthError::Corrupt {
        what: "session",
        reason: reason.to_string(),
    }
}

fn encode(session: &SessionRecord) -> Result<Vec<u8>, AuthError> {
    serde_json::to_vec(&CachedSession {
        key_id: session.key_id.clone(),
        user_id: session.user_id.to_string(),
        created_at: session.created_at,
        last_seen_at: session.last_seen_at,
        expires_at: session.expires_at,
    })
    .map_err(corrupt)
}

/// A session read from its cache entry.
fn decode(token_hash: &[u8; 32], bytes: &[u8]) -> Result<SessionRecord, AuthError> {
    let cached: CachedSession = serde_json::from_slice(bytes).map_err(corrupt)?;
    Ok(SessionRecord {
        token_hash: *token_hash,
        key_id: cached.key_id,
        user_id: cached.user_id.try_into().map_err(corrupt)?,
        created_at: cached.created_at,
        // The entry's time to live is the idle clock (`touch` restarts it): an entry
        // that is still there has not been idle too long.
        last_seen_at: now_ms(),
        expires_at: cached.expires_at,
    })
}

#[async_trait]
impl Sessions for CacheSessions {
    async fn create(&self, session: &SessionRecord, idle: Duration) -> Result<(), AuthError> {
        let ttl = ttl(session, session.created_at, idle);
        self.cache
            .set_add(
                &key_sessions(&session.key_id),
                &hex::encode(session.token_hash),
                self.session_max,
            )
            .await?;
        let stored = self
            .cache
            .put_if_absent(&session_key(&session.token_hash), &encode(session)?, ttl)
            .await?;
        if !stored {
            return Err(corrupt("a session with this token exists already"));
        }
        Ok(())
    }

    async fn get(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRecord>, AuthError> {
        let Some(bytes) = self.cache.get(&session_key(token_hash)).await? else {
            return Ok(None);
        };
        let session = decode(token_hash, &bytes)?;
        if self
            .cache
            .get(&revoked_key(&session.key_id))
            .await?
            .is_some()
        {
            return Ok(None);
        }
        Ok(Some(session))
    }

    async fn get_many(&self, token_hashes: &[[u8; 32]]) -> Result<Vec<SessionRecord>, AuthError> {
        let keys: Vec<String> = token_hashes.iter().map(session_key).collect();
        let mut sessions = Vec::new();
        for (hash, bytes) in token_hashes.iter().zip(self.cache.get_many(&keys).await?) {
            let Some(bytes) = bytes else { continue };
            match decode(hash, &bytes) {
                Ok(session) => sessions.push(session),
                Err(error) => tracing::warn!(%error, "a session entry cannot be read: ending it"),
            }
        }
        // A revoked key's sessions are refused, as by `get`.
        let mut key_ids: Vec<String> = sessions.iter().map(|s| s.key_id.clone()).collect();
        key_ids.sort_unstable();
        key_ids.dedup();
        let markers: Vec<String> = key_ids.iter().map(|k| revoked_key(k)).collect();
        let revoked: HashSet<String> = key_ids
            .into_iter()
            .zip(self.cache.get_many(&markers).await?)
            .filter_map(|(key_id, marker)| marker.map(|_| key_id))
            .collect();
        sessions.retain(|s| !revoked.contains(&s.key_id));
        Ok(sessions)
    }

    async fn touch(
        &self,
        session: &SessionRecord,
        now: i64,
        idle: Duration,
    ) -> Result<(), AuthError> {
        self.cache
            .expire(&session_key(&session.token_hash), ttl(session, now, idle))
            .await?;
        Ok(())
    }

    async fn key_refused(&self, key: &KeyRecord, _keys: &dyn KeyStore) -> Result<bool, AuthError> {
        // The marker `get` refuses by; a revocation puts it before it revokes the key
        // in the database, so it is seen no later than the database's.
        let marker = self.cache.get(&revoked_key(&key.key_id)).await?;
        Ok(marker.is_some())
    }

    async fn delete(&self, token_hash: &[u8; 32]) -> Result<bool, AuthError> {
        let key = session_key(token_hash);
        let existed = self.cache.get(&key).await?;
        self.cache.delete(&key).await?;
        if let Some(bytes) = existed {
            if let Ok(cached) = serde_json::from_slice::<CachedSession>(&bytes) {
                self.cache
                    .set_remove(&key_sessions(&cached.key_id), &hex::encode(token_hash))
                    .await?;
            }
            return Ok(true);
        }
        Ok(false)
    }

    async fn end_key(&self, key_id: &str, now: i64, idle: Duration) -> Result<u64, AuthError> {
        // Refuse first, so a session created while this runs is refused too; the
        // marker outlives every session the key could have.
        self.cache
            .put(&revoked_key(key_id), b"1", self.session_max)
            .await?;
        let live = self.count_live(key_id, now, idle).await?;
        for hash in self.cache.set_members(&key_sessions(key_id)).await? {
            self.cache.delete(&format!("session:{hash}")).await?;
        }
        self.cache.delete(&key_sessions(key_id)).await?;
        Ok(live)
    }

    async fn count_live(&self, key_id: &str, _now: i64, _idle: Duration) -> Result<u64, AuthError> {
        let mut live = 0;
        for hash in self.cache.set_members(&key_sessions(key_id)).await? {
            // Entries expire with their session, so existing means alive.
            if self.cache.get(&format!("session:{hash}")).await?.is_some() {
                live += 1;
            }
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::MemoryCache;

    #[tokio::test]
    async fn an_unreadable_cache_entry_leaves_only_its_own_session_out() {
        let cache = Arc::new(MemoryCache::default());
        let sessions = CacheSessions::new(cache.clone(), Duration::from_secs(3600));
        let now = now_ms();
        let good = SessionRecord {
            token_hash: [1; 32],
            key_id: "k1".into(),
            user_id: "@cs_a:x".try_into().expect("user id"),
            created_at: now,
            last_seen_at: now,
            expires_at: now + 3_600_000,
        };
        sessions
            .create(&good, Duration::from_secs(60))
            .await
            .expect("create");
        let bad = [2; 32];
        cache
            .put(&session_key(&bad), b"not json", Duration::from_secs(60))
            .await
            .expect("put");
        let found = sessions.get_many(&[good.token_hash, bad, [3; 32]]).await;
        let found: Vec<[u8; 32]> = found
            .expect("the readable ones")
            .iter()
            .map(|s| s.token_hash)
            .collect();
        assert_eq!(found, [good.token_hash]);
    }
}
