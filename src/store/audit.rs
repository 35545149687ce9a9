//! The audit log: logins, failures, key creation and revocation. Never tokens or nonces.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use super::sql::{self, Dialect, SqlStore};
use super::{AuditEntry, AuditEvent, StoreError};
use crate::time::now_ms;

/// An append-only log of security events.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    /// Appends an entry.
    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;

    /// The newest `limit` entries, newest first.
    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
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
    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at, event, key_id, user_id, ip, detail) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(now_ms())
        .bind(entry.event.as_str())
        .bind(entry.key_id.as_deref())
        .bind(entry.user_id.as_deref())
        .bind(entry.ip.as_deref())
        .bind(entry.detail.as_deref())
        .execute(&self.pool)
        .await?;
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
