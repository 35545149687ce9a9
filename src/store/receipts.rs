//! Read receipts: how far each user has read in each room, by the position of the
//! event in the event log, and what that leaves unread.

use async_trait::async_trait;
use ruma::{EventId, OwnedEventId, OwnedUserId, RoomId, UserId};
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use super::StoreError;
use super::sql::{self, Dialect, SqlStore};
use crate::time::now_ms;

/// Read positions and unread counts.
#[async_trait]
pub trait Receipts: Send + Sync + 'static {
    /// Moves `user_id`'s read position in the room up to `event_id` (to the room's
    /// newest recorded event when the log does not have it); never back. True if the
    /// position is at `event_id` now (moved there, or already there).
    async fn set_receipt(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        event_id: &EventId,
    ) -> Result<bool, StoreError>;

    /// How far each user has read in the room.
    async fn receipts(
        &self,
        room_id: &RoomId,
    ) -> Result<Vec<(OwnedUserId, OwnedEventId)>, StoreError>;

    /// Messages of others after `user_id`'s read position (all of them without one).
    async fn unread(&self, room_id: &RoomId, user_id: &UserId) -> Result<u64, StoreError>;
}

#[async_trait]
impl<DB: Dialect> Receipts for SqlStore<DB>
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
    async fn set_receipt(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        event_id: &EventId,
    ) -> Result<bool, StoreError> {
        // An unknown event: the room's newest, found through the room's one index
        // (room_id, is_message, seq) by a lookup for each value of is_message.
        let (seq,): (Option<i64>,) = sqlx::query_as(
            "SELECT COALESCE((SELECT seq FROM room_events WHERE event_id = ?), \
             (SELECT MAX(newest) FROM (\
              SELECT MAX(seq) AS newest FROM room_events WHERE room_id = ? AND is_message = 0 \
              UNION ALL \
              SELECT MAX(seq) FROM room_events WHERE room_id = ? AND is_message = 1) AS newest))",
        )
        .bind(event_id.as_str())
        .bind(room_id.as_str())
        .bind(room_id.as_str())
        .fetch_one(&self.pool)
        .await?;
        let (seq, now) = (seq.unwrap_or(0), now_ms());
        let inserted = sqlx::query(Self::insert_ignore(
            "INTO receipts (room_id, user_id, event_id, seq, updated_at) VALUES (?, ?, ?, ?, ?)",
        ))
        .bind(room_id.as_str())
        .bind(user_id.as_str())
        .bind(event_id.as_str())
        .bind(seq)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if DB::rows_affected(&inserted) == 1 {
            return Ok(true);
        }
        let moved = sqlx::query(
            "UPDATE receipts SET event_id = ?, seq = ?, updated_at = ? \
             WHERE room_id = ? AND user_id = ? AND seq < ?",
        )
        .bind(event_id.as_str())
        .bind(seq)
        .bind(now)
        .bind(room_id.as_str())
        .bind(user_id.as_str())
        .bind(seq)
        .execute(&self.pool)
        .await?;
        if DB::rows_affected(&moved) == 1 {
            return Ok(true);
        }
        let (current,): (String,) =
            sqlx::query_as("SELECT event_id FROM receipts WHERE room_id = ? AND user_id = ?")
                .bind(room_id.as_str())
                .bind(user_id.as_str())
                .fetch_one(&self.pool)
                .await?;
        Ok(current == event_id.as_str())
    }

    async fn receipts(
        &self,
        room_id: &RoomId,
    ) -> Result<Vec<(OwnedUserId, OwnedEventId)>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT user_id, event_id FROM receipts WHERE room_id = ?")
                .bind(room_id.as_str())
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(user, event)| Ok((sql::id("user_id", user)?, sql::id("event_id", event)?)))
            .collect()
    }

    async fn unread(&self, room_id: &RoomId, user_id: &UserId) -> Result<u64, StoreError> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM room_events WHERE room_id = ? AND is_message = 1 \
             AND sender <> ? AND seq > COALESCE((SELECT seq FROM receipts \
             WHERE room_id = ? AND user_id = ?), 0)",
        )
        .bind(room_id.as_str())
        .bind(user_id.as_str())
        .bind(room_id.as_str())
        .bind(user_id.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
