//! The feeder's view of each room's joined members: read from the room index the
//! first time a room is fed, then kept up to date by the membership events the feeder
//! applies, so feeding a message reads nothing.
//!
//! Only the feeder holding the lease changes memberships from pushed events, in event
//! order; when another daemon's feeder held the lease in between, the view is dropped
//! and read again ([`Members::clear`]).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use crate::identity::Namespace;
use crate::store::{MembershipRecord, RoomIndex, StoreError};

/// Rooms kept at most; past it the view starts again empty (a busy homeserver's
/// rooms are read again as they are fed).
const MAX_ROOMS: usize = 50_000;

/// One room's joined members and their display names.
#[derive(Default)]
struct Room {
    joined: HashMap<OwnedUserId, Option<String>>,
    /// The joined members in the appservice's namespace, in join order.
    ours: Vec<OwnedUserId>,
}

#[derive(Default)]
pub(super) struct Members {
    rooms: Mutex<HashMap<OwnedRoomId, Room>>,
}

impl Members {
    fn rooms(&self) -> MutexGuard<'_, HashMap<OwnedRoomId, Room>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets every room (another feeder may have changed them).
    pub(super) fn clear(&self) {
        self.rooms().clear();
    }

    /// Reads a room from the index unless it is known.
    async fn load(
        &self,
        index: &dyn RoomIndex,
        namespace: &Namespace,
        room_id: &RoomId,
    ) -> Result<(), StoreError> {
        if self.rooms().contains_key(room_id) {
            return Ok(());
        }
        let members = index.members(room_id, &MembershipState::Join).await?;
        let mut room = Room::default();
        for m in members {
            if namespace.contains(&m.user_id) {
                room.ours.push(m.user_id.clone());
            }
            room.joined.insert(m.user_id, m.display_name);
        }
        let mut rooms = self.rooms();
        if rooms.len() >= MAX_ROOMS {
            rooms.clear();
        }
        rooms.entry(room_id.to_owned()).or_insert(room);
        Ok(())
    }

    /// The room's joined ChatSender users.
    pub(super) async fn ours(
        &self,
        index: &dyn RoomIndex,
        namespace: &Namespace,
        room_id: &RoomId,
    ) -> Result<Vec<OwnedUserId>, StoreError> {
        self.ours_unless_over(index, namespace, room_id, usize::MAX)
            .await
    }

    /// The room's joined ChatSender users, or none if more than `most` members have
    /// joined it: a large room's list is not copied where it would be thrown away.
    pub(super) async fn ours_unless_over(
        &self,
        index: &dyn RoomIndex,
        namespace: &Namespace,
        room_id: &RoomId,
        most: usize,
    ) -> Result<Vec<OwnedUserId>, StoreError> {
        self.load(index, namespace, room_id).await?;
        Ok(self
            .rooms()
            .get(room_id)
            .filter(|r| r.joined.len() <= most)
            .map(|r| r.ours.clone())
            .unwrap_or_default())
    }

    /// How many members the room has joined.
    pub(super) fn joined_count(&self, room_id: &RoomId) -> usize {
        self.rooms().get(room_id).map_or(0, |r| r.joined.len())
    }

    /// A joined member's display name (`None` also for a sender not joined).
    pub(super) async fn display_name(
        &self,
        index: &dyn RoomIndex,
        namespace: &Namespace,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<String>, StoreError> {
        self.load(index, namespace, room_id).await?;
        Ok(self
            .rooms()
            .get(room_id)
            .and_then(|r| r.joined.get(user_id).cloned().flatten()))
    }

    /// Applies a membership the feeder has just written to the index.
    pub(super) fn apply(&self, namespace: &Namespace, record: &MembershipRecord) {
        let mut rooms = self.rooms();
        let Some(room) = rooms.get_mut(&record.room_id) else {
            return; // read in full when first needed
        };
        let user = &record.user_id;
        if record.membership == MembershipState::Join {
            let fresh = room
                .joined
                .insert(user.clone(), record.display_name.clone())
                .is_none();
            if fresh && namespace.contains(user) {
                room.ours.push(user.clone());
            }
        } else if room.joined.remove(user).is_some() {
            room.ours.retain(|u| u != user);
        }
    }
}
