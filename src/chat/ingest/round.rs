//! One round of feeding: the events of a batch applied to the room index, and the
//! live deliveries written for them at the end of the round (or whenever the round
//! holds [`DELIVERY_SLICE`] of them), in few writes.

use ruma::{EventId, OwnedEventId, OwnedUserId};

use super::{FeedError, Ingest};
use crate::live::{DELIVERY_SLICE, Delivery, StreamKind};

/// What one round of feeding has done and has still to write.
#[derive(Default)]
pub(super) struct Round {
    /// The places in the log of the events applied.
    pub(super) applied: Vec<i64>,
    /// Each event's deliveries not written yet, in order.
    deliveries: Vec<(OwnedEventId, Vec<Delivery>)>,
    /// How many deliveries that is.
    held: usize,
    /// The place in the log of the event being applied.
    pub(super) place: i64,
}

impl Round {
    /// Holds the deliveries of the event at [`Round::place`].
    pub(super) fn add(&mut self, event_id: &EventId, mut deliveries: Vec<Delivery>) {
        if !deliveries.is_empty() {
            for delivery in &mut deliveries {
                delivery.place = Some(self.place);
            }
            self.held += deliveries.len();
            self.deliveries.push((event_id.to_owned(), deliveries));
        }
    }

    /// Whether the round holds enough deliveries to write them before it goes on.
    pub(super) fn is_full(&self) -> bool {
        self.held >= DELIVERY_SLICE
    }
}

/// `payload` for each of `to`, once per `dedup_key`.
pub(super) fn deliveries(
    to: Vec<OwnedUserId>,
    dedup_key: &str,
    kind: StreamKind,
    payload: &impl serde::Serialize,
) -> Result<Vec<Delivery>, FeedError> {
    let payload: std::sync::Arc<str> = serde_json::to_string(payload)?.into();
    Ok(to
        .into_iter()
        .map(|user_id| Delivery {
            user_id,
            dedup_key: dedup_key.to_owned(),
            place: None,
            kind,
            payload: payload.clone(),
        })
        .collect())
}

impl Ingest {
    /// Writes the deliveries the round holds all at once, or, if that fails, event by
    /// event, so an event that keeps failing is found and, in time, skipped. On a
    /// failure `round.applied` is emptied: the round is fed again, and feeding again
    /// delivers nothing twice. (A room's last message in `/rooms` is read from the
    /// event log, where it is from its recording on, so a client that has an event
    /// finds it there too.)
    pub(super) async fn flush(&self, round: &mut Round) -> Result<(), FeedError> {
        round.held = 0;
        let events = std::mem::take(&mut round.deliveries);
        let mut all = Vec::with_capacity(events.iter().map(|(_, d)| d.len()).sum());
        let mut each = Vec::with_capacity(events.len());
        for (event_id, deliveries) in events {
            each.push((event_id, deliveries.len()));
            all.extend(deliveries);
        }
        if self.live.deliver(&all).await.is_ok() {
            return Ok(());
        }
        let mut rest = all.as_slice();
        for (event_id, n) in &each {
            let (deliveries, after) = rest.split_at(*n);
            rest = after;
            if let Err(error) = self.live.deliver(deliveries).await {
                if self.give_up(event_id) {
                    self.skip(event_id, &FeedError::from(error));
                    continue;
                }
                round.applied.clear();
                return Err(error.into());
            }
        }
        Ok(())
    }

    pub(super) fn skip(&self, event_id: &ruma::EventId, error: &FeedError) {
        tracing::error!(
            %event_id,
            %error,
            "an event kept failing for {:?}; it stays in the history but is not fed to the live streams",
            self.give_up_after
        );
    }
}
