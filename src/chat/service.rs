//! Conversations as a logged-in user sees them: every call acts only as that user's
//! own puppet, and only in rooms the puppet has joined (or is invited to).

use std::sync::Arc;

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::message::{self, Message};
use crate::matrix::{Homeserver, HomeserverError};
use crate::store::{MembershipRecord, Store};

/// Why a chat request failed.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A malformed id or parameter; the message names it.
    #[error("{0}")]
    InvalidParam(String),
    /// The room is not known to ChatSender.
    #[error("{0}")]
    NotFound(String),
    /// The user may not do this in this room.
    #[error("{0}")]
    Forbidden(String),
    /// The homeserver refused (its errcode and message are passed on).
    #[error("the homeserver refused: {message}")]
    Refused {
        status: u16,
        errcode: String,
        message: String,
    },
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<HomeserverError> for ChatError {
    fn from(e: HomeserverError) -> Self {
        match e {
            // A 401 would be about the appservice's token, not the user's session.
            HomeserverError::Refused {
                status,
                errcode,
                message,
                ..
            } if status < 500 && status != 401 => Self::Refused {
                status,
                errcode,
                message,
            },
            other => Self::Internal(other.into()),
        }
    }
}

impl From<crate::store::StoreError> for ChatError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(e.into())
    }
}

/// A room member.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Member {
    pub user_id: String,
    pub display_name: Option<String>,
}

/// A joined room.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoomSummary {
    pub room_id: String,
    pub name: Option<String>,
    pub is_direct: bool,
    pub encrypted: bool,
    pub members: Vec<Member>,
    pub last_message: Option<Message>,
}

/// A pending invite.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Invite {
    pub room_id: String,
    pub name: Option<String>,
    pub inviter: String,
}

/// A page of history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessagePage {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// Pass as `before` for the page before; null at the start of the room.
    pub prev: Option<String>,
}

/// Parses a room id from a path, naming it when malformed.
pub fn parse_room_id(raw: &str) -> Result<OwnedRoomId, ChatError> {
    RoomId::parse(raw)
        .map_err(|e| ChatError::InvalidParam(format!("`{raw}` is not a Matrix room id: {e}")))
}

/// Parses a user id, naming it when malformed.
pub fn parse_user_id(raw: &str) -> Result<OwnedUserId, ChatError> {
    UserId::parse(raw)
        .map_err(|e| ChatError::InvalidParam(format!("`{raw}` is not a Matrix user id: {e}")))
}

/// Homeserver requests one history page may take.
const MAX_HISTORY_ROUNDS: usize = 10;

/// The chat service.
#[derive(Clone)]
pub struct Chat {
    store: Arc<dyn Store>,
    homeserver: Arc<dyn Homeserver>,
}

impl Chat {
    /// The chat service over the daemon's state.
    pub fn new(store: Arc<dyn Store>, homeserver: Arc<dyn Homeserver>) -> Self {
        Self { store, homeserver }
    }

    async fn require(
        &self,
        user: &UserId,
        room: &RoomId,
        allowed: &[&str],
    ) -> Result<MembershipRecord, ChatError> {
        let membership = self.store.membership(room.as_str(), user.as_str()).await?;
        match membership {
            Some(m) if allowed.contains(&m.membership.as_str()) => Ok(m),
            Some(_) => Err(ChatError::Forbidden(format!("you are not in room {room}"))),
            None if self.store.room(room.as_str()).await?.is_some() => {
                Err(ChatError::Forbidden(format!("you are not in room {room}")))
            }
            None => Err(ChatError::NotFound(format!("unknown room {room}"))),
        }
    }

    /// Sets the user's display name (on the homeserver and here).
    pub async fn set_display_name(&self, user: &UserId, name: &str) -> Result<(), ChatError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 256 {
            return Err(ChatError::InvalidParam(
                "display_name must be 1 to 256 bytes".into(),
            ));
        }
        self.homeserver.set_display_name(user, name).await?;
        self.store.set_display_name(user, name).await?;
        Ok(())
    }

    /// Joined rooms with members and last message, and pending invites.
    pub async fn rooms(&self, user: &UserId) -> Result<(Vec<RoomSummary>, Vec<Invite>), ChatError> {
        let mut rooms = Vec::new();
        for m in self.store.rooms_of(user.as_str(), "join").await? {
            let record = self.store.room(&m.room_id).await?.unwrap_or_default();
            let members = self.store.members(&m.room_id, "join").await?;
            let names: Vec<Member> = members
                .iter()
                .map(|m| Member {
                    user_id: m.user_id.clone(),
                    display_name: m.display_name.clone(),
                })
                .collect();
            let last = self.store.last_message(&m.room_id).await?;
            let last_message = last.and_then(|e| {
                message::from_event_json(&e.json, |s| {
                    names
                        .iter()
                        .find(|m| m.user_id == s)
                        .and_then(|m| m.display_name.clone())
                })
            });
            rooms.push(RoomSummary {
                room_id: m.room_id,
                name: record.name.filter(|n| !n.is_empty()),
                is_direct: record.is_direct,
                encrypted: record.encrypted,
                members: names,
                last_message,
            });
        }
        let mut invites = Vec::new();
        for m in self.store.rooms_of(user.as_str(), "invite").await? {
            let record = self.store.room(&m.room_id).await?.unwrap_or_default();
            invites.push(Invite {
                room_id: m.room_id,
                name: record.name.filter(|n| !n.is_empty()),
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
        self.store
            .update_room(room.as_str(), name, Some(is_direct), None)
            .await?;
        self.set_own_membership(user, &room, "join", "").await?;
        Ok(room)
    }

    /// Records the user's own membership change made through the homeserver, so the
    /// next request sees it, unless the index changed since it read `current` (the
    /// homeserver's own event was fed meanwhile, and is the truth).
    async fn set_own_membership(
        &self,
        user: &UserId,
        room: &RoomId,
        membership: &str,
        current: &str,
    ) -> Result<(), ChatError> {
        let display_name = self.store.user(user).await?.and_then(|u| u.display_name);
        let record = MembershipRecord {
            room_id: room.to_string(),
            user_id: user.to_string(),
            membership: membership.to_owned(),
            display_name,
            sender: user.to_string(),
        };
        if current.is_empty() {
            self.store.add_membership_if_absent(&record).await?;
        } else {
            self.store.replace_membership(&record, current).await?;
        }
        Ok(())
    }

    /// Accepts an invite (or joins again).
    pub async fn join(&self, user: &UserId, room: &RoomId) -> Result<(), ChatError> {
        let before = self.require(user, room, &["invite", "join"]).await?;
        self.homeserver.join(user, room).await?;
        // Record the join unless the room index moved on meanwhile (the join event, or
        // a kick, fed from the homeserver, is then the truth).
        self.set_own_membership(user, room, "join", &before.membership)
            .await?;
        // Events before the join did not reach the appservice: take the room's
        // current state (members, name, encryption) from the homeserver, without
        // overwriting what the index already knows (it is at least as new).
        for json in self.homeserver.room_state(user, room).await? {
            let event: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
            let content = &event["content"];
            match (event["type"].as_str(), event["state_key"].as_str()) {
                (Some("m.room.member"), Some(target)) if target != user.as_str() => {
                    let membership = MembershipRecord {
                        room_id: room.to_string(),
                        user_id: target.to_owned(),
                        membership: content["membership"].as_str().unwrap_or("leave").to_owned(),
                        display_name: content["displayname"].as_str().map(str::to_owned),
                        sender: event["sender"].as_str().unwrap_or_default().to_owned(),
                    };
                    self.store.add_membership_if_absent(&membership).await?;
                }
                (Some("m.room.name"), Some("")) => {
                    let name = content["name"].as_str().unwrap_or("");
                    self.store
                        .update_room(room.as_str(), Some(name), None, None)
                        .await?;
                }
                (Some("m.room.encryption"), Some("")) => {
                    self.store
                        .update_room(room.as_str(), None, None, Some(true))
                        .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Leaves (or declines an invite).
    pub async fn leave(&self, user: &UserId, room: &RoomId) -> Result<(), ChatError> {
        let before = self.require(user, room, &["invite", "join"]).await?;
        self.homeserver.leave(user, room).await?;
        self.set_own_membership(user, room, "leave", &before.membership)
            .await
    }

    /// Invites `target` (any Matrix user) into a room the user is in.
    pub async fn invite(
        &self,
        user: &UserId,
        room: &RoomId,
        target: &UserId,
    ) -> Result<(), ChatError> {
        self.require(user, room, &["join"]).await?;
        self.homeserver.invite(user, room, target).await?;
        Ok(())
    }

    /// The newest `limit` messages before `before`, oldest first.
    pub async fn messages(
        &self,
        user: &UserId,
        room: &RoomId,
        limit: u32,
        before: Option<&str>,
    ) -> Result<MessagePage, ChatError> {
        if !(1..=200).contains(&limit) {
            return Err(ChatError::InvalidParam(format!(
                "limit must be 1 to 200, not {limit}"
            )));
        }
        self.require(user, room, &["join"]).await?;
        let members = self.store.members(room.as_str(), "join").await?;
        let name_of = |sender: &str| {
            members
                .iter()
                .find(|m| m.user_id == sender)
                .and_then(|m| m.display_name.clone())
        };
        // Non-message events use up the page too, so ask for pages until `limit`
        // messages are found or the room's start is reached.
        let mut messages = Vec::new();
        let mut from = before.map(str::to_owned);
        let mut prev = None;
        // Pages of state events only use up rounds; a page that ends early lets the
        // client ask for more with `prev`.
        for _ in 0..MAX_HISTORY_ROUNDS {
            if messages.len() >= limit as usize {
                break;
            }
            let want = limit - u32::try_from(messages.len()).unwrap_or(limit);
            let (chunk, end) = self
                .homeserver
                .messages(user, room, from.as_deref(), want)
                .await?;
            // No `end`, or no progress, is the start of the room; an empty chunk with a
            // new `end` is not (visibility rules can filter out a whole batch).
            let exhausted = end.is_none() || end == from;
            messages.extend(
                chunk
                    .iter()
                    .filter_map(|json| message::from_event_json(json, |s| name_of(s))),
            );
            prev = end.clone();
            if exhausted {
                prev = None;
                break;
            }
            from = end;
        }
        messages.reverse();
        Ok(MessagePage { messages, prev })
    }

    /// Sends a text message; the same `txn_id` from the same user gives the same event.
    pub async fn send(
        &self,
        user: &UserId,
        room: &RoomId,
        txn_id: &str,
        body: &str,
    ) -> Result<String, ChatError> {
        let valid_txn = !txn_id.is_empty()
            && txn_id.len() <= 128
            && txn_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
        if !valid_txn {
            return Err(ChatError::InvalidParam(
                "txn_id must be 1 to 128 characters of A-Z a-z 0-9 - _ . ~".into(),
            ));
        }
        if body.is_empty() {
            return Err(ChatError::InvalidParam("body must not be empty".into()));
        }
        // A retry gets its event even if the user left the room since.
        if let Some(event_id) = self.store.sent_message(user.as_str(), txn_id).await? {
            return Ok(event_id);
        }
        self.require(user, room, &["join"]).await?;
        // Synapse keys appservice transaction ids by path only, not by puppet: make
        // the id unique per user.
        let user_key = hex::encode(&Sha256::digest(user.as_str().as_bytes())[..8]);
        let event_id = self
            .homeserver
            .send_text(user, room, &format!("cs.{user_key}.{txn_id}"), body)
            .await?;
        self.store
            .save_sent_message(user.as_str(), txn_id, event_id.as_str())
            .await?;
        Ok(event_id.to_string())
    }
}
