//! The [`Store`](super::Store) implementation shared by both SQL backends.
//!
//! SQLite and MariaDB accept the same SQL here except for "insert unless it exists"
//! (`INSERT OR IGNORE` / `INSERT IGNORE`), so one macro writes both implementations
//! and each backend passes its dialect's spelling. Every such insert only ever hits
//! a duplicate key: other columns are validated before they get this far.

/// A `room_events` row as both backends return it.
#[derive(sqlx::FromRow)]
pub(super) struct RoomEventRow {
    event_id: String,
    room_id: String,
    sender: String,
    event_type: String,
    state_key: Option<String>,
    origin_server_ts: i64,
    json: String,
}

/// A `login_keys` row.
#[derive(sqlx::FromRow)]
pub(super) struct KeyRow {
    key_id: String,
    fingerprint: String,
    public_key: Vec<u8>,
    user_id: String,
    name: Option<String>,
    created_at: i64,
    last_login_at: Option<i64>,
    revoked_at: Option<i64>,
}

/// A `sessions` row.
#[derive(sqlx::FromRow)]
pub(super) struct SessionRow {
    token_hash: Vec<u8>,
    key_id: String,
    user_id: String,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
}

/// A `rooms` row.
#[derive(sqlx::FromRow)]
pub(super) struct RoomRow {
    room_id: String,
    name: Option<String>,
    is_direct: i64,
    encrypted: i64,
}

impl From<RoomRow> for super::RoomRecord {
    fn from(row: RoomRow) -> Self {
        super::RoomRecord {
            room_id: row.room_id,
            name: row.name,
            is_direct: row.is_direct != 0,
            encrypted: row.encrypted != 0,
        }
    }
}

/// A `memberships` row.
#[derive(sqlx::FromRow)]
pub(super) struct MembershipRow {
    room_id: String,
    user_id: String,
    membership: String,
    display_name: Option<String>,
    sender: String,
}

impl From<MembershipRow> for super::MembershipRecord {
    fn from(row: MembershipRow) -> Self {
        super::MembershipRecord {
            room_id: row.room_id,
            user_id: row.user_id,
            membership: row.membership,
            display_name: row.display_name,
            sender: row.sender,
        }
    }
}

/// A `user_events` row.
#[derive(sqlx::FromRow)]
pub(super) struct StreamRow {
    id: i64,
    kind: String,
    payload: String,
}

impl From<StreamRow> for super::StreamEntry {
    fn from(row: StreamRow) -> Self {
        super::StreamEntry {
            id: row.id,
            kind: row.kind,
            payload: row.payload,
        }
    }
}

/// An `audit_log` row.
#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    event: String,
    key_id: Option<String>,
    user_id: Option<String>,
    ip: Option<String>,
    detail: Option<String>,
}

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

use super::{AuditEntry, KeyRecord, RoomEvent, SessionRecord, StoreError};

fn decode_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError(sqlx::Error::Decode(format!("{what}: {e}").into()))
}

pub(super) fn user_id(s: String) -> Result<OwnedUserId, StoreError> {
    OwnedUserId::try_from(s).map_err(|e| decode_error("user_id", e))
}

fn hash32(bytes: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| decode_error(what, format!("{} bytes, not 32", b.len())))
}

impl TryFrom<RoomEventRow> for RoomEvent {
    type Error = StoreError;

    fn try_from(row: RoomEventRow) -> Result<Self, StoreError> {
        Ok(RoomEvent {
            event_id: OwnedEventId::try_from(row.event_id)
                .map_err(|e| decode_error("event_id", e))?,
            room_id: OwnedRoomId::try_from(row.room_id).map_err(|e| decode_error("room_id", e))?,
            sender: user_id(row.sender)?,
            event_type: row.event_type,
            state_key: row.state_key,
            origin_server_ts: row.origin_server_ts,
            json: row.json,
        })
    }
}

impl TryFrom<KeyRow> for KeyRecord {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        Ok(KeyRecord {
            key_id: row.key_id,
            fingerprint: row.fingerprint,
            public_key: hash32(row.public_key, "public_key")?,
            user_id: user_id(row.user_id)?,
            name: row.name,
            created_at: row.created_at,
            last_login_at: row.last_login_at,
            revoked_at: row.revoked_at,
        })
    }
}

impl TryFrom<SessionRow> for SessionRecord {
    type Error = StoreError;

    fn try_from(row: SessionRow) -> Result<Self, StoreError> {
        Ok(SessionRecord {
            token_hash: hash32(row.token_hash, "token_hash")?,
            key_id: row.key_id,
            user_id: user_id(row.user_id)?,
            created_at: row.created_at,
            last_seen_at: row.last_seen_at,
            expires_at: row.expires_at,
        })
    }
}

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> Self {
        AuditEntry {
            event: row.event,
            key_id: row.key_id,
            user_id: row.user_id,
            ip: row.ip,
            detail: row.detail,
        }
    }
}

/// Rows per multi-row INSERT when registering many keys.
pub(super) const INSERT_CHUNK: usize = 200;

const KEY_COLUMNS: &str =
    "key_id, fingerprint, public_key, user_id, name, created_at, last_login_at, revoked_at";

pub(super) fn select_keys(filter: &str) -> String {
    format!("SELECT {KEY_COLUMNS} FROM login_keys {filter}")
}

/// Upserts are "insert if missing" then "update", as two statements outside a
/// transaction: inside one, MariaDB's shared lock from the insert and the exclusive
/// lock of the update deadlock two writers of the same row.
///
/// Implements [`Store`](super::Store) for `$store` (holding `pool: sqlx::Pool<$db>`).
macro_rules! impl_sql_store {
    ($store:ty, $db:ty, backend: $backend:literal, insert_ignore: $insert_ignore:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
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
                // The first statement writes, so SQLite takes its write lock before
                // anything is read.
                let inserted = sqlx::query(concat!(
                    $insert_ignore,
                    " INTO appservice_transactions (txn_id, body_sha256, received_at, event_count) VALUES (?, ?, ?, ?)"
                ))
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
                    let done = sqlx::query(concat!(
                        $insert_ignore,
                        " INTO room_events (event_id, room_id, sender, event_type, state_key, origin_server_ts, json, received_at)",
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    ))
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

            async fn room_events(&self, room_id: &ruma::RoomId) -> Result<Vec<RoomEvent>, StoreError> {
                let rows: Vec<sql::RoomEventRow> = sqlx::query_as(
                    "SELECT event_id, room_id, sender, event_type, state_key, origin_server_ts, json
                     FROM room_events WHERE room_id = ? ORDER BY seq",
                )
                .bind(room_id.as_str())
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(RoomEvent::try_from).collect()
            }

            async fn save_puppet(&self, puppet: &Puppet) -> Result<(), StoreError> {
                sqlx::query(concat!(
                    $insert_ignore,
                    " INTO puppets (user_id, display_name, registered_at) VALUES (?, ?, ?)"
                ))
                .bind(puppet.user_id.as_str())
                .bind(&puppet.display_name)
                .bind(now_ms())
                .execute(&self.pool)
                .await?;
                sqlx::query("UPDATE puppets SET display_name = ? WHERE user_id = ?")
                    .bind(&puppet.display_name)
                    .bind(puppet.user_id.as_str())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn puppet(&self, user_id: &ruma::UserId) -> Result<Option<Puppet>, StoreError> {
                let row: Option<(Option<String>,)> =
                    sqlx::query_as("SELECT display_name FROM puppets WHERE user_id = ?")
                        .bind(user_id.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(|(display_name,)| Puppet { user_id: user_id.to_owned(), display_name }))
            }

            async fn insert_keys(&self, keys: &[NewKey]) -> Result<(), StoreError> {
                let now = now_ms();
                let mut tx = self.pool.begin().await?;
                for chunk in keys.chunks(sql::INSERT_CHUNK) {
                    sqlx::QueryBuilder::<$db>::new(concat!(
                        $insert_ignore,
                        " INTO users (user_id, display_name, created_at) "
                    ))
                    .push_values(chunk, |mut row, key| {
                        row.push_bind(key.user_id.as_str())
                            .push_bind(key.display_name.as_deref())
                            .push_bind(now);
                    })
                    .build()
                    .execute(&mut *tx)
                    .await?;
                    sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO login_keys (key_id, fingerprint, public_key, user_id, name, created_at) ",
                    )
                    .push_values(chunk, |mut row, key| {
                        row.push_bind(key.key_id.as_str())
                            .push_bind(key.fingerprint.as_str())
                            .push_bind(&key.public_key[..])
                            .push_bind(key.user_id.as_str())
                            .push_bind(key.name.as_deref())
                            .push_bind(now);
                    })
                    .build()
                    .execute(&mut *tx)
                    .await?;
                    sqlx::QueryBuilder::<$db>::new("INSERT INTO audit_log (at, event, key_id, user_id) ")
                        .push_values(chunk, |mut row, key| {
                            row.push_bind(now)
                                .push_bind("key_created")
                                .push_bind(key.key_id.as_str())
                                .push_bind(key.user_id.as_str());
                        })
                        .build()
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn key_by_fingerprint(&self, fingerprint: &str) -> Result<Option<KeyRecord>, StoreError> {
                let row: Option<sql::KeyRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql::select_keys("WHERE fingerprint = ?")))
                        .bind(fingerprint)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(KeyRecord::try_from).transpose()
            }

            async fn keys_by_fingerprint_prefix(&self, prefix: &str) -> Result<Vec<KeyRecord>, StoreError> {
                // The prefix is hex, so it holds no LIKE wildcards.
                let rows: Vec<sql::KeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql::select_keys(
                    "WHERE fingerprint LIKE ? ORDER BY created_at, key_id",
                )))
                .bind(format!("{prefix}%"))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(KeyRecord::try_from).collect()
            }

            async fn keys(&self, include_revoked: bool) -> Result<Vec<KeyRecord>, StoreError> {
                let filter = if include_revoked {
                    "ORDER BY created_at, key_id"
                } else {
                    "WHERE revoked_at IS NULL ORDER BY created_at, key_id"
                };
                let rows: Vec<sql::KeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql::select_keys(filter)))
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(KeyRecord::try_from).collect()
            }

            async fn revoke_key(&self, key_id: &str, at: i64) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE login_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL")
                    .bind(at)
                    .bind(key_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn record_login(&self, key_id: &str, at: i64) -> Result<(), StoreError> {
                sqlx::query("UPDATE login_keys SET last_login_at = ? WHERE key_id = ?")
                    .bind(at)
                    .bind(key_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn user(&self, user_id: &ruma::UserId) -> Result<Option<UserRecord>, StoreError> {
                let row: Option<(Option<String>,)> =
                    sqlx::query_as("SELECT display_name FROM users WHERE user_id = ?")
                        .bind(user_id.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(|(display_name,)| UserRecord { user_id: user_id.to_owned(), display_name }))
            }

            async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
                // Sessions past their absolute end are never valid again: drop them here
                // rather than in a background job (indexed, outside any transaction).
                sqlx::query("DELETE FROM sessions WHERE expires_at < ?")
                    .bind(session.created_at)
                    .execute(&self.pool)
                    .await?;
                sqlx::query(
                    "INSERT INTO sessions (token_hash, key_id, user_id, created_at, last_seen_at, expires_at)
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(&session.token_hash[..])
                .bind(&session.key_id)
                .bind(session.user_id.as_str())
                .bind(session.created_at)
                .bind(session.last_seen_at)
                .bind(session.expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn session(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
                let row: Option<sql::SessionRow> = sqlx::query_as(
                    "SELECT s.token_hash, s.key_id, s.user_id, s.created_at, s.last_seen_at, s.expires_at
                     FROM sessions s JOIN login_keys k ON k.key_id = s.key_id
                     WHERE s.token_hash = ? AND k.revoked_at IS NULL",
                )
                .bind(&token_hash[..])
                .fetch_optional(&self.pool)
                .await?;
                row.map(SessionRecord::try_from).transpose()
            }

            async fn touch_session(&self, token_hash: &[u8; 32], at: i64) -> Result<(), StoreError> {
                sqlx::query("UPDATE sessions SET last_seen_at = ? WHERE token_hash = ?")
                    .bind(at)
                    .bind(&token_hash[..])
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn delete_session(&self, token_hash: &[u8; 32]) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
                    .bind(&token_hash[..])
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_sessions_of_key(&self, key_id: &str) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM sessions WHERE key_id = ?")
                    .bind(key_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn count_live_sessions(&self, key_id: &str, now: i64, idle_ms: i64) -> Result<u64, StoreError> {
                let (count,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM sessions WHERE key_id = ? AND expires_at > ? AND last_seen_at > ?",
                )
                .bind(key_id)
                .bind(now)
                .bind(now - idle_ms)
                .fetch_one(&self.pool)
                .await?;
                Ok(u64::try_from(count).unwrap_or(0))
            }

            async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO audit_log (at, event, key_id, user_id, ip, detail) VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(now_ms())
                .bind(&entry.event)
                .bind(&entry.key_id)
                .bind(&entry.user_id)
                .bind(&entry.ip)
                .bind(&entry.detail)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
                let rows: Vec<sql::AuditRow> = sqlx::query_as(
                    "SELECT event, key_id, user_id, ip, detail FROM audit_log ORDER BY id DESC LIMIT ?",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(AuditEntry::from).collect())
            }

            async fn pending_events(&self, limit: u32) -> Result<Vec<RoomEvent>, StoreError> {
                let rows: Vec<sql::RoomEventRow> = sqlx::query_as(
                    "SELECT event_id, room_id, sender, event_type, state_key, origin_server_ts, json
                     FROM room_events WHERE ingested = 0 ORDER BY seq LIMIT ?",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(RoomEvent::try_from).collect()
            }

            async fn mark_ingested(&self, event_ids: &[&str]) -> Result<(), StoreError> {
                for chunk in event_ids.chunks(sql::INSERT_CHUNK) {
                    let mut query = sqlx::QueryBuilder::<$db>::new("UPDATE room_events SET ingested = 1 WHERE event_id IN (");
                    let mut ids = query.separated(", ");
                    for id in chunk {
                        ids.push_bind(*id);
                    }
                    query.push(")").build().execute(&self.pool).await?;
                }
                Ok(())
            }

            async fn update_room(
                &self,
                room_id: &str,
                name: Option<&str>,
                is_direct: Option<bool>,
                encrypted: Option<bool>,
            ) -> Result<(), StoreError> {
                let now = now_ms();
                sqlx::query(concat!($insert_ignore, " INTO rooms (room_id, updated_at) VALUES (?, ?)"))
                    .bind(room_id)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                sqlx::query(
                    "UPDATE rooms SET name = COALESCE(?, name), is_direct = COALESCE(?, is_direct),
                     encrypted = COALESCE(?, encrypted), updated_at = ? WHERE room_id = ?",
                )
                .bind(name)
                .bind(is_direct.map(i64::from))
                .bind(encrypted.map(i64::from))
                .bind(now)
                .bind(room_id)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn room(&self, room_id: &str) -> Result<Option<super::RoomRecord>, StoreError> {
                let row: Option<sql::RoomRow> =
                    sqlx::query_as("SELECT room_id, name, is_direct, encrypted FROM rooms WHERE room_id = ?")
                        .bind(room_id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(Into::into))
            }

            async fn set_membership(&self, m: &super::MembershipRecord) -> Result<(), StoreError> {
                let now = now_ms();
                sqlx::query(concat!(
                    $insert_ignore,
                    " INTO memberships (room_id, user_id, membership, display_name, sender, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
                ))
                .bind(&m.room_id)
                .bind(&m.user_id)
                .bind(&m.membership)
                .bind(&m.display_name)
                .bind(&m.sender)
                .bind(now)
                .execute(&self.pool)
                .await?;
                sqlx::query(
                    "UPDATE memberships SET membership = ?, display_name = ?, sender = ?, updated_at = ?
                     WHERE room_id = ? AND user_id = ?",
                )
                .bind(&m.membership)
                .bind(&m.display_name)
                .bind(&m.sender)
                .bind(now)
                .bind(&m.room_id)
                .bind(&m.user_id)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn add_membership_if_absent(&self, m: &super::MembershipRecord) -> Result<bool, StoreError> {
                let done = sqlx::query(concat!(
                    $insert_ignore,
                    " INTO memberships (room_id, user_id, membership, display_name, sender, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
                ))
                .bind(&m.room_id)
                .bind(&m.user_id)
                .bind(&m.membership)
                .bind(&m.display_name)
                .bind(&m.sender)
                .bind(now_ms())
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn replace_membership(&self, m: &super::MembershipRecord, current: &str) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE memberships SET membership = ?, display_name = COALESCE(?, display_name), sender = ?, updated_at = ?
                     WHERE room_id = ? AND user_id = ? AND membership = ?",
                )
                .bind(&m.membership)
                .bind(&m.display_name)
                .bind(&m.sender)
                .bind(now_ms())
                .bind(&m.room_id)
                .bind(&m.user_id)
                .bind(current)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn membership(&self, room_id: &str, user_id: &str) -> Result<Option<super::MembershipRecord>, StoreError> {
                let row: Option<sql::MembershipRow> = sqlx::query_as(
                    "SELECT room_id, user_id, membership, display_name, sender FROM memberships
                     WHERE room_id = ? AND user_id = ?",
                )
                .bind(room_id)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Into::into))
            }

            async fn members(&self, room_id: &str, membership: &str) -> Result<Vec<super::MembershipRecord>, StoreError> {
                let rows: Vec<sql::MembershipRow> = sqlx::query_as(
                    "SELECT room_id, user_id, membership, display_name, sender FROM memberships
                     WHERE room_id = ? AND membership = ? ORDER BY user_id",
                )
                .bind(room_id)
                .bind(membership)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn rooms_of(&self, user_id: &str, membership: &str) -> Result<Vec<super::MembershipRecord>, StoreError> {
                let rows: Vec<sql::MembershipRow> = sqlx::query_as(
                    "SELECT room_id, user_id, membership, display_name, sender FROM memberships
                     WHERE user_id = ? AND membership = ? ORDER BY updated_at DESC",
                )
                .bind(user_id)
                .bind(membership)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn last_message(&self, room_id: &str) -> Result<Option<RoomEvent>, StoreError> {
                let row: Option<sql::RoomEventRow> = sqlx::query_as(
                    "SELECT event_id, room_id, sender, event_type, state_key, origin_server_ts, json
                     FROM room_events WHERE room_id = ? AND event_type IN ('m.room.message', 'm.room.encrypted', 'm.sticker')
                     ORDER BY seq DESC LIMIT 1",
                )
                .bind(room_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(RoomEvent::try_from).transpose()
            }

            async fn sent_message(&self, user_id: &str, txn_id: &str) -> Result<Option<String>, StoreError> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT event_id FROM sent_messages WHERE user_id = ? AND txn_id = ?")
                        .bind(user_id)
                        .bind(txn_id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(|(id,)| id))
            }

            async fn save_sent_message(&self, user_id: &str, txn_id: &str, event_id: &str) -> Result<(), StoreError> {
                sqlx::query(concat!(
                    $insert_ignore,
                    " INTO sent_messages (user_id, txn_id, event_id, sent_at) VALUES (?, ?, ?, ?)"
                ))
                .bind(user_id)
                .bind(txn_id)
                .bind(event_id)
                .bind(now_ms())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn append_user_event(
                &self,
                user_id: &str,
                dedup_key: &str,
                kind: &str,
                payload: &str,
            ) -> Result<Option<i64>, StoreError> {
                let done = sqlx::query(concat!(
                    $insert_ignore,
                    " INTO user_events (user_id, dedup_key, kind, payload, created_at) VALUES (?, ?, ?, ?, ?)"
                ))
                .bind(user_id)
                .bind(dedup_key)
                .bind(kind)
                .bind(payload)
                .bind(now_ms())
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(None);
                }
                let (id,): (i64,) = sqlx::query_as("SELECT id FROM user_events WHERE user_id = ? AND dedup_key = ?")
                    .bind(user_id)
                    .bind(dedup_key)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(Some(id))
            }

            async fn user_events_after(&self, user_id: &str, after: i64, limit: u32) -> Result<Vec<super::StreamEntry>, StoreError> {
                let rows: Vec<sql::StreamRow> = sqlx::query_as(
                    "SELECT id, kind, payload FROM user_events WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?",
                )
                .bind(user_id)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn latest_user_event(&self, user_id: &str) -> Result<Option<i64>, StoreError> {
                let (id,): (Option<i64>,) = sqlx::query_as("SELECT MAX(id) FROM user_events WHERE user_id = ?")
                    .bind(user_id)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(id)
            }

            async fn oldest_user_event(&self, user_id: &str) -> Result<Option<i64>, StoreError> {
                let (id,): (Option<i64>,) = sqlx::query_as("SELECT MIN(id) FROM user_events WHERE user_id = ?")
                    .bind(user_id)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(id)
            }

            async fn prune_user_events(&self, before: i64, keep: u32) -> Result<u64, StoreError> {
                // Old entries go unless they are among their user's newest `keep`.
                let users: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT user_id, COUNT(*) FROM user_events WHERE created_at < ? GROUP BY user_id",
                )
                .bind(before)
                .fetch_all(&self.pool)
                .await?;
                let mut pruned = 0;
                for (user_id, _) in users {
                    let cutoff: Option<(i64,)> = sqlx::query_as(
                        "SELECT id FROM user_events WHERE user_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                    )
                    .bind(&user_id)
                    .bind(keep.saturating_sub(1))
                    .fetch_optional(&self.pool)
                    .await?;
                    let Some((cutoff,)) = cutoff else { continue };
                    pruned += sqlx::query("DELETE FROM user_events WHERE user_id = ? AND created_at < ? AND id < ?")
                        .bind(&user_id)
                        .bind(before)
                        .bind(cutoff)
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                }
                Ok(pruned)
            }

            async fn active_users(&self) -> Result<Vec<UserRecord>, StoreError> {
                let rows: Vec<(String, Option<String>)> = sqlx::query_as(
                    "SELECT u.user_id, u.display_name FROM users u
                     WHERE EXISTS (SELECT 1 FROM login_keys k WHERE k.user_id = u.user_id AND k.revoked_at IS NULL)
                     ORDER BY u.user_id",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(id, display_name)| Ok(UserRecord { user_id: sql::user_id(id)?, display_name }))
                    .collect()
            }

            async fn set_display_name(&self, user_id: &ruma::UserId, display_name: &str) -> Result<(), StoreError> {
                sqlx::query("UPDATE users SET display_name = ? WHERE user_id = ?")
                    .bind(display_name)
                    .bind(user_id.as_str())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}

pub(super) use impl_sql_store;
