//! The fake's room index, read receipts and user streams.

use std::collections::HashMap;

use async_trait::async_trait;
use ruma::events::room::member::MembershipState;
use ruma::{EventId, OwnedEventId, OwnedUserId, RoomId, UserId};

use super::MemoryStore;
use crate::store::*;

#[async_trait]
impl RoomIndex for MemoryStore {
    async fn update_room(&self, room_id: &RoomId, update: &RoomUpdate) -> Result<(), StoreError> {
        let mut s = self.at("rooms")?;
        let room = s
            .rooms
            .entry(room_id.to_owned())
            .or_insert_with(|| RoomRecord {
                room_id: room_id.to_owned(),
                name: None,
                is_direct: false,
                encrypted: false,
            });
        if let Some(name) = &update.name {
            room.name.clone_from(name);
        }
        room.is_direct = update.is_direct.unwrap_or(room.is_direct);
        room.encrypted = update.encrypted.unwrap_or(room.encrypted);
        Ok(())
    }

    async fn room(&self, room_id: &RoomId) -> Result<Option<RoomRecord>, StoreError> {
        Ok(self.at("rooms")?.rooms.get(room_id).cloned())
    }

    async fn set_membership(&self, m: &MembershipRecord) -> Result<(), StoreError> {
        let mut s = self.at("rooms")?;
        s.changes += 1;
        let change = s.changes;
        let key = (m.room_id.clone(), m.user_id.clone());
        s.memberships.insert(key, (m.clone(), change));
        Ok(())
    }

    async fn add_membership_if_absent(&self, m: &MembershipRecord) -> Result<bool, StoreError> {
        let key = (m.room_id.clone(), m.user_id.clone());
        if self.at("rooms")?.memberships.contains_key(&key) {
            return Ok(false);
        }
        self.set_membership(m).await?;
        Ok(true)
    }

    async fn replace_membership(
        &self,
        m: &MembershipRecord,
        current: &MembershipState,
    ) -> Result<bool, StoreError> {
        let mut s = self.at("rooms")?;
        s.changes += 1;
        let change = s.changes;
        let key = (m.room_id.clone(), m.user_id.clone());
        match s.memberships.get_mut(&key) {
            Some((record, changed)) if &record.membership == current => {
                let display_name = m.display_name.clone().or(record.display_name.take());
                *record = MembershipRecord {
                    display_name,
                    ..m.clone()
                };
                *changed = change;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn membership(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<MembershipRecord>, StoreError> {
        let s = self.at("rooms")?;
        let key = (room_id.to_owned(), user_id.to_owned());
        Ok(s.memberships.get(&key).map(|(m, _)| m.clone()))
    }

    async fn members(
        &self,
        room_id: &RoomId,
        membership: &MembershipState,
    ) -> Result<Vec<MembershipRecord>, StoreError> {
        let s = self.at("rooms")?;
        let members = s
            .memberships
            .values()
            .filter(|(m, _)| m.room_id == room_id && &m.membership == membership);
        Ok(members.map(|(m, _)| m.clone()).collect())
    }

    async fn rooms_of(
        &self,
        user_id: &UserId,
        membership: &MembershipState,
    ) -> Result<Vec<MembershipRecord>, StoreError> {
        let s = self.at("rooms")?;
        let mut rooms: Vec<_> = s
            .memberships
            .values()
            .filter(|(m, _)| m.user_id == user_id && &m.membership == membership)
            .collect();
        rooms.sort_by_key(|(_, changed)| std::cmp::Reverse(*changed));
        Ok(rooms.into_iter().map(|(m, _)| m.clone()).collect())
    }
}

#[async_trait]
impl UserStreams for MemoryStore {
    async fn append(&self, entries: &[NewStreamEntry]) -> Result<Vec<Option<i64>>, StoreError> {
        let mut s = self.at("streams")?;
        let now = crate::time::now_ms();
        let mut ids = Vec::with_capacity(entries.len());
        for e in entries {
            let there = s.streams.iter().any(|(user, key, entry, _)| {
                *user == e.user_id && *key == e.dedup_key && entry.kind == e.kind
            });
            if there {
                ids.push(None);
                continue;
            }
            s.next_stream_id += 1;
            let id = s.next_stream_id;
            let entry = StreamEntry {
                id,
                kind: e.kind.clone(),
                payload: e.payload.to_string(),
            };
            s.streams
                .push((e.user_id.clone(), e.dedup_key.clone(), entry, now));
            ids.push(Some(id));
        }
        Ok(ids)
    }

    async fn entries_after(
        &self,
        user_id: &UserId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StreamEntry>, StoreError> {
        let s = self.at("streams")?;
        let entries = s
            .streams
            .iter()
            .filter(|(user, _, e, _)| user == user_id && e.id > after);
        Ok(entries
            .take(limit as usize)
            .map(|(_, _, e, _)| e.clone())
            .collect())
    }

    async fn latest_entry(&self, user_id: &UserId) -> Result<Option<i64>, StoreError> {
        let s = self.at("streams")?;
        let ids = s.streams.iter().filter(|(u, ..)| u == user_id);
        Ok(ids.map(|(_, _, e, _)| e.id).max())
    }

    async fn oldest_entry(&self, user_id: &UserId) -> Result<Option<i64>, StoreError> {
        let s = self.at("streams")?;
        let ids = s.streams.iter().filter(|(u, ..)| u == user_id);
        Ok(ids.map(|(_, _, e, _)| e.id).min())
    }

    async fn prune(&self, before: i64, keep: u32) -> Result<u64, StoreError> {
        let mut s = self.at("streams")?;
        let mut kept_per_user: HashMap<OwnedUserId, u32> = HashMap::new();
        let before_len = s.streams.len();
        // Newest first: each user keeps `keep` entries, and any not older than `before`.
        let mut streams = std::mem::take(&mut s.streams);
        streams.reverse();
        streams.retain(|(user, _, _, created)| {
            let kept = kept_per_user.entry(user.clone()).or_default();
            *kept += 1;
            *kept <= keep || *created >= before
        });
        streams.reverse();
        s.streams = streams;
        Ok((before_len - s.streams.len()) as u64)
    }
}

#[async_trait]
impl Receipts for MemoryStore {
    async fn set_receipt(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        event_id: &EventId,
    ) -> Result<bool, StoreError> {
        let mut s = self.at("receipts")?;
        let in_room = |e: &EventRecord| e.room_id == room_id;
        let position = match s.events.iter().position(|(e, _)| e.event_id == event_id) {
            Some(i) => i + 1,
            None => s
                .events
                .iter()
                .rposition(|(e, _)| in_room(e))
                .map_or(0, |i| i + 1),
        };
        let key = (room_id.to_owned(), user_id.to_owned());
        match s.receipts.get(&key) {
            Some((current, at)) if *at >= position => Ok(current == event_id),
            _ => {
                s.receipts.insert(key, (event_id.to_owned(), position));
                Ok(true)
            }
        }
    }

    async fn receipts(
        &self,
        room_id: &RoomId,
    ) -> Result<Vec<(OwnedUserId, OwnedEventId)>, StoreError> {
        let s = self.at("receipts")?;
        let here = s.receipts.iter().filter(|((room, _), _)| room == room_id);
        Ok(here
            .map(|((_, user), (event, _))| (user.clone(), event.clone()))
            .collect())
    }

    async fn unread(&self, room_id: &RoomId, user_id: &UserId) -> Result<u64, StoreError> {
        let s = self.at("receipts")?;
        let key = (room_id.to_owned(), user_id.to_owned());
        let read = s.receipts.get(&key).map_or(0, |(_, at)| *at);
        let unread = s.events.iter().enumerate().filter(|(i, (e, _))| {
            i + 1 > read && e.room_id == room_id && e.sender != user_id && e.is_message()
        });
        Ok(unread.count() as u64)
    }
}
