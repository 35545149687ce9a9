//! What is kept of what the homeserver already stores: room events, transactions and
//! sent messages past their retention are dropped, oldest first, in small batches,
//! except what the feed or the room list still needs.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};

use super::StoreError;
use super::sql::{Dialect, SqlStore};

/// The tables whose rows `/metrics` reports.
pub const COUNTED_TABLES: [&str; 7] = [
    "room_events",
    "feed_queue",
    "appservice_transactions",
    "sent_messages",
    "user_events",
    "stream_payloads",
    "audit_log",
];

/// Dropping rows past their retention.
#[async_trait]
pub trait Retention: Send + Sync + 'static {
    /// Drops up to `batch` rows of each kind received before `before` (ms since the
    /// epoch): room events already fed that are no room's last message, transactions
    /// (a redelivery within the retention is still recognised) and sent messages.
    /// Returns how many rows went.
    async fn prune_before(&self, before: i64, batch: u32) -> Result<u64, StoreError>;

    /// The rows in each of [`COUNTED_TABLES`].
    async fn table_rows(&self) -> Result<Vec<(&'static str, u64)>, StoreError>;
}

#[async_trait]
impl<DB: Dialect> Retention for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn prune_before(&self, before: i64, batch: u32) -> Result<u64, StoreError> {
        let limit = i64::from(batch.max(1));
        let seqs: Vec<(i64,)> = sqlx::query_as(
            "SELECT seq FROM room_events WHERE received_at < ? \
             AND seq NOT IN (SELECT seq FROM feed_queue) \
             AND seq NOT IN (SELECT MAX(seq) FROM room_events WHERE is_message = 1 \
                             GROUP BY room_id) \
             ORDER BY seq LIMIT ?",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut removed = 0;
        if !seqs.is_empty() {
            let mut query = QueryBuilder::<DB>::new("DELETE FROM room_events WHERE seq IN (");
            let mut ids = query.separated(", ");
            for (seq,) in &seqs {
                ids.push_bind(*seq);
            }
            query.push(")");
            removed += DB::rows_affected(&query.build().execute(&self.pool).await?);
        }
        for (table, column) in [
            ("appservice_transactions", "received_at"),
            ("sent_messages", "sent_at"),
        ] {
            // The time of the batch's newest row, so one DELETE takes the batch.
            let newest: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {column} FROM {table} WHERE {column} < ? \
                 ORDER BY {column} LIMIT 1 OFFSET ?"
            )))
            .bind(before)
            .bind(limit - 1)
            .fetch_optional(&self.pool)
            .await?;
            let (operator, until) = match newest {
                Some((at,)) => ("<=", at),
                None => ("<", before),
            };
            let done = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE {column} {operator} ?"
            )))
            .bind(until)
            .execute(&self.pool)
            .await?;
            removed += DB::rows_affected(&done);
        }
        Ok(removed)
    }

    async fn table_rows(&self) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let mut rows = Vec::with_capacity(COUNTED_TABLES.len());
        for table in COUNTED_TABLES {
            let (count,): (i64,) =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                    .fetch_one(&self.pool)
                    .await?;
            rows.push((table, u64::try_from(count).unwrap_or(0)));
        }
        Ok(rows)
    }
}
