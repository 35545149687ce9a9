//! The daemon's durable state: one trait per concern, each with a SQLite and a MariaDB
//! backend.
//!
//! The core never sees SQL: each part of it holds only the traits it uses, as
//! `Arc<dyn …>`, taken from [`Stores`]. Both backends are one generic [`SqlStore`]
//! (`sql.rs`) with its own migration set (`migrations/sqlite`, `migrations/mysql`),
//! run at start-up.

mod audit;
mod events;
mod keys;
#[cfg(test)]
pub mod memory;
mod receipts;
mod records;
mod retention;
mod rooms;
mod sessions;
mod sql;
mod streams;
#[cfg(test)]
mod tests;
mod users;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use audit::AuditLog;
pub use events::EventLog;
pub use keys::KeyStore;
pub use receipts::Receipts;
pub use records::*;
pub use retention::{COUNTED_TABLES, Retention};
pub use rooms::RoomIndex;
pub use sessions::SessionStore;
pub use sql::{Dialect, SqlStore};
pub use streams::UserStreams;
pub use users::UserStore;

use crate::config::{DatabaseSettings, DatabaseUrl};

/// A database failure; its text never reaches a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A value read back that cannot be what was written.
    #[error("database holds an invalid value: {0}")]
    Corrupt(String),
    /// One failure of a write that several callers shared.
    #[error(transparent)]
    Shared(std::sync::Arc<StoreError>),
    /// A writer task ended (the daemon is stopping).
    #[error("{0} has stopped")]
    Stopped(&'static str),
}

impl StoreError {
    /// Whether the database is down or did not answer in time (rather than refusing
    /// a statement or holding a bad value): the request may work again shortly.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(e) => matches!(
                e,
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::WorkerCrashed
            ),
            Self::Shared(e) => e.is_unavailable(),
            Self::Migrate(_) | Self::Corrupt(_) | Self::Stopped(_) => false,
        }
    }
}

/// The database as a whole, for `/ready` and logs.
#[async_trait]
pub trait StoreHealth: Send + Sync + 'static {
    /// `sqlite` or `mysql`.
    fn backend(&self) -> &'static str;

    /// A round trip to the database.
    async fn health(&self) -> Result<(), StoreError>;
}

#[async_trait]
impl<DB: Dialect> StoreHealth for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
{
    fn backend(&self) -> &'static str {
        DB::BACKEND
    }

    async fn health(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Every concern of one database, each as the trait its users hold.
#[derive(Clone)]
pub struct Stores {
    pub health: Arc<dyn StoreHealth>,
    pub keys: Arc<dyn KeyStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub users: Arc<dyn UserStore>,
    pub events: Arc<dyn EventLog>,
    pub rooms: Arc<dyn RoomIndex>,
    pub receipts: Arc<dyn Receipts>,
    pub streams: Arc<dyn UserStreams>,
    pub audit: Arc<dyn AuditLog>,
    pub retention: Arc<dyn Retention>,
}

impl Stores {
    /// Every concern served by one backend.
    pub fn of<S>(store: Arc<S>) -> Self
    where
        S: StoreHealth
            + KeyStore
            + SessionStore
            + UserStore
            + EventLog
            + RoomIndex
            + Receipts
            + UserStreams
            + AuditLog
            + Retention,
    {
        Self {
            health: store.clone(),
            keys: store.clone(),
            sessions: store.clone(),
            users: store.clone(),
            events: store.clone(),
            rooms: store.clone(),
            receipts: store.clone(),
            streams: store.clone(),
            audit: store.clone(),
            retention: store,
        }
    }
}

/// SQLite connections unless configured: one writes at a time, and each holds a page
/// cache and a worker thread (4 took 15–30 MB off a daemon with 10,000 open streams,
/// and logins were no slower than with 10).
const SQLITE_CONNECTIONS: u32 = 4;
/// Each SQLite connection's page cache, in KiB (`PRAGMA cache_size`; SQLite's own
/// default is 2,000). The file's pages stay in the system's page cache, so a miss
/// costs a read, not a disk access: a daemon with 10,000 open streams held 11–12 MB
/// less than with 2,000, and ingest was no slower (`bench/RESULTS.md`).
const SQLITE_CACHE_KIB: i64 = 256;
/// MariaDB connections unless configured.
const MYSQL_CONNECTIONS: u32 = 10;

/// How long a starting daemon waits for MariaDB to answer.
const START_WAIT: Duration = Duration::from_secs(30);

/// A MariaDB connection idle this long is pinged before it is used again.
const PING_WHEN_IDLE: Duration = Duration::from_secs(1);
/// Said on each MariaDB connection: a transaction left idle this long (its daemon hung
/// or cut off mid-recording) is rolled back, so the event log's lock, which every
/// daemon's recordings wait for, is not held until MariaDB drops the connection
/// (`wait_timeout`, hours). The daemon's own transactions never wait between
/// statements.
const IDLE_TRANSACTION_TIMEOUT: &str = "SET SESSION idle_transaction_timeout = 30";

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static MYSQL_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/mysql");

/// Connects to the configured database and runs its migrations.
pub async fn connect(settings: &DatabaseSettings) -> Result<Stores, StoreError> {
    Ok(match &settings.url {
        DatabaseUrl::Sqlite(url) => {
            let pool = settings.max_connections.unwrap_or(SQLITE_CONNECTIONS);
            Stores::of(Arc::new(open_sqlite(url, pool).await?))
        }
        DatabaseUrl::Mysql(url) => {
            let timeout = Duration::from_millis(settings.timeout_ms);
            Stores::of(Arc::new(
                open_mysql(
                    url,
                    settings.max_connections.unwrap_or(MYSQL_CONNECTIONS),
                    timeout,
                )
                .await?,
            ))
        }
    })
}

/// Opens (creating if missing) the SQLite database at `url` and migrates it.
async fn open_sqlite(
    url: &str,
    max_connections: u32,
) -> Result<SqlStore<sqlx::Sqlite>, StoreError> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: each commit survives a power loss (the events' own connection, below,
        // syncs its log after each recording instead).
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"));
    if let Some(parent) = options.get_filename().parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::Database(e.into()))?;
    }
    // A SQLite connection is a file handle in this process: pinging it before each
    // statement (sqlx's default) only costs a hand-off to its worker thread.
    let pool = |connections: u32, options: SqliteConnectOptions| {
        SqlitePoolOptions::new()
            .max_connections(connections)
            .test_before_acquire(false)
            .connect_with(options)
    };
    // From 2 connections on, one of them records and feeds the pushed events. A
    // connection drops its page cache whenever another one wrote, so the feed's
    // statements, taken in turn from one pool, read their pages again each time:
    // ingest side by side, 29–31k → 35–36k events/s. Being the events' own, that
    // connection commits without waiting for the disk, and a recording is made durable
    // by syncing the log's file (`SqlStore::sync_log`) while the feed already works on
    // it, which a pool shared with sessions and keys could not do.
    let others = pool(max_connections.saturating_sub(1).max(1), options.clone()).await?;
    SQLITE_MIGRATIONS.run(&others).await?;
    if max_connections <= 1 {
        return Ok(SqlStore::new(others));
    }
    let file = options.get_filename();
    let database_file = (file != Path::new(":memory:"))
        .then(|| std::path::absolute(file))
        .transpose()
        .map_err(|e| StoreError::Database(e.into()))?;
    let writer = pool(1, options.synchronous(SqliteSynchronous::Normal)).await?;
    Ok(SqlStore::with_writer(others, writer, database_file))
}

/// Connects to MariaDB at `url` and migrates the database (sqlx takes a lock, so
/// several daemons starting together migrate once).
async fn open_mysql(
    url: &SecretString,
    max_connections: u32,
    timeout: Duration,
) -> Result<SqlStore<sqlx::MySql>, StoreError> {
    let options = MySqlConnectOptions::from_str(url.expose_secret())?.charset("utf8mb4");
    // At start MariaDB may still be starting too: wait for it a while.
    let started = std::time::Instant::now();
    let pool = loop {
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections)
            // With MariaDB down a request waits this long for a connection, then
            // gets 503.
            .acquire_timeout(timeout)
            // Ping only a connection that sat idle a while (MariaDB may have gone
            // away meanwhile), not one in use a moment ago: a round trip per statement
            // is sqlx's default.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_WHEN_IDLE {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(|connection, _| {
                Box::pin(async move {
                    // MySQL has no such setting: say so, and go on without it.
                    let set = sqlx::query(IDLE_TRANSACTION_TIMEOUT).execute(&mut *connection);
                    if let Err(error) = set.await {
                        tracing::warn!(%error, "idle transactions are not rolled back");
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await;
        match pool {
            Ok(pool) => break pool,
            Err(error) if started.elapsed() < START_WAIT => {
                tracing::warn!(%error, "MariaDB does not answer yet; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    MYSQL_MIGRATIONS.run(&pool).await?;
    Ok(SqlStore::new(pool))
}
