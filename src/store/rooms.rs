//! The room index: rooms and memberships as the feed learns them from the homeserver.

use async_trait::async_trait;
use ruma::events::room::member::MembershipState;
use ruma::{RoomId, UserId};
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Type};

use super::sql::{self, Dialect, SqlStore};
use super::{MembershipRecord, RoomRecord, RoomUpdate, StoreError};
use crate::time::now_ms;

/// Rooms and who is in them.
#[async_trait]
pub trait RoomIndex: Send + Sync + 'static {
    /// Creates the room's record if missing and applies `update`.
    async fn update_room(&self, room_id: &RoomId, update: &RoomUpdate) -> Result<(), StoreError>;

    /// A room's record.
    async fn room(&self, room_id: &RoomId) -> Result<Option<RoomRecord>, StoreError>;

    /// Sets a user's membership of a room.
    async fn set_membership(&self, membership: &MembershipRecord) -> Result<(), StoreError>;

    /// Records a membership only if none is known for (room, user); true if stored.
    async fn add_membership_if_absent(
        &self,
        membership: &MembershipRecord,
    ) -> Result<bool, StoreError>;

    /// Sets a membership only while the current one is `current`; true if changed.
    /// A display name of `None` keeps the one recorded.
    async fn replace_membership(
        &self,
        membership: &MembershipRecord,
        current: &MembershipState,
    ) -> Result<bool, StoreError>;

    /// A user's membership of a room, if any is known.
    async fn membership(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<MembershipRecord>, StoreError>;

    /// The room's members with this membership, by user id.
    async fn members(
        &self,
        room_id: &RoomId,
        membership: &MembershipState,
    ) -> Result<Vec<MembershipRecord>, StoreError>;

    /// The user's rooms with this membership, most recently changed first.
    async fn rooms_of(
        &self,
        user_id: &UserId,
        membership: &MembershipState,
    ) -> Result<Vec<MembershipRecord>, StoreError>;
}

/// A `rooms` row. A cleared name is kept as `''`: `NULL` means "never set".
#[derive(sqlx::FromRow)]
struct RoomRow {
    room_id: String,
    name: Option<String>,
    is_direct: i64,
    encrypted: i64,
}

impl TryFrom<RoomRow> for RoomRecord {
    type Error = StoreError;

    fn try_from(row: RoomRow) -> Result<Self, StoreError> {
        Ok(RoomRecord {
            room_id: sql::id("room_id", row.room_id)?,
            name: row.name.filter(|n| !n.is_empty()),
            is_direct: row.is_direct != 0,
            encrypted: row.encrypted != 0,
        })
    }
}

/// A `memberships` row.
#[derive(sqlx::FromRow)]
struct MembershipRow {
    room_id: String,
    user_id: String,
    membership: String,
    display_name: Option<String>,
    sender: String,
}

impl TryFrom<MembershipRow> for MembershipRecord {
    type Error = StoreError;

    fn try_from(row: MembershipRow) -> Result<Self, StoreError> {
        Ok(MembershipRecord {
            room_id: sql::id("room_id", row.room_id)?,
            user_id: sql::id("user_id", row.user_id)?,
            membership: MembershipState::from(row.membership),
            display_name: row.display_name,
            sender: sql::id("sender", row.sender)?,
        })
    }
}

const MEMBERSHIP_COLUMNS: &str = "SELECT room_id, user_id, membership, display_name, sender \
                                  FROM memberships";

fn select_memberships(filter: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!("{MEMBERSHIP_COLUMNS} {filter}"))
}

#[async_trait]
impl<DB: Dialect> RoomIndex for SqlStore<DB>
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
    async fn update_room(&self, room_id: &RoomId, update: &RoomUpdate) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(Self::insert_ignore(
            "INTO rooms (room_id, updated_at) VALUES (?, ?)",
        ))
        .bind(room_id.as_str())
        .bind(now)
        .execute(&self.writer)
        .await?;
        let name = update.name.as_ref().map(|n| n.as_deref().unwrap_or(""));
        sqlx::query(
            "UPDATE rooms SET name = COALESCE(?, name), is_direct = COALESCE(?, is_direct), \
             encrypted = COALESCE(?, encrypted), updated_at = ? WHERE room_id = ?",
        )
        .bind(name)
        .bind(update.is_direct.map(i64::from))
        .bind(update.encrypted.map(i64::from))
        .bind(now)
        .bind(room_id.as_str())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn room(&self, room_id: &RoomId) -> Result<Option<RoomRecord>, StoreError> {
        let row: Option<RoomRow> = sqlx::query_as(
            "SELECT room_id, name, is_direct, encrypted FROM rooms WHERE room_id = ?",
        )
        .bind(room_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(RoomRecord::try_from).transpose()
    }

    async fn set_membership(&self, m: &MembershipRecord) -> Result<(), StoreError> {
        if self.add_membership_if_absent(m).await? {
            return Ok(());
        }
        sqlx::query(
            "UPDATE memberships SET membership = ?, display_name = ?, sender = ?, updated_at = ? \
             WHERE room_id = ? AND user_id = ?",
        )
        .bind(m.membership.as_str())
        .bind(m.display_name.as_deref())
        .bind(m.sender.as_str())
        .bind(now_ms())
        .bind(m.room_id.as_str())
        .bind(m.user_id.as_str())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn add_membership_if_absent(&self, m: &MembershipRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(Self::insert_ignore(
            "INTO memberships (room_id, user_id, membership, display_name, sender, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        ))
        .bind(m.room_id.as_str())
        .bind(m.user_id.as_str())
        .bind(m.membership.as_str())
        .bind(m.display_name.as_deref())
        .bind(m.sender.as_str())
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        Ok(DB::rows_affected(&done) == 1)
    }

    async fn replace_membership(
        &self,
        m: &MembershipRecord,
        current: &MembershipState,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE memberships SET membership = ?, display_name = COALESCE(?, display_name), \
             sender = ?, updated_at = ? WHERE room_id = ? AND user_id = ? AND membership = ?",
        )
        .bind(m.membership.as_str())
        .bind(m.display_name.as_deref())
        .bind(m.sender.as_str())
        .bind(now_ms())
        .bind(m.room_id.as_str())
        .bind(m.user_id.as_str())
        .bind(current.as_str())
        .execute(&self.pool)
        .await?;
        Ok(DB::rows_affected(&done) == 1)
    }

    async fn membership(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<MembershipRecord>, StoreError> {
        let row: Option<MembershipRow> =
            sqlx::query_as(select_memberships("WHERE room_id = ? AND user_id = ?"))
                .bind(room_id.as_str())
                .bind(user_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        row.map(MembershipRecord::try_from).transpose()
    }

    async fn members(
        &self,
        room_id: &RoomId,
        membership: &MembershipState,
    ) -> Result<Vec<MembershipRecord>, StoreError> {
        let filter = "WHERE room_id = ? AND membership = ? ORDER BY user_id";
        let rows: Vec<MembershipRow> = sqlx::query_as(select_memberships(filter))
            .bind(room_id.as_str())
            .bind(membership.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(MembershipRecord::try_from).collect()
    }

    async fn rooms_of(
        &self,
        user_id: &UserId,
        membership: &MembershipState,
    ) -> Result<Vec<MembershipRecord>, StoreError> {
        let filter = "WHERE user_id = ? AND membership = ? ORDER BY updated_at DESC";
        let rows: Vec<MembershipRow> = sqlx::query_as(select_memberships(filter))
            .bind(user_id.as_str())
            .bind(membership.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(MembershipRecord::try_from).collect()
    }
}
