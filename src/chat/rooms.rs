//! The user's rooms and people: listing, creating, joining, leaving, inviting, names.

use std::collections::HashMap;

use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use super::event::{Content, RoomEvent};
use super::message::{Invite, Member, Message, Profile, RoomSummary};
use super::{Chat, ChatError};
use crate::identity::display_name;
use crate::store::{MembershipRecord, RoomUpdate};

/// Joined rooms and pending invites.
pub type Rooms = (Vec<RoomSummary>, Vec<Invite>);

impl Chat {
    /// The user as `GET /me` shows them.
    pub async fn profile(&self, user: &UserId) -> Result<Profile, ChatError> {
        let record = self.users.user(user).await?;
        Ok(Profile {
            user_id: user.to_owned(),
            display_name: record.and_then(|u| u.display_name),
        })
    }

    /// Every ChatSender user with an active key.
    pub async fn users(&self) -> Result<Vec<Profile>, ChatError> {
        let users = self.users.active_users().await?;
        Ok(users
            .into_iter()
            .map(|u| Profile {
                user_id: u.user_id,
                display_name: u.display_name,
            })
            .collect())
    }

    /// Sets the user's display name (on the homeserver and here).
    pub async fn set_display_name(&self, user: &UserId, name: &str) -> Result<(), ChatError> {
        let name = display_name::check(name).map_err(|e| ChatError::InvalidParam(e.to_string()))?;
        self.puppets.set_display_name(user, name).await?;
        Ok(())
    }

    /// Joined rooms with members and last message, and pending invites.
    pub async fn rooms(&self, user: &UserId) -> Result<Rooms, ChatError> {
        let mut rooms = Vec::new();
        for m in self.rooms.rooms_of(user, &MembershipState::Join).await? {
            let record = self.rooms.room(&m.room_id).await?;
            let read: HashMap<_, _> = self
                .receipts
                .receipts(&m.room_id)
                .await?
                .into_iter()
                .collect();
            let members: Vec<Member> = self
                .rooms
                .members(&m.room_id, &MembershipState::Join)
                .await?
                .into_iter()
                .map(|m| Member {
                    read_event_id: read.get(&m.user_id).cloned(),
                    ..Member::from(m)
                })
                .collect();
            let invited: Vec<Member> = self
                .rooms
                .members(&m.room_id, &MembershipState::Invite)
                .await?
                .into_iter()
                .map(Member::from)
                .collect();
            let unread = self.receipts.unread(&m.room_id, user).await?;
            let last = self.events.last_message(&m.room_id).await?;
            let last_message = last.map(|e| RoomEvent::from_record(&e)).and_then(|e| {
                let name = name_in(&members, &e.sender);
                Message::of(&e, name)
            });
            let (name, is_direct, encrypted) =
                record.map_or((None, false, false), |r| (r.name, r.is_direct, r.encrypted));
            rooms.push(RoomSummary {
                room_id: m.room_id,
                name,
                is_direct,
                encrypted,
                members,
                invited,
                last_message,
                unread,
            });
        }
        let mut invites = Vec::new();
        for m in self.rooms.rooms_of(user, &MembershipState::Invite).await? {
            let name = self.rooms.room(&m.room_id).await?.and_then(|r| r.name);
            invites.push(Invite {
                room_id: m.room_id,
                name,
                inviter: m.sender,
            });
        }
        Ok((rooms, invites))
    }

    /// Creates a private room and invites `invite`.
    pub async fn create_room(
        &self,
        user: &UserId,
        name: Option<&str>,
        invite: &[OwnedUserId],
        is_direct: bool,
    ) -> Result<OwnedRoomId, ChatError> {
        if invite.iter().any(|u| u == user) {
            return Err(ChatError::InvalidParam("you cannot invite yourself".into()));
        }
        let room = self
            .homeserver
            .create_room(user, name, invite, is_direct)
            .await?;
        // The homeserver's events follow through the appservice; record the essentials
        // now so the creator sees the room at once.
        let update = RoomUpdate {
            name: name.map(|n| Some(n.to_owned())),
            is_direct: Some(is_direct),
            ..RoomUpdate::default()
        };
        self.rooms.update_room(&room, &update).await?;
        self.set_own_membership(user, &room, MembershipState::Join, None)
            .await?;
        Ok(room)
    }

    /// Records the user's own membership change made through the homeserver, so the
    /// next request sees it, unless the index changed since it read `current` (the
    /// homeserver's own event was fed meanwhile, and is the truth).
    async fn set_own_membership(
        &self,
        user: &UserId,
        room: &RoomId,
        membership: MembershipState,
        current: Option<&MembershipState>,
    ) -> Result<(), ChatError> {
        let display_name = self.users.user(user).await?.and_then(|u| u.display_name);
        let record = MembershipRecord {
            room_id: room.to_owned(),
            user_id: user.to_owned(),
            membership,
            display_name,
            sender: user.to_owned(),
        };
        match current {
            None => self.rooms.add_membership_if_absent(&record).await?,
            Some(current) => self.rooms.replace_membership(&record, current).await?,
        };
        Ok(())
    }

    /// Accepts an invite (or joins again).
    pub async fn join(&self, user: &UserId, room: &RoomId) -> Result<(), ChatError> {
        let allowed = [MembershipState::Invite, MembershipState::Join];
        let before = self.require(user, room, &allowed).await?;
        self.homeserver.join(user, room).await?;
        // Record the join unless the room index moved on meanwhile (the join event, or
        // a kick, fed from the homeserver, is then the truth).
        self.set_own_membership(user, room, MembershipState::Join, Some(&before.membership))
            .await?;
        // Events before the join did not reach the appservice: take the room's
        // current state (members, name, encryption) from the homeserver, without
        // overwriting memberships the index already knows (they are at least as new).
        for raw in self.homeserver.room_state(user, room).await? {
            let Some(event) = RoomEvent::parse(&raw) else {
                continue;
            };
            match &event.content {
                Content::Member(m) if m.target != user => {
                    if let Some(record) = event.membership() {
                        self.rooms.add_membership_if_absent(&record).await?;
                    }
                }
                Content::Name(_) | Content::Encryption => {
                    self.rooms.update_room(room, &event.room_update()).await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Leaves (or declines an invite).
    pub async fn leave(&self, user: &UserId, room: &RoomId) -> Result<(), ChatError> {
        let allowed = [MembershipState::Invite, MembershipState::Join];
        let before = self.require(user, room, &allowed).await?;
        self.homeserver.leave(user, room).await?;
        self.set_own_membership(user, room, MembershipState::Leave, Some(&before.membership))
            .await
    }

    /// Invites `target` (any Matrix user) into a room the user is in.
    pub async fn invite(
        &self,
        user: &UserId,
        room: &RoomId,
        target: &UserId,
    ) -> Result<(), ChatError> {
        self.require(user, room, &[MembershipState::Join]).await?;
        self.homeserver.invite(user, room, target).await?;
        Ok(())
    }
}

/// A member's display name in the room, if known.
pub(super) fn name_in(members: &[Member], user: &UserId) -> Option<String> {
    members
        .iter()
        .find(|m| m.user_id == user)
        .and_then(|m| m.display_name.clone())
}
