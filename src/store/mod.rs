//! The daemon's durable state, behind one trait with a SQLite and a MariaDB backend.
//!
//! The core never sees SQL: it calls [`Store`] through an `Arc<dyn Store>`. Each
//! backend has its own migration set (`migrations/sqlite`, `migrations/mysql`), run at
//! start-up.

mod mysql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, UserId};

pub use mysql::MysqlStore;
pub use sqlite::SqliteStore;

use crate::config::{DatabaseSettings, DatabaseUrl};

/// A database failure; its text never reaches a client.
#[derive(Debug, thiserror::Error)]
#[error("database: {0}")]
pub struct StoreError(#[from] sqlx::Error);

/// A migration failure at start-up.
#[derive(Debug, thiserror::Error)]
#[error("database migrations: {0}")]
pub struct MigrateError(#[from] sqlx::migrate::MigrateError);

/// One room event as the application service received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEvent {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub event_type: String,
    pub state_key: Option<String>,
    pub origin_server_ts: i64,
    /// The event exactly as Synapse sent it.
    pub json: String,
}

/// A transaction pushed by the homeserver, identified by its id and the hash of its body.
#[derive(Debug, Clone)]
pub struct IncomingTransaction {
    pub txn_id: String,
    pub body_sha256: [u8; 32],
    pub events: Vec<RoomEvent>,
}

/// What recording a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionOutcome {
    /// This (txn_id, body) was recorded before: nothing was done.
    Duplicate,
    /// Recorded; `new_events` are the events not seen in any earlier transaction.
    Recorded { new_events: Vec<RoomEvent> },
}

/// A puppet user the daemon registered on the homeserver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Puppet {
    pub user_id: OwnedUserId,
    pub display_name: Option<String>,
}

/// The daemon's durable state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is, for logs and `/ready`.
    fn backend(&self) -> &'static str;

    /// A round trip to the database.
    async fn health(&self) -> Result<(), StoreError>;

    /// Records a transaction and its events atomically, once: a second call with the
    /// same (txn_id, body hash) is a [`TransactionOutcome::Duplicate`], and an event
    /// already recorded by an earlier transaction is not new again.
    async fn record_transaction(
        &self,
        txn: &IncomingTransaction,
    ) -> Result<TransactionOutcome, StoreError>;

    /// The events recorded for a room, oldest first.
    async fn room_events(&self, room_id: &ruma::RoomId) -> Result<Vec<RoomEvent>, StoreError>;

    /// Remembers a registered puppet (idempotent; updates the display name).
    async fn save_puppet(&self, puppet: &Puppet) -> Result<(), StoreError>;

    /// A puppet registered earlier, if any.
    async fn puppet(&self, user_id: &UserId) -> Result<Option<Puppet>, StoreError>;
}

/// Connects to the configured database and runs its migrations.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Arc<dyn Store>> {
    use anyhow::Context;
    Ok(match &settings.url {
        DatabaseUrl::Sqlite(url) => Arc::new(
            SqliteStore::connect(url, settings.max_connections)
                .await
                .with_context(|| format!("database.url: cannot open SQLite database `{url}`"))?,
        ),
        DatabaseUrl::Mysql(url) => Arc::new(
            MysqlStore::connect(url, settings.max_connections)
                .await
                .context("database.url: cannot connect to MariaDB")?,
        ),
    })
}

pub(crate) fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// A `room_events` row as both backends return it.
#[derive(sqlx::FromRow)]
struct RoomEventRow {
    event_id: String,
    room_id: String,
    sender: String,
    event_type: String,
    state_key: Option<String>,
    origin_server_ts: i64,
    json: String,
}

impl TryFrom<RoomEventRow> for RoomEvent {
    type Error = StoreError;

    fn try_from(row: RoomEventRow) -> Result<Self, StoreError> {
        let decode = |e: ruma::IdParseError| StoreError(sqlx::Error::Decode(Box::new(e)));
        Ok(RoomEvent {
            event_id: OwnedEventId::try_from(row.event_id).map_err(decode)?,
            room_id: OwnedRoomId::try_from(row.room_id).map_err(decode)?,
            sender: OwnedUserId::try_from(row.sender).map_err(decode)?,
            event_type: row.event_type,
            state_key: row.state_key,
            origin_server_ts: row.origin_server_ts,
            json: row.json,
        })
    }
}
