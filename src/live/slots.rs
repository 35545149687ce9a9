//! How many live streams are open on this daemon per session and per user, within
//! their caps: a stream holds a [`Slot`] and frees it the moment it is dropped. The
//! slots also end a session's streams together when the session ends: one check of
//! every open session now and then, not a timer per stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ruma::{OwnedUserId, UserId};
use tokio_util::sync::CancellationToken;

/// Why a stream cannot open; the message says which cap and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error(
        "this session has {0} live streams open, the most allowed; close one (another tab?) first"
    )]
    Session(usize),
    #[error("this user has {0} live streams open, the most allowed; close one first")]
    User(usize),
}

/// The open streams, counted per session (by its token's hash) and per user.
#[derive(Debug)]
pub struct Slots {
    per_session: usize,
    per_user: usize,
    /// Cancelled at shutdown: every session's token is its child.
    stop: CancellationToken,
    /// std `Mutex`: held only to count, never across an await.
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    sessions: HashMap<[u8; 32], Session>,
    users: HashMap<OwnedUserId, usize>,
}

/// A session's open streams.
#[derive(Debug)]
struct Session {
    streams: usize,
    /// Cancelled when the session ends (or at shutdown): its streams end.
    ended: CancellationToken,
}

/// One open stream's place; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    session: [u8; 32],
    user: OwnedUserId,
    ended: CancellationToken,
}

impl Slot {
    /// Cancelled when this stream's session ends or the daemon stops.
    pub fn ended(&self) -> CancellationToken {
        self.ended.clone()
    }
}

impl Slots {
    /// At most `per_session` streams per session and `per_user` per user; every
    /// stream ends when `stop` is cancelled.
    pub fn new(per_session: usize, per_user: usize, stop: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            per_session,
            per_user,
            stop,
            open: Mutex::default(),
        })
    }

    fn open(&self) -> MutexGuard<'_, Open> {
        // Every change is a count up or down, made whole under the lock.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more stream of `session` (its token's hash) and `user`.
    pub fn take(self: &Arc<Self>, session: [u8; 32], user: &UserId) -> Result<Slot, SlotError> {
        let mut open = self.open();
        let of_session = open.sessions.get(&session).map_or(0, |s| s.streams);
        if of_session >= self.per_session {
            return Err(SlotError::Session(of_session));
        }
        let of_user = open.users.get(user).copied().unwrap_or(0);
        if of_user >= self.per_user {
            return Err(SlotError::User(of_user));
        }
        let entry = open.sessions.entry(session).or_insert_with(|| Session {
            streams: 0,
            ended: self.stop.child_token(),
        });
        entry.streams += 1;
        let ended = entry.ended.clone();
        *open.users.entry(user.to_owned()).or_default() += 1;
        Ok(Slot {
            slots: self.clone(),
            session,
            user: user.to_owned(),
            ended,
        })
    }

    /// The sessions (token hashes) with open streams.
    pub fn sessions(&self) -> Vec<[u8; 32]> {
        self.open().sessions.keys().copied().collect()
    }

    /// Ends the open streams of these sessions. A stream opened later has a token of
    /// its own (its session was found valid again).
    pub fn end(&self, sessions: &[[u8; 32]]) {
        let mut open = self.open();
        for hash in sessions {
            if let Some(session) = open.sessions.get_mut(hash) {
                let ended = std::mem::replace(&mut session.ended, self.stop.child_token());
                ended.cancel();
            }
        }
    }

    /// Streams open now.
    #[cfg(test)]
    fn in_use(&self) -> usize {
        self.open().users.values().sum()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open();
        let open = &mut *open;
        if let Some(session) = open.sessions.get_mut(&self.session) {
            session.streams -= 1;
            if session.streams == 0 {
                open.sessions.remove(&self.session);
            }
        }
        release(&mut open.users, &self.user);
    }
}

fn release<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_session_and_per_user_and_a_dropped_stream_frees_its_place() {
        let slots = Slots::new(2, 3, CancellationToken::new());
        let alice = UserId::parse("@alice:x").expect("id");
        let bob = UserId::parse("@bob:x").expect("id");
        let (tab1, tab2) = ([1; 32], [2; 32]);
        let first = slots.take(tab1, &alice).expect("first");
        let _second = slots.take(tab1, &alice).expect("second");
        assert_eq!(
            slots.take(tab1, &alice).expect_err("a third"),
            SlotError::Session(2)
        );
        let _third = slots.take(tab2, &alice).expect("another session");
        assert_eq!(
            slots.take(tab2, &alice).expect_err("a fourth"),
            SlotError::User(3)
        );
        let _bobs = slots.take([3; 32], &bob).expect("Bob has his own");
        drop(first);
        let _again = slots.take(tab1, &alice).expect("the freed place");
        assert_eq!(slots.in_use(), 4);
        assert!(SlotError::Session(2).to_string().contains("close one"));
    }

    #[test]
    fn ending_a_session_ends_its_streams_only_and_shutdown_ends_all() {
        let stop = CancellationToken::new();
        let slots = Slots::new(4, 4, stop.clone());
        let alice = UserId::parse("@alice:x").expect("id");
        let (tab1, tab2) = ([1; 32], [2; 32]);
        let first = slots.take(tab1, &alice).expect("first");
        let second = slots.take(tab1, &alice).expect("second");
        let other = slots.take(tab2, &alice).expect("another session");
        let mut open = slots.sessions();
        open.sort_unstable();
        assert_eq!(open, [tab1, tab2]);

        slots.end(&[tab1, [9; 32]]);
        assert!(first.ended().is_cancelled() && second.ended().is_cancelled());
        assert!(!other.ended().is_cancelled(), "the other session goes on");
        let later = slots.take(tab1, &alice).expect("a later stream");
        assert!(
            !later.ended().is_cancelled(),
            "a stream opened after the end has its own token"
        );
        drop((first, second, later));
        assert_eq!(slots.sessions(), [tab2]);

        stop.cancel();
        assert!(other.ended().is_cancelled());
    }
}
