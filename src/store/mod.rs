//! The daemon's durable state, behind one trait with a SQLite and a MariaDB backend.
//!
//! The core never sees SQL: it calls [`Store`] through an `Arc<dyn Store>`. Each
//! backend has its own migration set (`migrations/sqlite`, `migrations/mysql`), run at
//! start-up.

mod mysql;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, UserId};

pub use mysql::MysqlStore;
pub use sqlite::SqliteStore;

use crate::config::{DatabaseSettings, DatabaseUrl};

/// A database failure; its text never reaches a client.
#[derive(Debug, thiserror::Error)]
#[error("database: {0}")]
pub struct StoreError(#[from] sqlx::Error);

/// A migration failure at start-up.
#[derive(Debug, thiserror::Error)]
#[error("database migrations: {0}")]
pub struct MigrateError(#[from] sqlx::migrate::MigrateError);

/// One room event as the application service received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEvent {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub event_type: String,
    pub state_key: Option<String>,
    pub origin_server_ts: i64,
    /// The event exactly as Synapse sent it.
    pub json: String,
}

/// A transaction pushed by the homeserver, identified by its id and the hash of its body.
#[derive(Debug, Clone)]
pub struct IncomingTransaction {
    pub txn_id: String,
    pub body_sha256: [u8; 32],
    pub events: Vec<RoomEvent>,
}

/// What recording a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionOutcome {
    /// This (txn_id, body) was recorded before: nothing was done.
    Duplicate,
    /// Recorded; `new_events` are the events not seen in any earlier transaction.
    Recorded { new_events: Vec<RoomEvent> },
}

/// A puppet user the daemon registered on the homeserver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Puppet {
    pub user_id: OwnedUserId,
    pub display_name: Option<String>,
}

/// A key to register, with its user.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub key_id: String,
    pub fingerprint: String,
    pub public_key: [u8; 32],
    pub user_id: OwnedUserId,
    pub name: Option<String>,
    /// The user's display name, set when the user is created.
    pub display_name: Option<String>,
}

/// A registered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key_id: String,
    pub fingerprint: String,
    pub public_key: [u8; 32],
    pub user_id: OwnedUserId,
    pub name: Option<String>,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A ChatSender user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub user_id: OwnedUserId,
    pub display_name: Option<String>,
}

/// A login session, identified by the SHA-256 of its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub token_hash: [u8; 32],
    pub key_id: String,
    pub user_id: OwnedUserId,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// The absolute end of the session, whatever its activity.
    pub expires_at: i64,
}

/// One line of the audit log. Never holds tokens or nonces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub event: String,
    pub key_id: Option<String>,
    pub user_id: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<String>,
}

/// A room as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomRecord {
    pub room_id: String,
    pub name: Option<String>,
    pub is_direct: bool,
    pub encrypted: bool,
}

/// A user's latest membership of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRecord {
    pub room_id: String,
    pub user_id: String,
    /// `join`, `invite`, `leave`, `ban` or `knock`.
    pub membership: String,
    pub display_name: Option<String>,
    /// Who made the change (the inviter of an invite).
    pub sender: String,
}

/// One entry of a user's live stream (embedded mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: i64,
    pub kind: String,
    pub payload: String,
}

/// The daemon's durable state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is, for logs and `/ready`.
    fn backend(&self) -> &'static str;

    /// A round trip to the database.
    async fn health(&self) -> Result<(), StoreError>;

    /// Records a transaction and its events atomically, once: a second call with the
    /// same (txn_id, body hash) is a [`TransactionOutcome::Duplicate`], and an event
    /// already recorded by an earlier transaction is not new again.
    async fn record_transaction(
        &self,
        txn: &IncomingTransaction,
    ) -> Result<TransactionOutcome, StoreError>;

    /// The events recorded for a room, oldest first.
    async fn room_events(&self, room_id: &ruma::RoomId) -> Result<Vec<RoomEvent>, StoreError>;

    /// Remembers a registered puppet (idempotent; updates the display name).
    async fn save_puppet(&self, puppet: &Puppet) -> Result<(), StoreError>;

    /// A puppet registered earlier, if any.
    async fn puppet(&self, user_id: &UserId) -> Result<Option<Puppet>, StoreError>;

    /// Registers keys (creating their users when new) and audits each, all or nothing.
    async fn insert_keys(&self, keys: &[NewKey]) -> Result<(), StoreError>;

    /// The key with this fingerprint, revoked or not.
    async fn key_by_fingerprint(&self, fingerprint: &str) -> Result<Option<KeyRecord>, StoreError>;

    /// Keys whose fingerprint starts with `prefix` (lowercase hex).
    async fn keys_by_fingerprint_prefix(&self, prefix: &str) -> Result<Vec<KeyRecord>, StoreError>;

    /// Every key, oldest first; revoked ones only with `include_revoked`.
    async fn keys(&self, include_revoked: bool) -> Result<Vec<KeyRecord>, StoreError>;

    /// Marks a key revoked at `at`; false if it already was.
    async fn revoke_key(&self, key_id: &str, at: i64) -> Result<bool, StoreError>;

    /// Notes a successful login with the key.
    async fn record_login(&self, key_id: &str, at: i64) -> Result<(), StoreError>;

    /// A ChatSender user.
    async fn user(&self, user_id: &UserId) -> Result<Option<UserRecord>, StoreError>;

    /// Stores a new session (embedded mode).
    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError>;

    /// The session with this token hash, if it exists and its key is not revoked.
    async fn session(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError>;

    /// Records activity on a session.
    async fn touch_session(&self, token_hash: &[u8; 32], at: i64) -> Result<(), StoreError>;

    /// Ends a session; false if there was none.
    async fn delete_session(&self, token_hash: &[u8; 32]) -> Result<bool, StoreError>;

    /// Ends every session of a key; returns how many there were.
    async fn delete_sessions_of_key(&self, key_id: &str) -> Result<u64, StoreError>;

    /// Sessions of a key that are still within both lifetimes at `now`.
    async fn count_live_sessions(
        &self,
        key_id: &str,
        now: i64,
        idle_ms: i64,
    ) -> Result<u64, StoreError>;

    /// Appends to the audit log.
    async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;

    /// The newest `limit` audit entries, newest first.
    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;

    /// Recorded events not yet fed to the room index and streams, oldest first.
    async fn pending_events(&self, limit: u32) -> Result<Vec<RoomEvent>, StoreError>;

    /// Marks events as fed to the room index and streams.
    async fn mark_ingested(&self, event_ids: &[&str]) -> Result<(), StoreError>;

    /// Creates the room's record if missing and applies the given changes.
    async fn update_room(
        &self,
        room_id: &str,
        name: Option<&str>,
        is_direct: Option<bool>,
        encrypted: Option<bool>,
    ) -> Result<(), StoreError>;

    /// A room's record.
    async fn room(&self, room_id: &str) -> Result<Option<RoomRecord>, StoreError>;

    /// Sets a user's membership of a room.
    async fn set_membership(&self, membership: &MembershipRecord) -> Result<(), StoreError>;

    /// Records a membership only if none is known for (room, user); true if stored.
    async fn add_membership_if_absent(
        &self,
        membership: &MembershipRecord,
    ) -> Result<bool, StoreError>;

    /// Sets a membership only while the current one is `current`; true if changed.
    async fn replace_membership(
        &self,
        membership: &MembershipRecord,
        current: &str,
    ) -> Result<bool, StoreError>;

    /// A user's membership of a room (`join`, `invite`, …) if any.
    async fn membership(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<Option<MembershipRecord>, StoreError>;

    /// The room's members with this membership.
    async fn members(
        &self,
        room_id: &str,
        membership: &str,
    ) -> Result<Vec<MembershipRecord>, StoreError>;

    /// The user's rooms with this membership.
    async fn rooms_of(
        &self,
        user_id: &str,
        membership: &str,
    ) -> Result<Vec<MembershipRecord>, StoreError>;

    /// The newest message-like event of a room that the daemon received.
    async fn last_message(&self, room_id: &str) -> Result<Option<RoomEvent>, StoreError>;

    /// The event sent earlier for (user, txn_id).
    async fn sent_message(&self, user_id: &str, txn_id: &str)
    -> Result<Option<String>, StoreError>;

    /// Remembers the event sent for (user, txn_id).
    async fn save_sent_message(
        &self,
        user_id: &str,
        txn_id: &str,
        event_id: &str,
    ) -> Result<(), StoreError>;

    /// Appends to a user's stream unless `dedup_key` is there already; the new id.
    async fn append_user_event(
        &self,
        user_id: &str,
        dedup_key: &str,
        kind: &str,
        payload: &str,
    ) -> Result<Option<i64>, StoreError>;

    /// A user's stream entries after `after`, oldest first.
    async fn user_events_after(
        &self,
        user_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StreamEntry>, StoreError>;

    /// The id of the user's newest stream entry.
    async fn latest_user_event(&self, user_id: &str) -> Result<Option<i64>, StoreError>;

    /// The id of the user's oldest retained stream entry.
    async fn oldest_user_event(&self, user_id: &str) -> Result<Option<i64>, StoreError>;

    /// Drops stream entries older than `before` (ms) beyond each user's newest `keep`.
    async fn prune_user_events(&self, before: i64, keep: u32) -> Result<u64, StoreError>;

    /// Every user with at least one active key.
    async fn active_users(&self) -> Result<Vec<UserRecord>, StoreError>;

    /// Sets a user's display name.
    async fn set_display_name(
        &self,
        user_id: &UserId,
        display_name: &str,
    ) -> Result<(), StoreError>;
}

/// Connects to the configured database and runs its migrations.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Arc<dyn Store>> {
    use anyhow::Context;
    Ok(match &settings.url {
        DatabaseUrl::Sqlite(url) => Arc::new(
            SqliteStore::connect(url, settings.max_connections)
                .await
                .with_context(|| format!("database.url: cannot open SQLite database `{url}`"))?,
        ),
        DatabaseUrl::Mysql(url) => Arc::new(
            MysqlStore::connect(url, settings.max_connections)
                .await
                .context("database.url: cannot connect to MariaDB")?,
        ),
    })
}

pub(crate) fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
