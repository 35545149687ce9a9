//! One open stream: what it replays, when it resets, how it catches up, and when it
//! ends. The API only turns its items into Server-Sent Events.

use std::sync::Arc;

use futures_util::Stream;
use ruma::OwnedUserId;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{Live, LiveError, LiveEvent, Replay, Signal, StreamLog};

/// What an open stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveItem {
    /// The next event of the user's stream.
    Event(Arc<LiveEvent>),
    /// The client's cursor is older than what is kept: it must refetch. Carries the
    /// newest id, so a reconnect resumes from there.
    Reset { latest: Option<String> },
}

impl Live {
    /// Opens `user_id`'s stream, replaying what came after `cursor` (the client's
    /// `Last-Event-ID`) first. It ends when `stop` is cancelled: when its session ends
    /// or the daemon stops.
    pub async fn open(
        &self,
        user_id: OwnedUserId,
        cursor: Option<String>,
        stop: CancellationToken,
    ) -> Result<impl Stream<Item = LiveItem> + Send + use<>, LiveError> {
        // Subscribed before anything is read: whatever is appended after the reads
        // below reaches the channel, and what the channel brings that a read already
        // covered is skipped (`is_after`).
        let mut live = self.hub.subscribe(&user_id);
        let (cursor, replay) = match cursor {
            Some(cursor) => {
                let replay = match self.log.replay(&user_id, &cursor).await? {
                    // A cursor past the newest entry (the database or Redis was restored
                    // or wiped since): what it names is gone, and waiting for entries
                    // after it would send nothing for a long time.
                    Replay::Events(events)
                        if events.is_empty() && self.is_future(&user_id, &cursor).await? =>
                    {
                        Replay::Reset
                    }
                    replay => replay,
                };
                (Some(cursor), replay)
            }
            // Without a cursor the stream starts where the user's stream is now, as if
            // the client had sent that id; nothing is there to replay, and a stream
            // flooded before its first event catches up from there.
            None => (self.log.latest(&user_id).await?, Replay::Events(Vec::new())),
        };
        let log = self.log.clone();
        Ok(async_stream::stream! {
            let mut last = cursor;
            let mut pending = Some(replay);
            loop {
                // Send what a replay found (at the start, or after falling behind).
                match pending.take() {
                    Some(Replay::Events(missed)) => {
                        for event in missed {
                            last = Some(event.id.clone());
                            yield LiveItem::Event(Arc::new(event));
                        }
                    }
                    Some(Replay::Reset) => {
                        last = log.latest(&user_id).await.unwrap_or(None);
                        yield LiveItem::Reset { latest: last.clone() };
                    }
                    None => {}
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    received = live.recv() => match received {
                        Ok(Signal::Event(event)) => {
                            if last.as_deref().is_some_and(|l| !log.is_after(&event.id, l)) {
                                continue; // Already sent by a replay.
                            }
                            last = Some(event.id.clone());
                            yield LiveItem::Event(event);
                        }
                        // This stream fell behind, or entries may have been missed:
                        // catch up from the log itself.
                        Ok(Signal::Resync) | Err(RecvError::Lagged(_)) => {
                            pending = Some(catch_up(&*log, &user_id, last.as_deref()).await);
                        }
                        Err(RecvError::Closed) => break,
                    },
                }
            }
        })
    }
}

impl Live {
    /// Whether `cursor` is after the newest entry of the user's stream.
    async fn is_future(&self, user_id: &ruma::UserId, cursor: &str) -> Result<bool, LiveError> {
        let latest = self.log.latest(user_id).await?;
        Ok(latest.is_none_or(|latest| self.log.is_after(cursor, &latest)))
    }
}

/// What the user missed after `last`; everything kept when the user's stream was
/// empty when this one opened and nothing was sent since.
async fn catch_up(log: &dyn StreamLog, user_id: &ruma::UserId, last: Option<&str>) -> Replay {
    match last {
        Some(last) => log.replay(user_id, last).await.unwrap_or(Replay::Reset),
        None => match log.replay_all(user_id).await {
            Ok(events) => Replay::Events(events),
            Err(_) => Replay::Reset,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use futures_util::StreamExt;
    use ruma::UserId;

    use super::*;
    use crate::live::{DatabaseLog, Delivery, StreamKind};
    use crate::store::UserStreams;
    use crate::store::memory::MemoryStore;

    fn user(n: usize) -> OwnedUserId {
        UserId::parse(format!("@u{n}:x")).expect("user id")
    }

    fn to(user: &UserId, key: &str) -> Delivery {
        Delivery {
            user_id: user.to_owned(),
            dedup_key: key.to_owned(),
            place: None,
            kind: StreamKind::Message,
            payload: format!(r#"{{"key":"{key}"}}"#).into(),
        }
    }

    fn live() -> (Arc<MemoryStore>, Live) {
        let store = Arc::new(MemoryStore::default());
        (store.clone(), Live::new(Arc::new(DatabaseLog::new(store))))
    }

    async fn open(
        live: &Live,
        user: &UserId,
        cursor: Option<&str>,
    ) -> std::pin::Pin<Box<dyn Stream<Item = LiveItem> + Send>> {
        let stream = live
            .open(
                user.to_owned(),
                cursor.map(str::to_owned),
                CancellationToken::new(),
            )
            .await
            .expect("open");
        Box::pin(stream)
    }

    fn ids(items: &[LiveItem]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                LiveItem::Event(e) => e.id.clone(),
                LiveItem::Reset { latest } => format!("reset {latest:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_reconnect_replays_what_was_missed_then_goes_on_live() {
        let (_, live) = live();
        let alice = user(1);
        live.deliver(&[to(&alice, "a"), to(&alice, "b"), to(&alice, "c")])
            .await
            .expect("deliver");
        let mut stream = open(&live, &alice, Some("1")).await;
        let replayed = [stream.next().await, stream.next().await];
        let replayed: Vec<_> = replayed.into_iter().map(|i| i.expect("an item")).collect();
        assert_eq!(ids(&replayed), ["2", "3"]);
        live.deliver(&[to(&alice, "d"), to(&alice, "c")])
            .await
            .expect("deliver");
        let next = stream.next().await.expect("an item");
        assert_eq!(ids(&[next]), ["4"], "live, and `c` only once");
    }

    #[tokio::test]
    async fn a_cursor_older_than_what_is_kept_gets_a_reset_with_the_newest_id() {
        let (store, live) = live();
        let alice = user(1);
        for key in ["a", "b", "c"] {
            live.deliver(&[to(&alice, key)]).await.expect("deliver");
        }
        store.prune(i64::MAX, 1).await.expect("prune");
        for cursor in ["1", "not-an-id"] {
            let mut stream = open(&live, &alice, Some(cursor)).await;
            let first = stream.next().await.expect("an item");
            assert_eq!(
                first,
                LiveItem::Reset {
                    latest: Some("3".into())
                },
                "cursor {cursor}"
            );
        }
        let mut kept = open(&live, &alice, Some("3")).await;
        live.deliver(&[to(&alice, "d")]).await.expect("deliver");
        assert_eq!(ids(&[kept.next().await.expect("an item")]), ["4"]);
    }

    #[tokio::test]
    async fn a_stream_that_falls_behind_catches_up_from_the_log_without_repeats() {
        let (_, live) = live();
        let alice = user(1);
        live.deliver(&[to(&alice, "start")]).await.expect("deliver");
        let mut stream = open(&live, &alice, Some("1")).await;
        // More than a channel holds, before the stream reads any.
        let keys: Vec<String> = (0..600).map(|i| format!("k{i}")).collect();
        for key in &keys {
            live.deliver(&[to(&alice, key)]).await.expect("deliver");
        }
        let mut got = Vec::new();
        while got.len() < keys.len() {
            got.push(stream.next().await.expect("an item"));
        }
        let expected: Vec<String> = (2..=601).map(|id: i64| id.to_string()).collect();
        assert_eq!(ids(&got), expected, "every entry once, in order");
    }

    #[tokio::test]
    async fn a_delivery_larger_than_a_transaction_reaches_the_stream_once_in_order() {
        let (_, live) = live();
        let alice = user(1);
        let mut stream = open(&live, &alice, None).await;
        // More than one transaction's worth, one key given again in a later one.
        let mut deliveries: Vec<Delivery> =
            (0..12_000).map(|i| to(&alice, &format!("k{i}"))).collect();
        deliveries.insert(11_000, to(&alice, "k10"));
        live.deliver(&deliveries).await.expect("deliver");
        let mut got = Vec::new();
        while got.len() < 12_000 {
            got.push(stream.next().await.expect("an item"));
        }
        let expected: Vec<String> = (1..=12_000).map(|id: i64| id.to_string()).collect();
        assert_eq!(ids(&got), expected, "every entry once, in order");
        let LiveItem::Event(last) = &got[11_999] else {
            panic!("an event")
        };
        assert!(last.payload.contains("k11999"), "{}", last.payload);
    }

    #[tokio::test]
    async fn a_new_stream_flooded_before_its_first_read_gets_everything_not_a_reset() {
        for earlier in [0, 1] {
            let (_, live) = live();
            let alice = user(1);
            for i in 0..earlier {
                live.deliver(&[to(&alice, &format!("old{i}"))])
                    .await
                    .expect("deliver");
            }
            let mut stream = open(&live, &alice, None).await;
            let keys: Vec<String> = (0..600).map(|i| format!("k{i}")).collect();
            for key in &keys {
                live.deliver(&[to(&alice, key)]).await.expect("deliver");
            }
            let mut got = Vec::new();
            while got.len() < keys.len() {
                let next = tokio::time::timeout(Duration::from_secs(10), stream.next());
                let item = next
                    .await
                    .expect("an item within 10 s, not a reset and silence");
                got.push(item.expect("an item"));
            }
            let expected: Vec<String> = (earlier + 1..=earlier + 600)
                .map(|id: i64| id.to_string())
                .collect();
            assert_eq!(
                ids(&got),
                expected,
                "what came after the stream opened, once, in order"
            );
        }
    }

    /// A log that delivers one event right after a stream reads where it starts, before
    /// the stream is handed back.
    struct DeliversAfterLatest {
        inner: DatabaseLog,
        live: std::sync::OnceLock<Live>,
        armed: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl StreamLog for DeliversAfterLatest {
        async fn append(&self, d: &[Delivery]) -> Result<Vec<LiveEvent>, LiveError> {
            self.inner.append(d).await
        }
        async fn replay(&self, user_id: &UserId, cursor: &str) -> Result<Replay, LiveError> {
            self.inner.replay(user_id, cursor).await
        }
        async fn replay_all(&self, user_id: &UserId) -> Result<Vec<LiveEvent>, LiveError> {
            self.inner.replay_all(user_id).await
        }
        async fn latest(&self, user_id: &UserId) -> Result<Option<String>, LiveError> {
            let latest = self.inner.latest(user_id).await;
            if self.armed.swap(false, Ordering::SeqCst) {
                let live = self.live.get().expect("the live handle");
                live.deliver(&[to(user_id, "meanwhile")]).await?;
            }
            latest
        }
        fn is_after(&self, a: &str, b: &str) -> bool {
            self.inner.is_after(a, b)
        }
        async fn prune(&self) -> Result<(), LiveError> {
            self.inner.prune().await
        }
        async fn relay(
            &self,
            hub: Arc<super::super::Hub>,
            stop: CancellationToken,
        ) -> Result<(), LiveError> {
            self.inner.relay(hub, stop).await
        }
    }

    #[tokio::test]
    async fn an_event_delivered_as_a_stream_opens_reaches_it_once() {
        let log = Arc::new(DeliversAfterLatest {
            inner: DatabaseLog::new(Arc::new(MemoryStore::default())),
            live: std::sync::OnceLock::new(),
            armed: false.into(),
        });
        let live = Live::new(log.clone());
        assert!(log.live.set(live.clone()).is_ok());
        let alice = user(1);
        live.deliver(&[to(&alice, "before")])
            .await
            .expect("deliver");
        log.armed.store(true, Ordering::SeqCst);
        let mut stream = open(&live, &alice, None).await;
        live.deliver(&[to(&alice, "after")]).await.expect("deliver");
        let mut got = Vec::new();
        for _ in 0..2 {
            let next = tokio::time::timeout(Duration::from_secs(10), stream.next());
            got.push(next.await.expect("an item within 10 s").expect("an item"));
        }
        assert_eq!(
            ids(&got),
            ["2", "3"],
            "not `before`; `meanwhile` once, then `after`"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_event_wakes_only_its_recipient_among_2000_open_streams() {
        let (_, live) = live();
        let received = Arc::new(AtomicUsize::new(0));
        let (first_tx, mut first_rx) = tokio::sync::mpsc::channel(1);
        let mut tasks = Vec::new();
        for n in 0..2000 {
            let mut stream = open(&live, &user(n), None).await;
            let (received, first_tx) = (received.clone(), first_tx.clone());
            tasks.push(tokio::spawn(async move {
                while let Some(item) = stream.next().await {
                    received.fetch_add(1, Ordering::SeqCst);
                    let _ = first_tx.send((n, item)).await;
                }
            }));
        }
        assert_eq!(live.hub.listening(), 2000);
        live.deliver(&[to(&user(1234), "hello")])
            .await
            .expect("deliver");
        let (n, item) = first_rx.recv().await.expect("a delivery");
        assert_eq!(n, 1234);
        assert!(matches!(item, LiveItem::Event(e) if e.payload.contains("hello")));
        assert_eq!(live.wakeups(), 1, "one stream woken, not 2000");
        assert_eq!(received.load(Ordering::SeqCst), 1);
        for task in tasks {
            task.abort();
        }
    }
}
