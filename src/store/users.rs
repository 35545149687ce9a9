//! ChatSender users: one per person, a puppet on the homeserver once registered there.
//! The display name is kept here and nowhere else.

use async_trait::async_trait;
use ruma::UserId;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use super::sql::{self, Dialect, SqlStore};
use super::{StoreError, UserRecord};
use crate::time::now_ms;

/// Users and their display names.
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// A user.
    async fn user(&self, user_id: &UserId) -> Result<Option<UserRecord>, StoreError>;

    /// Creates the user unless it exists (an existing user is left as it is).
    async fn create_user(
        &self,
        user_id: &UserId,
        display_name: Option<&str>,
    ) -> Result<(), StoreError>;

    /// Notes that the user's puppet was registered on the homeserver.
    async fn mark_registered(&self, user_id: &UserId, at: i64) -> Result<(), StoreError>;

    /// Sets a user's display name.
    async fn set_display_name(&self, user_id: &UserId, name: &str) -> Result<(), StoreError>;

    /// Every user with at least one active key, by user id.
    async fn active_users(&self) -> Result<Vec<UserRecord>, StoreError>;
}

/// A `users` row.
#[derive(sqlx::FromRow)]
struct UserRow {
    user_id: String,
    display_name: Option<String>,
    registered_at: Option<i64>,
}

impl TryFrom<UserRow> for UserRecord {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        Ok(UserRecord {
            user_id: sql::id("user_id", row.user_id)?,
            display_name: row.display_name,
            registered_at: row.registered_at,
        })
    }
}

#[async_trait]
impl<DB: Dialect> UserStore for SqlStore<DB>
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
    async fn user(&self, user_id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT user_id, display_name, registered_at FROM users WHERE user_id = ?",
        )
        .bind(user_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(UserRecord::try_from).transpose()
    }

    async fn create_user(
        &self,
        user_id: &UserId,
        display_name: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(Self::insert_ignore(
            "INTO users (user_id, display_name, created_at) VALUES (?, ?, ?)",
        ))
        .bind(user_id.as_str())
        .bind(display_name)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn mark_registered(&self, user_id: &UserId, at: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET registered_at = ? WHERE user_id = ?")
            .bind(at)
            .bind(user_id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_display_name(&self, user_id: &UserId, name: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET display_name = ? WHERE user_id = ?")
            .bind(name)
            .bind(user_id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn active_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows: Vec<UserRow> = sqlx::query_as(
            "SELECT u.user_id, u.display_name, u.registered_at FROM users u \
             WHERE EXISTS (SELECT 1 FROM login_keys k \
                           WHERE k.user_id = u.user_id AND k.revoked_at IS NULL) \
             ORDER BY u.user_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(UserRecord::try_from).collect()
    }
}
