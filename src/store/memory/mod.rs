//! An in-memory store for the core's unit tests: the same promises as the SQL
//! backends (once per transaction, once per stream key, …), no I/O. A test can make
//! any concern fail with [`MemoryStore::fail`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};

use super::*;

mod rooms;

/// Everything, behind one lock.
#[derive(Default)]
pub(super) struct State {
    pub(super) transactions: HashSet<(String, [u8; 32])>,
    /// Events in arrival order (an event's place in the log is its index + 1), with
    /// whether the feed has handled them.
    pub(super) events: Vec<(EventRecord, bool)>,
    /// (room, user) → read up to (event, its position in `events`, from 1).
    pub(super) receipts: HashMap<(OwnedRoomId, OwnedUserId), (OwnedEventId, usize)>,
    pub(super) sent: HashMap<(OwnedUserId, OwnedRoomId, String), OwnedEventId>,
    pub(super) keys: Vec<KeyRecord>,
    pub(super) users: BTreeMap<OwnedUserId, UserRecord>,
    pub(super) sessions: HashMap<[u8; 32], SessionRecord>,
    pub(super) audit: Vec<AuditEntry>,
    pub(super) rooms: HashMap<OwnedRoomId, RoomRecord>,
    /// (room, user) → membership, with a counter for "most recently changed".
    pub(super) memberships: BTreeMap<(OwnedRoomId, OwnedUserId), (MembershipRecord, u64)>,
    pub(super) changes: u64,
    pub(super) streams: Vec<(OwnedUserId, String, StreamEntry, i64)>,
    pub(super) next_stream_id: i64,
    /// Concerns that fail on purpose, by name (`"rooms"`, `"streams"`, …).
    pub(super) failing: HashSet<&'static str>,
}

/// The store, in memory.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state, unless `concern` was made to fail.
    pub(super) fn at(&self, concern: &'static str) -> Result<MutexGuard<'_, State>, StoreError> {
        let state = self.state();
        if state.failing.contains(concern) {
            return Err(StoreError::Corrupt(format!("{concern} made to fail")));
        }
        Ok(state)
    }

    /// The ids of the events the feed has not handled yet.
    pub fn pending_events_now(&self) -> Vec<String> {
        let s = self.state();
        let pending = s.events.iter().filter(|(_, fed)| !fed);
        pending.map(|(e, _)| e.event_id.to_string()).collect()
    }

    /// Makes every call of `concern` fail (or work again).
    pub fn fail(&self, concern: &'static str, failing: bool) {
        let mut state = self.state();
        if failing {
            state.failing.insert(concern);
        } else {
            state.failing.remove(concern);
        }
    }
}

#[async_trait]
impl StoreHealth for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.at("health").map(drop)
    }
}

/// Where the event at `seq` (its place in the log, from 1) is in `State::events`.
fn index_of(seq: i64) -> Option<usize> {
    usize::try_from(seq - 1).ok()
}

#[async_trait]
impl EventLog for MemoryStore {
    async fn record_transaction(
        &self,
        txn: &IncomingTransaction,
    ) -> Result<TransactionOutcome, StoreError> {
        let mut s = self.at("events")?;
        if !s.transactions.insert((txn.txn_id.clone(), txn.body_sha256)) {
            return Ok(TransactionOutcome::Duplicate);
        }
        let mut new = Vec::new();
        for (index, event) in txn.events.iter().enumerate() {
            if !s.events.iter().any(|(e, _)| e.event_id == event.event_id) {
                s.events.push((event.clone(), false));
                new.push((s.events.len() as i64, index));
            }
        }
        Ok(TransactionOutcome::Recorded { new })
    }

    async fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn identity(&self) -> Result<String, StoreError> {
        Ok("memory".to_owned())
    }

    async fn room_events(&self, room_id: &RoomId) -> Result<Vec<EventRecord>, StoreError> {
        let s = self.at("events")?;
        let events = s.events.iter().filter(|(e, _)| e.room_id == room_id);
        Ok(events.map(|(e, _)| e.clone()).collect())
    }

    async fn event(&self, event_id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        let s = self.at("events")?;
        let found = s.events.iter().find(|(e, _)| e.event_id == event_id);
        Ok(found.map(|(e, _)| e.clone()))
    }

    async fn last_message(&self, room_id: &RoomId) -> Result<Option<EventRecord>, StoreError> {
        let s = self.at("events")?;
        let mut messages = s.events.iter().rev().map(|(e, _)| e);
        Ok(messages
            .find(|e| e.room_id == room_id && e.is_message())
            .cloned())
    }

    async fn pending(&self, limit: u32) -> Result<Vec<i64>, StoreError> {
        let s = self.at("events")?;
        let pending = s.events.iter().zip(1..).filter(|((_, fed), _)| !fed);
        Ok(pending.take(limit as usize).map(|(_, seq)| seq).collect())
    }

    async fn events_at(&self, seqs: &[i64]) -> Result<Vec<(i64, EventRecord)>, StoreError> {
        let s = self.at("events")?;
        let mut seqs = seqs.to_vec();
        seqs.sort_unstable();
        let at = |seq: i64| index_of(seq).and_then(|i| s.events.get(i));
        Ok(seqs
            .into_iter()
            .filter_map(|seq| at(seq).map(|(e, _)| (seq, e.clone())))
            .collect())
    }

    async fn mark_fed(&self, seqs: &[i64]) -> Result<(), StoreError> {
        let mut s = self.at("events")?;
        for seq in seqs {
            if let Some((_, fed)) = index_of(*seq).and_then(|i| s.events.get_mut(i)) {
                *fed = true;
            }
        }
        Ok(())
    }

    async fn sent_message(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        txn_id: &str,
    ) -> Result<Option<OwnedEventId>, StoreError> {
        let s = self.at("events")?;
        let key = (user_id.to_owned(), room_id.to_owned(), txn_id.to_owned());
        Ok(s.sent.get(&key).cloned())
    }

    async fn save_sent_message(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        txn_id: &str,
        event_id: &EventId,
    ) -> Result<(), StoreError> {
        let mut s = self.at("events")?;
        let key = (user_id.to_owned(), room_id.to_owned(), txn_id.to_owned());
        s.sent.entry(key).or_insert_with(|| event_id.to_owned());
        Ok(())
    }
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn insert_keys(&self, keys: &[NewKey]) -> Result<(), StoreError> {
        let mut s = self.at("keys")?;
        let now = crate::time::now_ms();
        if keys
            .iter()
            .any(|k| s.keys.iter().any(|e| e.key_id == k.key_id))
        {
            return Err(StoreError::Corrupt("duplicate key".into()));
        }
        for key in keys {
            s.users
                .entry(key.user_id.clone())
                .or_insert_with(|| UserRecord {
                    user_id: key.user_id.clone(),
                    display_name: key.display_name.clone(),
                    registered_at: None,
                });
            s.keys.push(KeyRecord {
                key_id: key.key_id.clone(),
                fingerprint: key.fingerprint.clone(),
                public_key: key.public_key,
                user_id: key.user_id.clone(),
                name: key.name.clone(),
                created_at: now,
                last_login_at: None,
                revoked_at: None,
            });
            s.audit.push(AuditEntry {
                event: AuditEvent::KeyCreated,
                key_id: Some(key.key_id.clone()),
                user_id: Some(key.user_id.to_string()),
                ip: None,
                detail: None,
            });
        }
        Ok(())
    }

    async fn key_by_fingerprint(&self, fingerprint: &str) -> Result<Option<KeyRecord>, StoreError> {
        let s = self.at("keys")?;
        Ok(s.keys
            .iter()
            .find(|k| k.fingerprint == fingerprint)
            .cloned())
    }

    async fn keys_by_fingerprint_prefix(&self, prefix: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let s = self.at("keys")?;
        let keys = s.keys.iter().filter(|k| k.fingerprint.starts_with(prefix));
        Ok(keys.cloned().collect())
    }

    async fn keys(&self, include_revoked: bool) -> Result<Vec<KeyRecord>, StoreError> {
        let s = self.at("keys")?;
        let keys = s
            .keys
            .iter()
            .filter(|k| include_revoked || k.revoked_at.is_none());
        Ok(keys.cloned().collect())
    }

    async fn revoke_key(&self, key_id: &str, at: i64) -> Result<bool, StoreError> {
        let mut s = self.at("keys")?;
        let key = s.keys.iter_mut().find(|k| k.key_id == key_id);
        Ok(match key {
            Some(k) if k.revoked_at.is_none() => {
                k.revoked_at = Some(at);
                true
            }
            _ => false,
        })
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create_sessions(&self, sessions: &[SessionRecord]) -> Result<(), StoreError> {
        let mut s = self.at("sessions")?;
        for session in sessions {
            s.sessions.insert(session.token_hash, session.clone());
        }
        Ok(())
    }

    async fn session(&self, token_hash: &[u8; 32]) -> Result<Option<SessionRecord>, StoreError> {
        let s = self.at("sessions")?;
        let session = s.sessions.get(token_hash).filter(|session| {
            s.keys
                .iter()
                .any(|k| k.key_id == session.key_id && k.revoked_at.is_none())
        });
        Ok(session.cloned())
    }

    async fn sessions(&self, token_hashes: &[[u8; 32]]) -> Result<Vec<SessionRecord>, StoreError> {
        let mut found = Vec::new();
        for hash in token_hashes {
            found.extend(self.session(hash).await?);
        }
        Ok(found)
    }

    async fn touch_session(&self, token_hash: &[u8; 32], at: i64) -> Result<(), StoreError> {
        let mut s = self.at("sessions")?;
        if let Some(session) = s.sessions.get_mut(token_hash) {
            session.last_seen_at = at;
        }
        Ok(())
    }

    async fn delete_session(&self, token_hash: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self.at("sessions")?.sessions.remove(token_hash).is_some())
    }

    async fn delete_sessions_of_key(&self, key_id: &str) -> Result<u64, StoreError> {
        let mut s = self.at("sessions")?;
        let before = s.sessions.len();
        s.sessions.retain(|_, session| session.key_id != key_id);
        Ok((before - s.sessions.len()) as u64)
    }

    async fn count_live_sessions(
        &self,
        key_id: &str,
        now: i64,
        idle_ms: i64,
    ) -> Result<u64, StoreError> {
        let s = self.at("sessions")?;
        let live = s.sessions.values().filter(|session| {
            session.key_id == key_id
                && session.expires_at > now
                && session.last_seen_at > now - idle_ms
        });
        Ok(live.count() as u64)
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn user(&self, user_id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.at("users")?.users.get(user_id).cloned())
    }

    async fn create_user(
        &self,
        user_id: &UserId,
        display_name: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut s = self.at("users")?;
        s.users
            .entry(user_id.to_owned())
            .or_insert_with(|| UserRecord {
                user_id: user_id.to_owned(),
                display_name: display_name.map(str::to_owned),
                registered_at: None,
            });
        Ok(())
    }

    async fn mark_registered(&self, user_id: &UserId, at: i64) -> Result<(), StoreError> {
        if let Some(user) = self.at("users")?.users.get_mut(user_id) {
            user.registered_at = Some(at);
        }
        Ok(())
    }

    async fn set_display_name(&self, user_id: &UserId, name: &str) -> Result<(), StoreError> {
        if let Some(user) = self.at("users")?.users.get_mut(user_id) {
            user.display_name = Some(name.to_owned());
        }
        Ok(())
    }

    async fn active_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let s = self.at("users")?;
        let active = s.users.values().filter(|u| {
            s.keys
                .iter()
                .any(|k| k.user_id == u.user_id && k.revoked_at.is_none())
        });
        Ok(active.cloned().collect())
    }
}

#[async_trait]
impl AuditLog for MemoryStore {
    async fn append(
        &self,
        entries: &[AuditEntry],
        logins: &[(String, i64)],
    ) -> Result<(), StoreError> {
        let mut s = self.at("audit")?;
        s.audit.extend_from_slice(entries);
        for (key_id, at) in super::audit::latest_logins(logins) {
            if let Some(key) = s.keys.iter_mut().find(|k| k.key_id == key_id) {
                key.last_login_at = Some(at);
            }
        }
        Ok(())
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let s = self.at("audit")?;
        Ok(s.audit.iter().rev().take(limit as usize).cloned().collect())
    }
}
