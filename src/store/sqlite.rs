//! The SQLite backend: the embedded default, one file beside the daemon.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use ruma::{RoomId, UserId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{
    IncomingTransaction, Puppet, RoomEvent, RoomEventRow, Store, StoreError, TransactionOutcome,
    now_ms,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// State in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and migrates it.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a transaction acknowledged to Synapse survives a power loss too.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        if let Some(parent) = options.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent).await?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await.map_err(super::MigrateError)?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn health(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn record_transaction(
        &self,
        txn: &IncomingTransaction,
    ) -> Result<TransactionOutcome, StoreError> {
        let now = now_ms();
        // BEGIN IMMEDIATE would be ideal; sqlx's `begin` is DEFERRED, so the first
        // statement is a write to take the lock before anything is read.
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO appservice_transactions (txn_id, body_sha256, received_at, event_count)
             VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&txn.txn_id)
        .bind(&txn.body_sha256[..])
        .bind(now)
        .bind(i64::try_from(txn.events.len()).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(TransactionOutcome::Duplicate);
        }
        let mut new_events = Vec::new();
        for event in &txn.events {
            let done = sqlx::query(
                "INSERT INTO room_events
                   (event_id, room_id, sender, event_type, state_key, origin_server_ts, json, received_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(event.event_id.as_str())
            .bind(event.room_id.as_str())
            .bind(event.sender.as_str())
            .bind(&event.event_type)
            .bind(&event.state_key)
            .bind(event.origin_server_ts)
            .bind(&event.json)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done == 1 {
                new_events.push(event.clone());
            }
        }
        tx.commit().await?;
        Ok(TransactionOutcome::Recorded { new_events })
    }

    async fn room_events(&self, room_id: &RoomId) -> Result<Vec<RoomEvent>, StoreError> {
        let rows: Vec<RoomEventRow> = sqlx::query_as(
            "SELECT event_id, room_id, sender, event_type, state_key, origin_server_ts, json
             FROM room_events WHERE room_id = ? ORDER BY seq",
        )
        .bind(room_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(RoomEvent::try_from).collect()
    }

    async fn save_puppet(&self, puppet: &Puppet) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO puppets (user_id, display_name, registered_at) VALUES (?, ?, ?)
             ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name",
        )
        .bind(puppet.user_id.as_str())
        .bind(&puppet.display_name)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn puppet(&self, user_id: &UserId) -> Result<Option<Puppet>, StoreError> {
        let row = sqlx::query("SELECT display_name FROM puppets WHERE user_id = ?")
            .bind(user_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Puppet {
                user_id: user_id.to_owned(),
                display_name: r.try_get(0)?,
            })
        })
        .transpose()
    }
}
