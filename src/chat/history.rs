//! History and sending: reading a room's messages from the homeserver as the user's
//! puppet, and sending text as it, once per transaction id.

use ruma::events::room::member::MembershipState;
use ruma::{OwnedEventId, RoomId, UserId};
use sha2::{Digest, Sha256};

use super::event::RoomEvent;
use super::message::{Member, Message, MessagePage};
use super::rooms::name_in;
use super::{Chat, ChatError};

/// Homeserver requests one history page may take.
const MAX_HISTORY_ROUNDS: usize = 10;

impl Chat {
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
        self.require(user, room, &[MembershipState::Join]).await?;
        let members: Vec<Member> = self
            .rooms
            .members(room, &MembershipState::Join)
            .await?
            .into_iter()
            .map(Member::from)
            .collect();
        // Non-message events use up the page too, so ask for pages until `limit`
        // messages are found or the room's start is reached. Pages of state events
        // only use up rounds; a page that ends early lets the client ask for more with
        // `prev`.
        let mut messages = Vec::new();
        let mut from = before.map(str::to_owned);
        let mut prev = None;
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
            messages.extend(chunk.iter().filter_map(|raw| {
                let event = RoomEvent::parse(raw)?;
                let name = name_in(&members, &event.sender);
                Message::of(&event, name)
            }));
            prev.clone_from(&end);
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
    ) -> Result<OwnedEventId, ChatError> {
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
        // A retry gets its event even if the user left the room since. The same
        // txn_id in another room is another message, as Matrix keys a send by its path.
        if let Some(event_id) = self.events.sent_message(user, room, txn_id).await? {
            return Ok(event_id);
        }
        self.require(user, room, &[MembershipState::Join]).await?;
        // Synapse keys appservice transaction ids by path only, not by puppet: make
        // the id unique per user.
        let user_key = hex::encode(&Sha256::digest(user.as_str().as_bytes())[..8]);
        let event_id = self
            .homeserver
            .send_text(user, room, &format!("cs.{user_key}.{txn_id}"), body)
            .await?;
        self.events
            .save_sent_message(user, room, txn_id, &event_id)
            .await?;
        Ok(event_id)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ruma::events::AnyTimelineEvent;
    use ruma::serde::Raw;
    use ruma::{OwnedRoomId, OwnedUserId, ServerName};
    use serde_json::json;

    use super::*;
    use crate::chat::ChatParts;
    use crate::identity::{Namespace, Puppets};
    use crate::live::{DatabaseLog, Live};
    use crate::matrix::fake::FakeHomeserver;
    use crate::store::memory::MemoryStore;
    use crate::store::{MembershipRecord, RoomIndex, RoomUpdate};

    fn event(id: &str, event_type: &str, state_key: Option<&str>) -> Raw<AnyTimelineEvent> {
        let mut e = json!({"type": event_type, "event_id": id, "room_id": "!r:x",
            "sender": "@carol:x", "origin_server_ts": 1,
            "content": {"msgtype": "m.text", "body": id}});
        if let Some(key) = state_key {
            e["state_key"] = json!(key);
        }
        Raw::from_json(serde_json::value::to_raw_value(&e).expect("json"))
    }

    fn text(id: &str) -> Raw<AnyTimelineEvent> {
        event(id, "m.room.message", None)
    }

    fn state(id: &str) -> Raw<AnyTimelineEvent> {
        event(id, "m.room.topic", Some(""))
    }

    async fn chat() -> (Chat, Arc<FakeHomeserver>, OwnedUserId, OwnedRoomId) {
        let store = Arc::new(MemoryStore::default());
        let homeserver = Arc::new(FakeHomeserver::default());
        let server = ServerName::parse("x").expect("server name");
        let namespace = Namespace::new("cs_", &server, "cs_bot").expect("namespace");
        let puppets = Puppets::new(namespace, homeserver.clone(), store.clone());
        let chat = Chat::new(ChatParts {
            rooms: store.clone(),
            receipts: store.clone(),
            events: store.clone(),
            users: store.clone(),
            puppets,
            homeserver: homeserver.clone(),
            live: Live::new(Arc::new(DatabaseLog::new(store.clone()))),
        });
        let (alice, room) = (
            OwnedUserId::try_from("@cs_alice:x").expect("user"),
            OwnedRoomId::try_from("!r:x").expect("room"),
        );
        let joined = MembershipRecord {
            room_id: room.clone(),
            user_id: alice.clone(),
            membership: MembershipState::Join,
            display_name: None,
            sender: alice.clone(),
        };
        store.set_membership(&joined).await.expect("join");
        store
            .update_room(&room, &RoomUpdate::default())
            .await
            .expect("room");
        (chat, homeserver, alice, room)
    }

    fn bodies(page: &MessagePage) -> Vec<&str> {
        page.messages.iter().map(|m| m.body.as_str()).collect()
    }

    #[tokio::test]
    async fn a_page_skips_state_events_and_asks_again_until_it_is_full() {
        let (chat, homeserver, alice, room) = chat().await;
        // Newest first, as the homeserver pages backwards.
        homeserver.page(
            None,
            (
                vec![text("$5"), state("$s1"), text("$4")],
                Some("t1".into()),
            ),
        );
        homeserver.page(Some("t1"), (vec![state("$s2")], Some("t2".into())));
        homeserver.page(Some("t2"), (vec![text("$3")], Some("t3".into())));
        let page = chat.messages(&alice, &room, 3, None).await.expect("page");
        assert_eq!(bodies(&page), ["$3", "$4", "$5"], "oldest first");
        assert_eq!(page.prev.as_deref(), Some("t3"), "more before it");
        let asked = homeserver.asked();
        let asked: Vec<(Option<&str>, u32)> =
            asked.iter().map(|(f, l)| (f.as_deref(), *l)).collect();
        assert_eq!(asked, [(None, 3), (Some("t1"), 1), (Some("t2"), 1)]);
    }

    #[tokio::test]
    async fn the_start_of_the_room_ends_paging() {
        let (chat, homeserver, alice, room) = chat().await;
        homeserver.page(
            Some("t1"),
            (vec![text("$2"), text("$1")], Some("t1".into())),
        );
        let page = chat
            .messages(&alice, &room, 50, Some("t1"))
            .await
            .expect("page");
        assert_eq!(bodies(&page), ["$1", "$2"]);
        assert_eq!(page.prev, None, "no progress: the start of the room");
        homeserver.page(Some("t9"), (vec![], None));
        let page = chat
            .messages(&alice, &room, 50, Some("t9"))
            .await
            .expect("page");
        assert!(page.messages.is_empty() && page.prev.is_none());
    }

    #[tokio::test]
    async fn only_members_read_and_limits_are_checked() {
        let (chat, _, alice, room) = chat().await;
        let outsider = OwnedUserId::try_from("@cs_mallory:x").expect("user");
        let refused = chat.messages(&outsider, &room, 10, None).await;
        assert!(
            matches!(refused, Err(ChatError::Forbidden(_))),
            "{refused:?}"
        );
        let unknown = OwnedRoomId::try_from("!nowhere:x").expect("room");
        let missing = chat.messages(&alice, &unknown, 10, None).await;
        assert!(
            matches!(missing, Err(ChatError::NotFound(_))),
            "{missing:?}"
        );
        for limit in [0, 201] {
            let bad = chat.messages(&alice, &room, limit, None).await;
            assert!(matches!(bad, Err(ChatError::InvalidParam(m)) if m.contains("limit")));
        }
    }
}
