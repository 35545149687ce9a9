//! The one place the mode is chosen: embedded (the database and in-process state) or
//! Redis (shared by several daemons), for the cache, sessions and live streams alike.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::auth::Sessions;
use crate::auth::sessions::{CacheSessions, DatabaseSessions};
use crate::cache::{Cache, MemoryCache, RedisCache};
use crate::config::{DatabaseUrl, Settings};
use crate::live::{DatabaseLog, Live, RedisLog};
use crate::store::{self, Stores};

/// The daemon's state, connected.
#[derive(Clone)]
pub struct Backends {
    pub stores: Stores,
    pub cache: Arc<dyn Cache>,
    pub sessions: Arc<dyn Sessions>,
    pub live: Live,
}

impl Backends {
    /// Connects the database (running its migrations) and, when `redis.url` is set,
    /// Redis.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let stores = store::connect(&settings.database).await.with_context(|| {
            match &settings.database.url {
                DatabaseUrl::Sqlite(url) => {
                    format!("database.url: cannot open SQLite database `{url}`")
                }
                DatabaseUrl::Mysql(_) => "database.url: cannot connect to MariaDB".to_owned(),
            }
        })?;
        let session_max = Duration::from_secs(settings.auth.session_max_secs);
        Ok(match &settings.redis.url {
            None => Self {
                cache: Arc::new(MemoryCache::default()),
                sessions: Arc::new(DatabaseSessions::new(stores.sessions.clone())),
                live: Live::new(Arc::new(DatabaseLog::new(stores.streams.clone()))),
                stores,
            },
            Some(url) => {
                let prefix = &settings.redis.key_prefix;
                let timeout = Duration::from_millis(settings.redis.timeout_ms);
                let cache: Arc<dyn Cache> = Arc::new(
                    RedisCache::connect(url, prefix, timeout)
                        .await
                        .context("redis.url: cannot connect to Redis")?,
                );
                let log_id = stores
                    .events
                    .identity()
                    .await
                    .context("database: cannot read the event log's identity")?;
                let log = RedisLog::connect(url, prefix, &log_id, timeout)
                    .await
                    .context("redis.url: cannot connect to Redis")?;
                Self {
                    sessions: Arc::new(CacheSessions::new(cache.clone(), session_max)),
                    cache,
                    live: Live::new(Arc::new(log)),
                    stores,
                }
            }
        })
    }
}
