//! Login keys: `login_keys`, with the users they belong to.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};

use super::sql::{self, CHUNK, Dialect, SqlStore};
use super::{AuditEvent, KeyRecord, NewKey, StoreError};
use crate::time::now_ms;

/// Registered public keys.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Registers keys (creating their users when new, with the display name) and
    /// audits each, all or nothing.
    async fn insert_keys(&self, keys: &[NewKey]) -> Result<(), StoreError>;

    /// The key with this fingerprint, revoked or not.
    async fn key_by_fingerprint(&self, fingerprint: &str) -> Result<Option<KeyRecord>, StoreError>;

    /// Keys whose fingerprint starts with `prefix` (lowercase hex), oldest first.
    async fn keys_by_fingerprint_prefix(&self, prefix: &str) -> Result<Vec<KeyRecord>, StoreError>;

    /// Every key, oldest first; revoked ones only with `include_revoked`.
    async fn keys(&self, include_revoked: bool) -> Result<Vec<KeyRecord>, StoreError>;

    /// Marks a key revoked at `at`; false if it already was.
    async fn revoke_key(&self, key_id: &str, at: i64) -> Result<bool, StoreError>;
}

/// A `login_keys` row.
#[derive(sqlx::FromRow)]
struct KeyRow {
    key_id: String,
    fingerprint: String,
    public_key: Vec<u8>,
    user_id: String,
    name: Option<String>,
    created_at: i64,
    last_login_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<KeyRow> for KeyRecord {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        Ok(KeyRecord {
            key_id: row.key_id,
            fingerprint: row.fingerprint,
            public_key: sql::hash32("public_key", row.public_key)?,
            user_id: sql::id("user_id", row.user_id)?,
            name: row.name,
            created_at: row.created_at,
            last_login_at: row.last_login_at,
            revoked_at: row.revoked_at,
        })
    }
}

fn select_keys(filter: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!(
        "SELECT key_id, fingerprint, public_key, user_id, name, created_at, last_login_at, \
         revoked_at FROM login_keys {filter}"
    ))
}

#[async_trait]
impl<DB: Dialect> KeyStore for SqlStore<DB>
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
    async fn insert_keys(&self, keys: &[NewKey]) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        for chunk in keys.chunks(CHUNK) {
            QueryBuilder::<DB>::new(format!(
                "{} INTO users (user_id, display_name, created_at) ",
                DB::INSERT_IGNORE
            ))
            .push_values(chunk, |mut row, key| {
                row.push_bind(key.user_id.as_str())
                    .push_bind(key.display_name.as_deref())
                    .push_bind(now);
            })
            .build()
            .execute(&mut *tx)
            .await?;
            QueryBuilder::<DB>::new(
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
            QueryBuilder::<DB>::new("INSERT INTO audit_log (at, event, key_id, user_id) ")
                .push_values(chunk, |mut row, key| {
                    row.push_bind(now)
                        .push_bind(AuditEvent::KeyCreated.as_str())
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
        let row: Option<KeyRow> = sqlx::query_as(select_keys("WHERE fingerprint = ?"))
            .bind(fingerprint)
            .fetch_optional(&self.pool)
            .await?;
        row.map(KeyRecord::try_from).transpose()
    }

    async fn keys_by_fingerprint_prefix(&self, prefix: &str) -> Result<Vec<KeyRecord>, StoreError> {
        // The prefix is hex, so it holds no LIKE wildcards.
        let filter = "WHERE fingerprint LIKE ? ORDER BY created_at, key_id";
        let pattern = format!("{prefix}%");
        let rows: Vec<KeyRow> = sqlx::query_as(select_keys(filter))
            .bind(pattern.as_str())
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
        let rows: Vec<KeyRow> = sqlx::query_as(select_keys(filter))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(KeyRecord::try_from).collect()
    }

    async fn revoke_key(&self, key_id: &str, at: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE login_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(key_id)
        .execute(&self.pool)
        .await?;
        Ok(DB::rows_affected(&done) == 1)
    }
}
