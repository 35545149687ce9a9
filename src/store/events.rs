//! The event log: transactions pushed by the homeserver, their room events, which of
//! those the feed has handled, and the messages sent through the API.

use std::collections::HashSet;

use async_trait::async_trait;
use ruma::serde::Raw;
use ruma::{EventId, OwnedEventId, RoomId, UserId};
use serde_json::value::RawValue;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};

use super::sql::{self, CHUNK, Dialect, SqlStore};
use super::{EventRecord, IncomingTransaction, StoreError, TransactionOutcome};
use crate::time::now_ms;

/// Everything received from the homeserver, durably, once.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Records a transaction and its events atomically, once: a second call with the
    /// same (txn_id, body hash) is a [`TransactionOutcome::Duplicate`], and an event
    /// already recorded by an earlier transaction is not recorded again.
    async fn record_transaction(
        &self,
        txn: &IncomingTransaction,
    ) -> Result<TransactionOutcome, StoreError>;

    /// The events recorded for a room, oldest first.
    async fn room_events(&self, room_id: &RoomId) -> Result<Vec<EventRecord>, StoreError>;

    /// One recorded event.
    async fn event(&self, event_id: &EventId) -> Result<Option<EventRecord>, StoreError>;

    /// Recorded events the feed has not handled yet, oldest first.
    async fn pending_events(&self, limit: u32) -> Result<Vec<EventRecord>, StoreError>;

    /// Marks events as handled by the feed, and which of them are messages.
    async fn mark_fed(&self, fed: &[&EventId], messages: &[&EventId]) -> Result<(), StoreError>;

    /// The event sent earlier for (user, txn_id).
    async fn sent_message(
        &self,
        user_id: &UserId,
        txn_id: &str,
    ) -> Result<Option<OwnedEventId>, StoreError>;

    /// Remembers the event sent for (user, txn_id).
    async fn save_sent_message(
        &self,
        user_id: &UserId,
        txn_id: &str,
        event_id: &EventId,
    ) -> Result<(), StoreError>;
}

/// A `room_events` row.
#[derive(sqlx::FromRow)]
struct EventRow {
    event_id: String,
    room_id: String,
    sender: String,
    event_type: String,
    state_key: Option<String>,
    origin_server_ts: i64,
    json: String,
}

impl TryFrom<EventRow> for EventRecord {
    type Error = StoreError;

    fn try_from(row: EventRow) -> Result<Self, StoreError> {
        let json = RawValue::from_string(row.json).map_err(|e| sql::corrupt("json", e))?;
        Ok(EventRecord {
            event_id: sql::id("event_id", row.event_id)?,
            room_id: sql::id("room_id", row.room_id)?,
            sender: sql::id("sender", row.sender)?,
            event_type: row.event_type,
            state_key: row.state_key,
            origin_server_ts: row.origin_server_ts,
            json: Raw::from_json(json),
        })
    }
}

fn select_events(filter: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!(
        "SELECT event_id, room_id, sender, event_type, state_key, origin_server_ts, json \
         FROM room_events {filter}"
    ))
}

#[async_trait]
impl<DB: Dialect> EventLog for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> Vec<u8>: Decode<'r, DB> + Type<DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
{
    async fn record_transaction(
        &self,
        txn: &IncomingTransaction,
    ) -> Result<TransactionOutcome, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        // The first statement writes, so SQLite takes its write lock before anything
        // is read.
        let inserted = sqlx::query(Self::insert_ignore(
            "INTO appservice_transactions (txn_id, body_sha256, received_at, event_count) \
             VALUES (?, ?, ?, ?)",
        ))
        .bind(txn.txn_id.as_str())
        .bind(&txn.body_sha256[..])
        .bind(now)
        .bind(i64::try_from(txn.events.len()).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        if DB::rows_affected(&inserted) == 0 {
            tx.rollback().await?;
            return Ok(TransactionOutcome::Duplicate);
        }
        // One multi-row statement per chunk: a transaction is one round trip or few.
        let mut new_events = 0;
        for chunk in txn.events.chunks(CHUNK) {
            let mut query = QueryBuilder::<DB>::new(format!(
                "{} INTO room_events (event_id, room_id, sender, event_type, state_key, \
                 origin_server_ts, json, received_at) ",
                DB::INSERT_IGNORE
            ));
            query.push_values(chunk, |mut row, event| {
                row.push_bind(event.event_id.as_str())
                    .push_bind(event.room_id.as_str())
                    .push_bind(event.sender.as_str())
                    .push_bind(event.event_type.as_str())
                    .push_bind(event.state_key.as_deref())
                    .push_bind(event.origin_server_ts)
                    .push_bind(event.json.json().get())
                    .push_bind(now);
            });
            let done = query.build().execute(&mut *tx).await?;
            new_events += usize::try_from(DB::rows_affected(&done)).unwrap_or(usize::MAX);
        }
        tx.commit().await?;
        Ok(TransactionOutcome::Recorded { new_events })
    }

    async fn room_events(&self, room_id: &RoomId) -> Result<Vec<EventRecord>, StoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(select_events("WHERE room_id = ? ORDER BY seq"))
            .bind(room_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(EventRecord::try_from).collect()
    }

    async fn event(&self, event_id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        let row: Option<EventRow> = sqlx::query_as(select_events("WHERE event_id = ?"))
            .bind(event_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(EventRecord::try_from).transpose()
    }

    async fn pending_events(&self, limit: u32) -> Result<Vec<EventRecord>, StoreError> {
        let rows: Vec<EventRow> =
            sqlx::query_as(select_events("WHERE ingested = 0 ORDER BY seq LIMIT ?"))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().map(EventRecord::try_from).collect()
    }

    async fn mark_fed(&self, fed: &[&EventId], messages: &[&EventId]) -> Result<(), StoreError> {
        // One statement per chunk: each row is written once, with both flags.
        let is_message: HashSet<&str> = messages.iter().map(|m| m.as_str()).collect();
        let is_fed: HashSet<&str> = fed.iter().map(|m| m.as_str()).collect();
        for chunk in fed.chunks(CHUNK) {
            let mut query = QueryBuilder::<DB>::new("UPDATE room_events SET ingested = 1");
            let these: Vec<&&EventId> = chunk
                .iter()
                .filter(|m| is_message.contains(m.as_str()))
                .collect();
            if !these.is_empty() {
                query.push(", is_message = CASE WHEN event_id IN (");
                let mut ids = query.separated(", ");
                for id in &these {
                    ids.push_bind(id.as_str());
                }
                query.push(") THEN 1 ELSE is_message END");
            }
            query.push(" WHERE event_id IN (");
            let mut ids = query.separated(", ");
            for id in chunk {
                ids.push_bind(id.as_str());
            }
            query.push(")").build().execute(&self.pool).await?;
        }
        // Messages named but not fed now (the trait allows it) are marked alone.
        let rest: Vec<&&EventId> = messages
            .iter()
            .filter(|m| !is_fed.contains(m.as_str()))
            .collect();
        for chunk in rest.chunks(CHUNK) {
            let mut query = QueryBuilder::<DB>::new(
                "UPDATE room_events SET is_message = 1 WHERE event_id IN (",
            );
            let mut ids = query.separated(", ");
            for id in chunk {
                ids.push_bind(id.as_str());
            }
            query.push(")").build().execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn sent_message(
        &self,
        user_id: &UserId,
        txn_id: &str,
    ) -> Result<Option<OwnedEventId>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT event_id FROM sent_messages WHERE user_id = ? AND txn_id = ?")
                .bind(user_id.as_str())
                .bind(txn_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(id,)| sql::id("event_id", id)).transpose()
    }

    async fn save_sent_message(
        &self,
        user_id: &UserId,
        txn_id: &str,
        event_id: &EventId,
    ) -> Result<(), StoreError> {
        sqlx::query(Self::insert_ignore(
            "INTO sent_messages (user_id, txn_id, event_id, sent_at) VALUES (?, ?, ?, ?)",
        ))
        .bind(user_id.as_str())
        .bind(txn_id)
        .bind(event_id.as_str())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
