//! Typing and read receipts as Synapse pushes them: handed on from memory, to the
//! room's ChatSender members.

use std::sync::PoisonError;

use ruma::events::room::member::MembershipState;
use ruma::{OwnedUserId, RoomId};

use super::round::deliveries;
use super::{FeedError, Ingest};
use crate::chat::event::Ephemeral;
use crate::chat::message::{ReadChange, ReceiptChange, TypingChange};
use crate::live::StreamKind;
use crate::store::StoreError;

impl Ingest {
    pub(super) fn queued(&self) -> std::sync::MutexGuard<'_, Vec<Ephemeral>> {
        self.ephemeral
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands on the ephemeral data received so far; what fails is logged and dropped
    /// (it is stale by the time it could be tried again).
    pub async fn run_ephemeral(&self) {
        let queued = std::mem::take(&mut *self.queued());
        for item in queued {
            if let Err(error) = self.apply_ephemeral(&item).await {
                tracing::warn!(%error, ?item, "could not hand on ephemeral data");
            }
        }
    }

    async fn apply_ephemeral(&self, item: &Ephemeral) -> Result<(), FeedError> {
        match item {
            Ephemeral::Typing { room_id, user_ids } => {
                let change = TypingChange {
                    room_id: room_id.clone(),
                    user_ids: user_ids.clone(),
                };
                // Each report is news, even with the same typists as the one before.
                let nonce = crate::keys::encode_base64url(&rand::random::<[u8; 12]>());
                let to = self.joined(room_id).await?;
                let key = format!("typing:{nonce}");
                self.deliver(to, &key, StreamKind::Typing, &change).await
            }
            Ephemeral::Receipt {
                room_id,
                user_id,
                event_id,
            } => {
                if !self
                    .receipts
                    .set_receipt(room_id, user_id, event_id)
                    .await?
                {
                    return Ok(());
                }
                let key = format!("read:{room_id}:{user_id}:{event_id}");
                if self.namespace.contains(user_id) {
                    let read = ReadChange {
                        room_id: room_id.clone(),
                        event_id: event_id.clone(),
                    };
                    let to = vec![user_id.clone()];
                    self.deliver(to, &key, StreamKind::Read, &read).await?;
                }
                let receipt = ReceiptChange {
                    room_id: room_id.clone(),
                    user_id: user_id.clone(),
                    event_id: event_id.clone(),
                };
                let mut to = self.joined(room_id).await?;
                to.retain(|u| u != user_id);
                self.deliver(to, &key, StreamKind::Receipt, &receipt).await
            }
        }
    }

    /// ChatSender users joined to the room, from the index (for ephemeral data, which
    /// is handed on outside the feeder's lease).
    async fn joined(&self, room: &RoomId) -> Result<Vec<OwnedUserId>, StoreError> {
        let members = self.rooms.members(room, &MembershipState::Join).await?;
        Ok(members
            .into_iter()
            .map(|m| m.user_id)
            .filter(|u| self.namespace.contains(u))
            .collect())
    }

    /// Delivers `payload` to each of `to` now, once per `dedup_key`.
    async fn deliver(
        &self,
        to: Vec<OwnedUserId>,
        dedup_key: &str,
        kind: StreamKind,
        payload: &impl serde::Serialize,
    ) -> Result<(), FeedError> {
        self.live
            .deliver(&deliveries(to, dedup_key, kind, payload)?)
            .await?;
        Ok(())
    }
}
