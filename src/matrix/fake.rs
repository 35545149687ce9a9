//! A homeserver in memory for the core's unit tests: it remembers what it was asked
//! and answers history from pages a test scripts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use ruma::events::{AnyStateEvent, AnyTimelineEvent};
use ruma::serde::Raw;
use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};

use super::{Homeserver, HomeserverError};

/// One page of `/messages`: events (newest first) and the token of the page before.
pub type Page = (Vec<Raw<AnyTimelineEvent>>, Option<String>);

#[derive(Default)]
struct State {
    registered: Vec<OwnedUserId>,
    display_names: HashMap<OwnedUserId, String>,
    /// Answers to `/messages`, by the `from` token asked for ("" for the newest).
    pages: HashMap<String, Page>,
    /// Every `/messages` request: (from, limit).
    asked: Vec<(Option<String>, u32)>,
    state: Vec<Raw<AnyStateEvent>>,
    calls: Vec<String>,
    rooms: VecDeque<OwnedRoomId>,
    sent: u64,
}

/// The homeserver, in memory.
#[derive(Default)]
pub struct FakeHomeserver {
    state: Mutex<State>,
}

impl FakeHomeserver {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers `/messages` from `from` (`None`: the newest) with `page`.
    pub fn page(&self, from: Option<&str>, page: Page) {
        self.state()
            .pages
            .insert(from.unwrap_or_default().to_owned(), page);
    }

    /// The `/messages` requests made: (from, limit).
    pub fn asked(&self) -> Vec<(Option<String>, u32)> {
        self.state().asked.clone()
    }

    /// The room state `room_state` answers with.
    pub fn set_room_state(&self, state: Vec<Raw<AnyStateEvent>>) {
        self.state().state = state;
    }

    /// Puppets registered so far.
    pub fn registered(&self) -> Vec<OwnedUserId> {
        self.state().registered.clone()
    }

    /// A user's display name as set here.
    pub fn display_name(&self, user: &UserId) -> Option<String> {
        self.state().display_names.get(user).cloned()
    }

    /// Every call made, as `name user room…`.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    fn call(&self, what: String) {
        self.state().calls.push(what);
    }
}

#[async_trait]
impl Homeserver for FakeHomeserver {
    async fn reachable(&self) -> Result<(), HomeserverError> {
        Ok(())
    }

    async fn ping(&self) -> Result<(), HomeserverError> {
        Ok(())
    }

    async fn register_puppet(&self, user_id: &UserId) -> Result<(), HomeserverError> {
        let mut state = self.state();
        if !state.registered.iter().any(|u| u == user_id) {
            state.registered.push(user_id.to_owned());
        }
        Ok(())
    }

    async fn set_display_name(&self, user_id: &UserId, name: &str) -> Result<(), HomeserverError> {
        let mut state = self.state();
        state
            .display_names
            .insert(user_id.to_owned(), name.to_owned());
        Ok(())
    }

    async fn create_room(
        &self,
        creator: &UserId,
        _name: Option<&str>,
        _invite: &[OwnedUserId],
        _is_direct: bool,
    ) -> Result<OwnedRoomId, HomeserverError> {
        self.call(format!("create_room {creator}"));
        let n = self.state().rooms.len();
        let room = RoomId::parse(format!("!room{n}:fake")).expect("a room id");
        self.state().rooms.push_back(room.clone());
        Ok(room)
    }

    async fn invite(
        &self,
        inviter: &UserId,
        room_id: &RoomId,
        target: &UserId,
    ) -> Result<(), HomeserverError> {
        self.call(format!("invite {inviter} {room_id} {target}"));
        Ok(())
    }

    async fn join(&self, user_id: &UserId, room_id: &RoomId) -> Result<(), HomeserverError> {
        self.call(format!("join {user_id} {room_id}"));
        Ok(())
    }

    async fn leave(&self, user_id: &UserId, room_id: &RoomId) -> Result<(), HomeserverError> {
        self.call(format!("leave {user_id} {room_id}"));
        Ok(())
    }

    async fn messages(
        &self,
        _user_id: &UserId,
        _room_id: &RoomId,
        from: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<Raw<AnyTimelineEvent>>, Option<String>), HomeserverError> {
        let mut state = self.state();
        state.asked.push((from.map(str::to_owned), limit));
        Ok(state
            .pages
            .get(from.unwrap_or_default())
            .cloned()
            .unwrap_or_default())
    }

    async fn room_state(
        &self,
        _user_id: &UserId,
        _room_id: &RoomId,
    ) -> Result<Vec<Raw<AnyStateEvent>>, HomeserverError> {
        Ok(self.state().state.clone())
    }

    async fn set_read_markers(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<(), HomeserverError> {
        self.call(format!("read {user_id} {room_id} {event_id}"));
        Ok(())
    }

    async fn typing(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        timeout: Option<std::time::Duration>,
    ) -> Result<(), HomeserverError> {
        self.call(format!("typing {user_id} {room_id} {timeout:?}"));
        Ok(())
    }

    async fn send_text(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        txn_id: &str,
        _body: &str,
    ) -> Result<OwnedEventId, HomeserverError> {
        self.call(format!("send {sender} {room_id} {txn_id}"));
        let mut state = self.state();
        state.sent += 1;
        Ok(OwnedEventId::try_from(format!("$sent{}", state.sent)).expect("an event id"))
    }
}
