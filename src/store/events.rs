//! The event log: transactions pushed by the homeserver, their room events, which of
//! those the feed has handled, and the messages sent through the API.

use std::collections::HashMap;

use async_trait::async_trait;
use ruma::serde::Raw;
use ruma::{EventId, OwnedEventId, RoomId, UserId};
use serde_json::value::RawValue;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};

use super::sql::{self, Added, CHUNK, Dialect, SqlStore};
use super::{EventRecord, IncomingTransaction, StoreError, TransactionOutcome};
use crate::time::now_ms;

/// Everything received from the homeserver, durably, once.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Records a transaction and its events atomically, once: a second call with the
    /// same (txn_id, body hash) is a [`TransactionOutcome::Duplicate`], and an event
    /// already recorded by an earlier transaction is not recorded again. The recording
    /// survives a crash of the daemon, and a power loss once [`EventLog::sync`] returns.
    async fn record_transaction(
        &self,
        txn: &IncomingTransaction,
    ) -> Result<TransactionOutcome, StoreError>;

    /// Makes every transaction recorded so far survive a power loss. Where commits
    /// wait for the disk themselves (MariaDB; SQLite on one shared connection) it has
    /// nothing to do; SQLite's own connection of the feed commits without waiting, so
    /// the feed can work on a recording's events while its log is synced.
    async fn sync(&self) -> Result<(), StoreError>;

    /// The log's identity: random, made with the database, the same for every daemon
    /// on it.
    async fn identity(&self) -> Result<String, StoreError>;

    /// The events recorded for a room, oldest first.
    async fn room_events(&self, room_id: &RoomId) -> Result<Vec<EventRecord>, StoreError>;

    /// One recorded event.
    async fn event(&self, event_id: &EventId) -> Result<Option<EventRecord>, StoreError>;

    /// The room's newest recorded message.
    async fn last_message(&self, room_id: &RoomId) -> Result<Option<EventRecord>, StoreError>;

    /// The places in the log of recorded events the feed has not handled yet, oldest
    /// first.
    async fn pending(&self, limit: u32) -> Result<Vec<i64>, StoreError>;

    /// The events at these places in the log, in log order.
    async fn events_at(&self, seqs: &[i64]) -> Result<Vec<(i64, EventRecord)>, StoreError>;

    /// Marks events as handled by the feed: the oldest of those [`EventLog::pending`]
    /// gives, in order. What is kept is the newest place handled: recordings commit
    /// in the order of their places, so every event below it is handled too.
    async fn mark_fed(&self, seqs: &[i64]) -> Result<(), StoreError>;

    /// The event sent earlier for (user, room, txn_id).
    async fn sent_message(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        txn_id: &str,
    ) -> Result<Option<OwnedEventId>, StoreError>;

    /// Remembers the event sent for (user, room, txn_id).
    async fn save_sent_message(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
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

/// A `room_events` row with its place in the log.
#[derive(sqlx::FromRow)]
struct SeqEventRow {
    seq: i64,
    #[sqlx(flatten)]
    event: EventRow,
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
        // Each event's place in the transaction (the first, for one given twice).
        let index: HashMap<&str, usize> = txn
            .events
            .iter()
            .enumerate()
            .rev()
            .map(|(i, e)| (e.event_id.as_str(), i))
            .collect();
        'tries: for &numbered in sql::numberings::<DB>() {
            let (mut recording, mut new_txn) = self.begin_recording(txn, now).await?;
            if new_txn == Some(false) {
                recording.rollback().await?;
                return Ok(TransactionOutcome::Duplicate);
            }
            // One multi-row statement per chunk: a transaction is one round trip or
            // few. Each row is written once.
            let mut new = Vec::with_capacity(txn.events.len());
            for (n, chunk) in txn.events.chunks(CHUNK).enumerate() {
                let mut query = QueryBuilder::<DB>::new(format!(
                    "{} INTO room_events (event_id, room_id, sender, event_type, state_key, \
                     origin_server_ts, json, received_at, is_message) ",
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
                        .push_bind(now)
                        .push_bind(i64::from(event.is_message()));
                });
                let returning = format!("seq, event_id, {}", DB::RECORDING_STATE);
                let conn = recording.conn();
                let added = sql::insert_numbered(conn, query, chunk.len(), numbered, &returning);
                let rows: Vec<(i64, String, i64)> = match added.await? {
                    // Every event went in: the chunk's, in order.
                    Added::All { first } => {
                        new.extend((first..).zip(n * CHUNK..n * CHUNK + chunk.len()));
                        continue;
                    }
                    Added::These(rows) => rows,
                    Added::Unnumbered => {
                        recording.rollback().await?;
                        continue 'tries;
                    }
                };
                if let (None, Some(&(_, _, state))) = (new_txn, rows.first()) {
                    new_txn = Some(sql::recording_state(state)?);
                }
                for (seq, event_id, _) in rows {
                    let at = index.get(event_id.as_str()).copied();
                    new.push((seq, at.ok_or_else(|| sql::corrupt("event_id", event_id))?));
                }
            }
            // No event was new, so the insert did not say what the recording's start
            // found.
            if new_txn.is_none() {
                let state = sqlx::AssertSqlSafe(format!("SELECT {}", DB::RECORDING_STATE));
                let (state,): (i64,) = sqlx::query_as(state).fetch_one(recording.conn()).await?;
                new_txn = Some(sql::recording_state(state)?);
            }
            if new_txn == Some(false) {
                // Its events' insert may have added some again (the retention pruned
                // them): the rollback takes them back.
                recording.rollback().await?;
                return Ok(TransactionOutcome::Duplicate);
            }
            // The new places are above the feed's progress: nothing to queue.
            recording.commit().await?;
            new.sort_unstable();
            return Ok(TransactionOutcome::Recorded { new });
        }
        Err(sql::corrupt(
            "room_events",
            "the new events' seqs were not read back",
        ))
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

    async fn last_message(&self, room_id: &RoomId) -> Result<Option<EventRecord>, StoreError> {
        let row: Option<EventRow> = sqlx::query_as(select_events(
            "WHERE room_id = ? AND is_message = 1 ORDER BY seq DESC LIMIT 1",
        ))
        .bind(room_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(EventRecord::try_from).transpose()
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.sync_log().await
    }

    async fn identity(&self) -> Result<String, StoreError> {
        let (id,): (String,) = sqlx::query_as("SELECT log_id FROM feed_progress")
            .fetch_one(&self.pool)
            .await?;
        Ok(id)
    }

    async fn pending(&self, limit: u32) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<(i64,)> = sqlx::query_as("SELECT seq FROM feed_queue ORDER BY seq LIMIT ?")
            .bind(i64::from(limit))
            .fetch_all(&self.writer)
            .await?;
        Ok(rows.into_iter().map(|(seq,)| seq).collect())
    }

    async fn events_at(&self, seqs: &[i64]) -> Result<Vec<(i64, EventRecord)>, StoreError> {
        let mut events = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(CHUNK) {
            let mut query = QueryBuilder::<DB>::new(
                "SELECT seq, event_id, room_id, sender, event_type, state_key, \
                 origin_server_ts, json FROM room_events WHERE seq IN (",
            );
            let mut ids = query.separated(", ");
            for seq in chunk {
                ids.push_bind(*seq);
            }
            query.push(") ORDER BY seq");
            let rows: Vec<SeqEventRow> = query.build_query_as().fetch_all(&self.writer).await?;
            for row in rows {
                events.push((row.seq, EventRecord::try_from(row.event)?));
            }
        }
        events.sort_unstable_by_key(|(seq, _)| *seq);
        Ok(events)
    }

    async fn mark_fed(&self, seqs: &[i64]) -> Result<(), StoreError> {
        let Some(&through) = seqs.iter().max() else {
            return Ok(());
        };
        sqlx::query(DB::MARK_FED_THROUGH)
            .bind(through)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn sent_message(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        txn_id: &str,
    ) -> Result<Option<OwnedEventId>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT event_id FROM sent_messages WHERE user_id = ? AND room_id = ? AND txn_id = ?",
        )
        .bind(user_id.as_str())
        .bind(room_id.as_str())
        .bind(txn_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(id,)| sql::id("event_id", id)).transpose()
    }

    async fn save_sent_message(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        txn_id: &str,
        event_id: &EventId,
    ) -> Result<(), StoreError> {
        sqlx::query(Self::insert_ignore(
            "INTO sent_messages (user_id, room_id, txn_id, event_id, sent_at) \
             VALUES (?, ?, ?, ?, ?)",
        ))
        .bind(user_id.as_str())
        .bind(room_id.as_str())
        .bind(txn_id)
        .bind(event_id.as_str())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
