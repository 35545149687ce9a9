//! Each user's live stream in embedded mode (Redis streams in production): what was
//! delivered, kept for replay.
//!
//! A payload is stored once per (dedup key, kind) in `stream_payloads` and each user
//! once in `stream_users`; an entry (`user_events`) is the user's number, the
//! payload's and a time. A message to K members writes one payload and K small rows.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use ruma::{OwnedUserId, UserId};
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};

use super::sql::{self, Added, CHUNK, Dialect, SqlStore};
use super::{NewStreamEntry, StoreError, StreamEntry};
use crate::time::now_ms;

/// Per-user streams with increasing ids.
#[async_trait]
pub trait UserStreams: Send + Sync + 'static {
    /// Appends the entries whose (user, dedup key, kind) is not there yet, in one
    /// transaction; for each entry, its new id, or `None` if it was there already.
    /// Entries of one dedup key and kind share one payload: the first given.
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

/// Each stream user's number in `stream_users`, as far as this daemon knows it. A
/// number never changes: its row is never deleted.
pub(super) type UserRefs = Mutex<HashMap<OwnedUserId, i64>>;

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
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let users = self.user_refs(entries).await?;
        // One payload per (key, kind): `of[i]` is the one of entry i.
        let mut payloads: Vec<&NewStreamEntry> = Vec::new();
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        let of: Vec<usize> = entries
            .iter()
            .map(|e| {
                *index.entry((&e.dedup_key, &e.kind)).or_insert_with(|| {
                    payloads.push(e);
                    payloads.len() - 1
                })
            })
            .collect();
        'tries: for &numbered in sql::numberings::<DB>() {
            let mut tx = self.writer.begin().await?;
            let Some(payload_ids) = payload_ids(&mut tx, &payloads, now, numbered).await? else {
                tx.rollback().await?;
                continue 'tries;
            };
            let rows: Vec<(i64, i64)> = users
                .iter()
                .zip(&of)
                .map(|(&user, &payload)| (user, payload_ids[payload]))
                .collect();
            let mut ids = Vec::with_capacity(entries.len());
            for chunk in rows.chunks(CHUNK) {
                let mut query = QueryBuilder::<DB>::new(format!(
                    "{} INTO user_events (user_ref, payload_id, created_at) ",
                    DB::INSERT_IGNORE
                ));
                query.push_values(chunk, |mut row, &(user, payload)| {
                    row.push_bind(user).push_bind(payload).push_bind(now);
                });
                let returning = "id, user_ref, payload_id";
                let added = sql::insert_numbered(&mut *tx, query, chunk.len(), numbered, returning);
                let inserted: Vec<(i64, i64, i64)> = match added.await? {
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
                let mut inserted: HashMap<(i64, i64), i64> = inserted
                    .into_iter()
                    .map(|(id, user, payload)| ((user, payload), id))
                    .collect();
                // An entry given twice is inserted once: the first gets the id.
                ids.extend(chunk.iter().map(|row| inserted.remove(row)));
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
            "SELECT e.id, p.kind, p.payload FROM user_events e \
             JOIN stream_payloads p ON p.id = e.payload_id \
             WHERE e.user_ref = (SELECT id FROM stream_users WHERE user_id = ?) AND e.id > ? \
             ORDER BY e.id LIMIT ?",
        )
        .bind(user_id.as_str())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(StreamEntry::from).collect())
    }

    async fn latest_entry(&self, user_id: &UserId) -> Result<Option<i64>, StoreError> {
        let (id,): (Option<i64>,) = sqlx::query_as(
            "SELECT MAX(id) FROM user_events \
             WHERE user_ref = (SELECT id FROM stream_users WHERE user_id = ?)",
        )
        .bind(user_id.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn oldest_entry(&self, user_id: &UserId) -> Result<Option<i64>, StoreError> {
        let (id,): (Option<i64>,) = sqlx::query_as(
            "SELECT MIN(id) FROM user_events \
             WHERE user_ref = (SELECT id FROM stream_users WHERE user_id = ?)",
        )
        .bind(user_id.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn prune(&self, before: i64, keep: u32) -> Result<u64, StoreError> {
        // Old entries go unless they are among their user's newest `keep`.
        let users: Vec<(i64,)> =
            sqlx::query_as("SELECT DISTINCT user_ref FROM user_events WHERE created_at < ?")
                .bind(before)
                .fetch_all(&self.pool)
                .await?;
        let mut pruned = 0;
        for &(user,) in &users {
            let cutoff: Option<(i64,)> = sqlx::query_as(
                "SELECT id FROM user_events WHERE user_ref = ? ORDER BY id DESC \
                 LIMIT 1 OFFSET ?",
            )
            .bind(user)
            .bind(i64::from(keep.saturating_sub(1)))
            .fetch_optional(&self.pool)
            .await?;
            let Some((cutoff,)) = cutoff else { continue };
            let done = sqlx::query(
                "DELETE FROM user_events WHERE user_ref = ? AND created_at < ? AND id < ?",
            )
            .bind(user)
            .bind(before)
            .bind(cutoff)
            .execute(&self.pool)
            .await?;
            pruned += DB::rows_affected(&done);
        }
        // Then the old payloads no entry holds any more.
        sqlx::query(
            "DELETE FROM stream_payloads WHERE created_at < ? AND NOT EXISTS \
             (SELECT 1 FROM user_events e WHERE e.payload_id = stream_payloads.id)",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(pruned)
    }
}

impl<DB: Dialect> SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Decode<'q, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    fn known_users(&self) -> MutexGuard<'_, HashMap<OwnedUserId, i64>> {
        // Every change is one insert of a number that never changes: a poisoned lock
        // is sound.
        self.stream_users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Each entry's user's number, numbering users new to streams first, in a
    /// transaction of their own (a number once given stays, whatever becomes of the
    /// append); known only once committed.
    async fn user_refs(&self, entries: &[NewStreamEntry]) -> Result<Vec<i64>, StoreError> {
        let mut missing: Vec<&UserId> = {
            let known = self.known_users();
            entries
                .iter()
                .map(|e| &*e.user_id)
                .filter(|u| !known.contains_key(*u))
                .collect()
        };
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let mut numbered = Vec::with_capacity(missing.len());
            let mut tx = self.writer.begin().await?;
            for chunk in missing.chunks(CHUNK) {
                let mut query = QueryBuilder::<DB>::new(format!(
                    "{} INTO stream_users (user_id) ",
                    DB::INSERT_IGNORE
                ));
                query.push_values(chunk, |mut row, user| {
                    row.push_bind(user.as_str());
                });
                query.build().execute(&mut *tx).await?;
                let mut query = QueryBuilder::<DB>::new(
                    "SELECT id, user_id FROM stream_users WHERE user_id IN (",
                );
                let mut users = query.separated(", ");
                for user in chunk {
                    users.push_bind(user.as_str());
                }
                query.push(")");
                let rows: Vec<(i64, String)> = query.build_query_as().fetch_all(&mut *tx).await?;
                for (id, user) in rows {
                    numbered.push((sql::id("stream_users.user_id", user)?, id));
                }
            }
            tx.commit().await?;
            self.known_users().extend(numbered);
        }
        let known = self.known_users();
        entries
            .iter()
            .map(|e| {
                known.get(&e.user_id).copied().ok_or_else(|| {
                    sql::corrupt("stream_users", format!("{} was not numbered", e.user_id))
                })
            })
            .collect()
    }
}

/// The ids of `payloads` (one per dedup key and kind), inserting those not there yet;
/// `None` when the ids of a numbered insert are unknown because one was there (run the
/// transaction again, reading them back).
async fn payload_ids<DB: Dialect>(
    conn: &mut DB::Connection,
    payloads: &[&NewStreamEntry],
    now: i64,
    numbered: bool,
) -> Result<Option<Vec<i64>>, StoreError>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let mut ids = Vec::with_capacity(payloads.len());
    for chunk in payloads.chunks(CHUNK) {
        let mut query = QueryBuilder::<DB>::new(format!(
            "{} INTO stream_payloads (dedup_key, kind, payload, created_at) ",
            DB::INSERT_IGNORE
        ));
        query.push_values(chunk, |mut row, p| {
            row.push_bind(p.dedup_key.as_str())
                .push_bind(p.kind.as_str())
                .push_bind(&*p.payload)
                .push_bind(now);
        });
        let added = sql::insert_numbered(
            &mut *conn,
            query,
            chunk.len(),
            numbered,
            "id, dedup_key, kind",
        );
        let inserted: Vec<(i64, String, String)> = match added.await? {
            Added::All { first } => {
                ids.extend((first..).take(chunk.len()));
                continue;
            }
            Added::These(rows) => rows,
            Added::Unnumbered => return Ok(None),
        };
        let mut known: HashMap<(String, String), i64> = inserted
            .into_iter()
            .map(|(id, key, kind)| ((key, kind), id))
            .collect();
        let key = |p: &NewStreamEntry| (p.dedup_key.clone(), p.kind.clone());
        // The payloads there already: an event fed again.
        let there: Vec<&&NewStreamEntry> = chunk
            .iter()
            .filter(|p| !known.contains_key(&key(p)))
            .collect();
        if !there.is_empty() {
            let mut query = QueryBuilder::<DB>::new(
                "SELECT id, dedup_key, kind FROM stream_payloads WHERE dedup_key IN (",
            );
            let mut keys = query.separated(", ");
            for p in &there {
                keys.push_bind(p.dedup_key.as_str());
            }
            query.push(")");
            let rows: Vec<(i64, String, String)> =
                query.build_query_as().fetch_all(&mut *conn).await?;
            known.extend(rows.into_iter().map(|(id, key, kind)| ((key, kind), id)));
        }
        for p in chunk {
            let id = known.get(&key(p)).copied().ok_or_else(|| {
                sql::corrupt("stream_payloads", format!("no payload for {}", p.dedup_key))
            })?;
            ids.push(id);
        }
    }
    Ok(Some(ids))
}
