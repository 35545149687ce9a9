//! Login sessions of embedded mode (Redis keeps them in production), stored only by
//! the hash of their token.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};

use super::sql::{self, CHUNK, Dialect, SqlStore};
use super::{SessionRecord, StoreError};

/// Sessions in the database.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores new sessions, in one transaction.
    async fn create_sessions(&self, sessions: &[SessionRecord]) -> Result<(), StoreError>;

    /// The session with this token hash, if it exists and its key is not revoked.
    async fn session(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError>;

    /// Of these token hashes, the sessions that exist and whose key is not revoked, in
    /// any order: a statement per few hundred.
    async fn sessions(&self, token_hashes: &[[u8; 32]]) -> Result<Vec<SessionRecord>, StoreError>;

    /// Records activity on a session.
    async fn touch_session(&self, token_hash: &[u8; 32], at: i64) -> Result<(), StoreError>;

    /// Ends a session; false if there was none.
    async fn delete_session(&self, token_hash: &[u8; 32]) -> Result<bool, StoreError>;

    /// Ends every session of a key; returns how many there were.
    async fn delete_sessions_of_key(&self, key_id: &str) -> Result<u64, StoreError>;

    /// Sessions of a key that are within both lifetimes at `now`.
    async fn count_live_sessions(
        &self,
        key_id: &str,
        now: i64,
        idle_ms: i64,
    ) -> Result<u64, StoreError>;
}

/// A `sessions` row.
#[derive(sqlx::FromRow)]
struct SessionRow {
    token_hash: Vec<u8>,
    key_id: String,
    user_id: String,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
}

impl TryFrom<SessionRow> for SessionRecord {
    type Error = StoreError;

    fn try_from(row: SessionRow) -> Result<Self, StoreError> {
        Ok(SessionRecord {
            token_hash: sql::hash32("token_hash", row.token_hash)?,
            key_id: row.key_id,
            user_id: sql::id("user_id", row.user_id)?,
            created_at: row.created_at,
            last_seen_at: row.last_seen_at,
            expires_at: row.expires_at,
        })
    }
}

#[async_trait]
impl<DB: Dialect> SessionStore for SqlStore<DB>
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
    async fn create_sessions(&self, sessions: &[SessionRecord]) -> Result<(), StoreError> {
        let Some(oldest) = sessions.iter().map(|s| s.created_at).min() else {
            return Ok(());
        };
        let mut tx = self.pool.begin().await?;
        // Sessions past their absolute end are never valid again: drop them here rather
        // than in a background job (indexed).
        sqlx::query("DELETE FROM sessions WHERE expires_at < ?")
            .bind(oldest)
            .execute(&mut *tx)
            .await?;
        for chunk in sessions.chunks(CHUNK) {
            let mut query = QueryBuilder::<DB>::new(
                "INSERT INTO sessions (token_hash, key_id, user_id, created_at, last_seen_at, \
                 expires_at) ",
            );
            query.push_values(chunk, |mut row, s| {
                row.push_bind(&s.token_hash[..])
                    .push_bind(s.key_id.as_str())
                    .push_bind(s.user_id.as_str())
                    .push_bind(s.created_at)
                    .push_bind(s.last_seen_at)
                    .push_bind(s.expires_at);
            });
            query.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
        // A revoked key's sessions are refused at once, whoever revoked it.
        let row: Option<SessionRow> = sqlx::query_as(
            "SELECT s.token_hash, s.key_id, s.user_id, s.created_at, s.last_seen_at, \
             s.expires_at FROM sessions s JOIN login_keys k ON k.key_id = s.key_id \
             WHERE s.token_hash = ? AND k.revoked_at IS NULL",
        )
        .bind(&token_hash[..])
        .fetch_optional(&self.pool)
        .await?;
        row.map(SessionRecord::try_from).transpose()
    }

    async fn sessions(&self, token_hashes: &[[u8; 32]]) -> Result<Vec<SessionRecord>, StoreError> {
        let mut found = Vec::new();
        for chunk in token_hashes.chunks(CHUNK) {
            let mut query = QueryBuilder::<DB>::new(
                "SELECT s.token_hash, s.key_id, s.user_id, s.created_at, s.last_seen_at, \
                 s.expires_at FROM sessions s JOIN login_keys k ON k.key_id = s.key_id \
                 WHERE k.revoked_at IS NULL AND s.token_hash IN (",
            );
            let mut hashes = query.separated(", ");
            for hash in chunk {
                hashes.push_bind(&hash[..]);
            }
            query.push(")");
            let rows: Vec<SessionRow> = query.build_query_as().fetch_all(&self.pool).await?;
            for row in rows {
                found.push(SessionRecord::try_from(row)?);
            }
        }
        Ok(found)
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
        Ok(DB::rows_affected(&done) == 1)
    }

    async fn delete_sessions_of_key(&self, key_id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE key_id = ?")
            .bind(key_id)
            .execute(&self.pool)
            .await?;
        Ok(DB::rows_affected(&done))
    }

    async fn count_live_sessions(
        &self,
        key_id: &str,
        now: i64,
        idle_ms: i64,
    ) -> Result<u64, StoreError> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM sessions WHERE key_id = ? AND expires_at > ? \
             AND last_seen_at > ?",
        )
        .bind(key_id)
        .bind(now)
        .bind(now.saturating_sub(idle_ms))
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
