//! One round of feeding: the events of a batch applied to the room index, and the
//! live deliveries written for them at the end of the round, in few writes.

use ruma::{EventId, OwnedEventId, OwnedUserId};

use super::{FeedError, Ingest};
use crate::live::{Delivery, StreamKind};

/// What one round of feeding has done and has still to write.
#[derive(Default)]
pub(super) struct Round {
    /// The places in the log of the events applied.
    pub(super) applied: Vec<i64>,
    /// Each event's deliveries, in order.
    pub(super) deliveries: Vec<(OwnedEventId, Vec<Delivery>)>,
}

impl Round {
    pub(super) fn add(&mut self, event_id: &EventId, deliveries: Vec<Delivery>) {
        if !deliveries.is_empty() {
            self.deliveries.push((event_id.to_owned(), deliveries));
        }
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
            kind,
            payload: payload.clone(),
        })
        .collect())
}

impl Ingest {
    /// Writes a round's deliveries all at once, or, if that fails, event by event, so
    /// an event that keeps failing is found and, in time, skipped. On a failure
    /// `round.applied` is emptied: the round is fed again, and feeding again delivers
    /// nothing twice. (A room's last message in `/rooms` is read from the event log,
    /// where it is from its recording on, so a client that has an event finds it
    /// there too.)
    pub(super) async fn flush(&self, round: &mut Round) -> Result<(), FeedError> {
        let all: Vec<Delivery> = round
            .deliveries
            .iter()
            .flat_map(|(_, d)| d.clone())
            .collect();
        if self.live.deliver(&all).await.is_ok() {
            return Ok(());
        }
        for (event_id, deliveries) in &round.deliveries {
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
