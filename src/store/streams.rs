//! Each user's live stream in embedded mode (Redis streams in production): what was
//! delivered, kept for replay.

use std::collections::HashMap;

use async_trait::async_trait;
use ruma::UserId;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};

use super::sql::{self, Added, CHUNK, Dialect, SqlStore};
use super::{NewStreamEntry, StoreError, StreamEntry};
use crate::time::now_ms;

/// Per-user streams with increasing ids.
#[async_trait]
pub trait UserStreams: Send + Sync + 'static {
    /// Appends the entries whose (user, dedup_key) is not there yet, in one
    /// transaction; for each entry, its new id, or `None` if it was there already.
    async fn append(&self, entries: &[NewStreamEntry]) -> Result<Vec<Option<i64>>, StoreError>;

    /// A user's entries after `after`, oldest first.
    async fn entries_after(
        &self,
        user_id: &UserId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StreamEntry>, StoreError>;

    /// The id of the user's newest entry.
    async fn latest_entry(&self, user_id: &UserId) -> Result<Option<i64>, StoreError>;

    /// The id of the user's oldest retained entry.
    async fn oldest_entry(&self, user_id: &UserId) -> Result<Option<i64>, StoreError>;

    /// Drops entries older than `before` (ms) beyond each user's newest `keep`.
    async fn prune(&self, before: i64, keep: u32) -> Result<u64, StoreError>;
}

/// A `user_events` row.
#[derive(sqlx::FromRow)]
struct StreamRow {
    id: i64,
    kind: String,
    payload: String,
}

impl From<StreamRow> for StreamEntry {
    fn from(row: StreamRow) -> Self {
        StreamEntry {
            id: row.id,
            kind: row.kind,
            payload: row.payload,
        }
    }
}

#[async_trait]
impl<DB: Dialect> UserStreams for SqlStore<DB>
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
    async fn append(&self, entries: &[NewStreamEntry]) -> Result<Vec<Option<i64>>, StoreError> {
        let now = now_ms();
        'tries: for &numbered in sql::numberings::<DB>() {
            let mut ids = Vec::with_capacity(entries.len());
            let mut tx = self.pool.begin().await?;
            for chunk in entries.chunks(CHUNK) {
                let mut query = QueryBuilder::<DB>::new(format!(
                    "{} INTO user_events (user_id, dedup_key, kind, payload, created_at) ",
                    DB::INSERT_IGNORE
                ));
                query.push_values(chunk, |mut row, entry| {
                    row.push_bind(entry.user_id.as_str())
                        .push_bind(entry.dedup_key.as_str())
                        .push_bind(entry.kind.as_str())
                        .push_bind(entry.payload.as_str())
                        .push_bind(now);
                });
                let returning = "id, user_id, dedup_key";
                let added = sql::insert_numbered(&mut *tx, query, chunk.len(), numbered, returning);
                let inserted: Vec<(i64, String, String)> = match added.await? {
                    Added::All { first } => {
                        ids.extend((first..).take(chunk.len()).map(Some));
                        continue;
                    }
                    Added::These(rows) => rows,
                    Added::Unnumbered => {
                        tx.rollback().await?;
                        continue 'tries;
                    }
                };
                let mut inserted: HashMap<(String, String), i64> = inserted
                    .into_iter()
                    .map(|(id, user, key)| ((user, key), id))
                    .collect();
                // A (user, key) given twice is inserted once: the first gets the id.
                ids.extend(chunk.iter().map(|e| {
                    inserted.remove(&(e.user_id.as_str().to_owned(), e.dedup_key.clone()))
                }));
            }
            tx.commit().await?;
            return Ok(ids);
        }
        Err(sql::corrupt(
            "user_events",
            "the new entries' ids were not read back",
        ))
    }

    async fn entries_after(
        &self,
        user_id: &UserId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StreamEntry>, StoreError> {
        let rows: Vec<StreamRow> = sqlx::query_as(
            "SELECT id, kind, payload FROM user_events WHERE user_id = ? AND id > ? \
             ORDER BY id LIMIT ?",
        )
        .bind(user_id.as_str())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(StreamEntry::from).collect())
    }

    async fn latest_entry(&self, user_id: &UserId) -> Result<Option<i64>, StoreError> {
        let (id,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(id) FROM user_events WHERE user_id = ?")
                .bind(user_id.as_str())
                .fetch_one(&self.pool)
                .await?;
        Ok(id)
    }

    async fn oldest_entry(&self, user_id: &UserId) -> Result<Option<i64>, StoreError> {
        let (id,): (Option<i64>,) =
            sqlx::query_as("SELECT MIN(id) FROM user_events WHERE user_id = ?")
                .bind(user_id.as_str())
                .fetch_one(&self.pool)
                .await?;
        Ok(id)
    }

    async fn prune(&self, before: i64, keep: u32) -> Result<u64, StoreError> {
        // Old entries go unless they are among their user's newest `keep`.
        let users: Vec<(String,)> =
            sqlx::query_as("SELECT DISTINCT user_id FROM user_events WHERE created_at < ?")
                .bind(before)
                .fetch_all(&self.pool)
                .await?;
        let mut pruned = 0;
        for (user_id,) in &users {
            let cutoff: Option<(i64,)> = sqlx::query_as(
                "SELECT id FROM user_events WHERE user_id = ? ORDER BY id DESC \
                     LIMIT 1 OFFSET ?",
            )
            .bind(user_id.as_str())
            .bind(i64::from(keep.saturating_sub(1)))
            .fetch_optional(&self.pool)
            .await?;
            let Some((cutoff,)) = cutoff else { continue };
            let done = sqlx::query(
                "DELETE FROM user_events WHERE user_id = ? AND created_at < ? AND id < ?",
            )
            .bind(user_id.as_str())
            .bind(before)
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
            pruned += DB::rows_affected(&done);
        }
        Ok(pruned)
    }
}
