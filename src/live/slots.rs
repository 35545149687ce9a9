//! How many live streams are open on this daemon per session and per user, within
//! their caps: a stream holds a [`Slot`] and frees it the moment it is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ruma::{OwnedUserId, UserId};

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
    /// std `Mutex`: held only to count, never across an await.
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    sessions: HashMap<[u8; 32], usize>,
    users: HashMap<OwnedUserId, usize>,
}

/// One open stream's place; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    session: [u8; 32],
    user: OwnedUserId,
}

impl Slots {
    /// At most `per_session` streams per session and `per_user` per user.
    pub fn new(per_session: usize, per_user: usize) -> Arc<Self> {
        Arc::new(Self {
            per_session,
            per_user,
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
        let of_session = open.sessions.get(&session).copied().unwrap_or(0);
        if of_session >= self.per_session {
            return Err(SlotError::Session(of_session));
        }
        let of_user = open.users.get(user).copied().unwrap_or(0);
        if of_user >= self.per_user {
            return Err(SlotError::User(of_user));
        }
        *open.sessions.entry(session).or_default() += 1;
        *open.users.entry(user.to_owned()).or_default() += 1;
        Ok(Slot {
            slots: self.clone(),
            session,
            user: user.to_owned(),
        })
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
        release(&mut open.sessions, &self.session);
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
        let slots = Slots::new(2, 3);
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
}
