//! The audit log: logins, failures, key creation and revocation. Never tokens or nonces.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, QueryBuilder, Type};

use super::sql::{self, CHUNK, Dialect, SqlStore};
use super::{AuditEntry, AuditEvent, StoreError};
use crate::time::now_ms;

/// An append-only log of security events.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    /// Appends an entry.
    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.append(std::slice::from_ref(entry), &[]).await
    }

    /// Appends entries and records logins (a key's id, when it signed in) in one
    /// transaction.
    async fn append(
        &self,
        entries: &[AuditEntry],
        logins: &[(String, i64)],
    ) -> Result<(), StoreError>;

    /// The newest `limit` entries, newest first.
    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
}

/// Each key's latest login in `logins`, once per key.
pub(super) fn latest_logins(logins: &[(String, i64)]) -> Vec<(&str, i64)> {
    let mut latest: Vec<(&str, i64)> = logins.iter().map(|(k, at)| (k.as_str(), *at)).collect();
    // Newest first within a key, so deduplication keeps the latest.
    latest.sort_unstable_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
    latest.dedup_by(|later, kept| later.0 == kept.0);
    latest
}

/// An `audit_log` row.
#[derive(sqlx::FromRow)]
struct AuditRow {
    event: String,
    key_id: Option<String>,
    user_id: Option<String>,
    ip: Option<String>,
    detail: Option<String>,
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> Result<Self, StoreError> {
        Ok(AuditEntry {
            event: AuditEvent::parse(&row.event)
                .ok_or_else(|| sql::corrupt("audit event", &row.event))?,
            key_id: row.key_id,
            user_id: row.user_id,
            ip: row.ip,
            detail: row.detail,
        })
    }
}

#[async_trait]
impl<DB: Dialect> AuditLog for SqlStore<DB>
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
    async fn append(
        &self,
        entries: &[AuditEntry],
        logins: &[(String, i64)],
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let logins = latest_logins(logins);
        let mut tx = self.pool.begin().await?;
        // One statement for the batch's keys, not one each: a batch holds the logins
        // of every concurrent client.
        for chunk in logins.chunks(CHUNK) {
            let mut query =
                QueryBuilder::<DB>::new("UPDATE login_keys SET last_login_at = CASE key_id");
            for (key_id, at) in chunk {
                query.push(" WHEN ").push_bind(*key_id);
                query.push(" THEN ").push_bind(*at);
            }
            query.push(" END WHERE key_id IN (");
            let mut ids = query.separated(", ");
            for (key_id, _) in chunk {
                ids.push_bind(*key_id);
            }
            query.push(")");
            query.build().execute(&mut *tx).await?;
        }
        for chunk in entries.chunks(CHUNK) {
            let mut query = QueryBuilder::<DB>::new(
                "INSERT INTO audit_log (at, event, key_id, user_id, ip, detail) ",
            );
            query.push_values(chunk, |mut row, entry| {
                row.push_bind(now)
                    .push_bind(entry.event.as_str())
                    .push_bind(entry.key_id.as_deref())
                    .push_bind(entry.user_id.as_deref())
                    .push_bind(entry.ip.as_deref())
                    .push_bind(entry.detail.as_deref());
            });
            query.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT event, key_id, user_id, ip, detail FROM audit_log ORDER BY id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(AuditEntry::try_from).collect()
    }
}
