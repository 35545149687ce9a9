//! The MariaDB backend: production, shared by several daemons.

use std::str::FromStr;

use async_trait::async_trait;
use ruma::{RoomId, UserId};
use secrecy::{ExposeSecret, SecretString};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{MySqlPool, Row};

use super::{
    IncomingTransaction, Puppet, RoomEvent, RoomEventRow, Store, StoreError, TransactionOutcome,
    now_ms,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/mysql");

/// State in a MariaDB (or MySQL) database.
#[derive(Debug, Clone)]
pub struct MysqlStore {
    pool: MySqlPool,
}

impl MysqlStore {
    /// Connects to `url` and migrates the database (sqlx takes a lock, so several
    /// daemons starting together migrate once).
    pub async fn connect(url: &SecretString, max_connections: u32) -> anyhow::Result<Self> {
        let options = MySqlConnectOptions::from_str(url.expose_secret())?.charset("utf8mb4");
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await.map_err(super::MigrateError)?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for MysqlStore {
    fn backend(&self) -> &'static str {
        "mysql"
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
        let mut tx = self.pool.begin().await?;
        // INSERT IGNORE only ignores the duplicate key here: every other column is
        // bounded by the Matrix identifier grammar before it gets this far.
        let inserted = sqlx::query(
            "INSERT IGNORE INTO appservice_transactions (txn_id, body_sha256, received_at, event_count)
             VALUES (?, ?, ?, ?)",
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
                "INSERT IGNORE INTO room_events
                   (event_id, room_id, sender, event_type, state_key, origin_server_ts, json, received_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
             ON DUPLICATE KEY UPDATE display_name = VALUES(display_name)",
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
