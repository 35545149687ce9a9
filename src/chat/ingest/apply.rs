//! Applying one event: to the room index, the members view, and the deliveries of the
//! round that feeds it.

use ruma::events::room::member::MembershipState;

use super::round::{Round, deliveries};
use super::{FeedError, Ingest, LARGE_ROOM};
use crate::chat::event::{Content, RoomEvent};
use crate::chat::message::{MembershipChange, Message, RoomChange};
use crate::live::StreamKind;
use crate::store::RoomUpdate;

impl Ingest {
    /// Applies one event to the room index and adds its deliveries to the round.
    pub(super) async fn apply(
        &self,
        event: &RoomEvent,
        round: &mut Round,
    ) -> Result<(), FeedError> {
        let room = &event.room_id;
        let ns = &self.namespace;
        let index = &*self.rooms;
        match &event.content {
            Content::Member(m) => {
                let mut update = RoomUpdate::default();
                let ours = ns.contains(&m.target);
                if ours && m.membership == MembershipState::Invite {
                    update.name = m.invite_name.clone();
                    update.encrypted = m.invite_encrypted.then_some(true);
                    update.is_direct = m.is_direct;
                }
                self.rooms.update_room(room, &update).await?;
                // Loaded before the change is written: the view then applies it once.
                // A change moves the count by one at most, so past `LARGE_ROOM + 1`
                // members the list would be cleared below: it is not copied (filling
                // a room of K copied K lists of up to K users).
                let most = LARGE_ROOM + 1;
                let mut to = self.members.ours_unless_over(index, ns, room, most).await?;
                if let Some(record) = event.membership() {
                    self.rooms.set_membership(&record).await?;
                    self.members.apply(ns, &record);
                }
                // In a large room the others learn of a member when it speaks, as
                // Matrix clients lazy-load members: filling a room stays linear.
                if self.members.joined_count(room) > LARGE_ROOM {
                    to.clear();
                }
                if ours && !to.contains(&m.target) {
                    to.push(m.target.clone());
                }
                let change = MembershipChange {
                    room_id: room.clone(),
                    user_id: m.target.clone(),
                    membership: m.membership.clone(),
                    sender: event.sender.clone(),
                };
                let kind = StreamKind::Membership;
                round.add(
                    &event.event_id,
                    deliveries(to, event.event_id.as_str(), kind, &change)?,
                );
                Ok(())
            }
            Content::Name(name) => {
                self.rooms.update_room(room, &event.room_update()).await?;
                let change = RoomChange {
                    room_id: room.clone(),
                    name: name.clone(),
                };
                let to = self.members.ours(index, ns, room).await?;
                round.add(
                    &event.event_id,
                    deliveries(to, event.event_id.as_str(), StreamKind::Room, &change)?,
                );
                Ok(())
            }
            Content::Encryption => {
                self.rooms.update_room(room, &event.room_update()).await?;
                Ok(())
            }
            Content::Message { .. } => {
                let name = self
                    .members
                    .display_name(index, ns, room, &event.sender)
                    .await?;
                let Some(message) = Message::of(event, name) else {
                    return Ok(());
                };
                let to = self.members.ours(index, ns, room).await?;
                let kind = StreamKind::Message;
                round.add(
                    &event.event_id,
                    deliveries(to, event.event_id.as_str(), kind, &message)?,
                );
                Ok(())
            }
            Content::Other => Ok(()),
        }
    }
}
