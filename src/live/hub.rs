//! One channel per user with open streams: a delivery wakes only its recipient's
//! streams, as mini-redis keys its `pub_sub` map by channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ruma::{OwnedUserId, UserId};
use tokio::sync::broadcast;

use super::LiveEvent;

/// Events one slow stream may fall behind before it catches up from the log.
const CAPACITY: usize = 32;

/// What an open stream is told.
#[derive(Debug, Clone)]
pub enum Signal {
    /// A new entry of its user's stream. Shared: the channel keeps its last
    /// `CAPACITY` signals, and each of the user's streams takes its own reference.
    Event(Arc<LiveEvent>),
    /// Entries may have been missed (the channel between daemons was lost): catch up
    /// from the log.
    Resync,
}

/// The channels of the users with open streams.
#[derive(Debug, Default)]
pub struct Hub {
    /// std `Mutex`: held only to look up or change the map, never across an await.
    users: Mutex<HashMap<OwnedUserId, broadcast::Sender<Signal>>>,
    wakeups: AtomicU64,
}

impl Hub {
    fn users(&self) -> MutexGuard<'_, HashMap<OwnedUserId, broadcast::Sender<Signal>>> {
        // Every change to the map is one insert or remove: a poisoned lock is sound.
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Listens to `user_id`'s channel until the subscription is dropped.
    pub fn subscribe(self: &Arc<Self>, user_id: &UserId) -> Subscription {
        let receiver = self
            .users()
            .entry(user_id.to_owned())
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe();
        Subscription {
            hub: self.clone(),
            user_id: user_id.to_owned(),
            receiver: Some(receiver),
        }
    }

    /// Wakes the streams of the event's user, and no others.
    pub fn publish(&self, event: LiveEvent) {
        let sender = self.users().get(&event.user_id).cloned();
        if let Some(sender) = sender {
            let woken = sender.send(Signal::Event(Arc::new(event))).unwrap_or(0);
            self.count(woken);
        }
    }

    /// Tells every open stream to catch up from the log.
    pub fn resync_all(&self) {
        let senders: Vec<_> = self.users().values().cloned().collect();
        for sender in senders {
            let woken = sender.send(Signal::Resync).unwrap_or(0);
            self.count(woken);
        }
    }

    fn count(&self, woken: usize) {
        let woken = woken as u64;
        self.wakeups.fetch_add(woken, Ordering::Relaxed);
        metrics::counter!("chatsender_live_wakeups_total").increment(woken);
    }

    /// Streams woken so far.
    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }

    /// Users with at least one open stream.
    pub fn listening(&self) -> usize {
        self.users().len()
    }
}

/// One open stream's end of its user's channel.
pub struct Subscription {
    hub: Arc<Hub>,
    user_id: OwnedUserId,
    receiver: Option<broadcast::Receiver<Signal>>,
}

impl Subscription {
    /// The next signal; `Lagged` when this stream fell more than the channel holds
    /// behind (catch up from the log).
    pub async fn recv(&mut self) -> Result<Signal, broadcast::error::RecvError> {
        match &mut self.receiver {
            Some(receiver) => receiver.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.receiver.take());
        let mut users = self.hub.users();
        if users
            .get(&self.user_id)
            .is_some_and(|s| s.receiver_count() == 0)
        {
            users.remove(&self.user_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::StreamKind;

    fn event(user: &UserId, id: u32) -> LiveEvent {
        LiveEvent {
            user_id: user.to_owned(),
            id: id.to_string(),
            kind: StreamKind::Message,
            payload: "{}".into(),
        }
    }

    #[tokio::test]
    async fn an_event_wakes_only_its_users_streams() {
        let hub = Arc::new(Hub::default());
        let (alice, bob) = (
            UserId::parse("@alice:x").expect("id"),
            UserId::parse("@bob:x").expect("id"),
        );
        let mut alice_tabs = [hub.subscribe(&alice), hub.subscribe(&alice)];
        let _bob = hub.subscribe(&bob);
        hub.publish(event(&alice, 1));
        assert_eq!(hub.wakeups(), 2, "both of Alice's streams, not Bob's");
        for tab in &mut alice_tabs {
            assert!(matches!(tab.recv().await, Ok(Signal::Event(e)) if e.id == "1"));
        }
        hub.resync_all();
        assert_eq!(hub.wakeups(), 5);
    }

    #[test]
    fn a_user_leaves_the_map_with_their_last_stream() {
        let hub = Arc::new(Hub::default());
        let alice = UserId::parse("@alice:x").expect("id");
        let first = hub.subscribe(&alice);
        let second = hub.subscribe(&alice);
        drop(first);
        assert_eq!(hub.listening(), 1);
        drop(second);
        assert_eq!(hub.listening(), 0);
        hub.publish(event(&alice, 1));
        assert_eq!(hub.wakeups(), 0, "nobody listens");
    }
}
