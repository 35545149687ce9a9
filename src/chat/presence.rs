//! What a user shows of their presence in a room: how far they have read, and that
//! they are typing.

use std::time::Duration;

use ruma::events::room::member::MembershipState;
use ruma::{EventId, RoomId, UserId};

use super::message::ReadChange;
use super::{Chat, ChatError};
use crate::live::{Delivery, StreamKind};

/// How long a typing notification lasts at most, and by default.
const MAX_TYPING: Duration = Duration::from_secs(120);
const DEFAULT_TYPING: Duration = Duration::from_secs(30);

impl Chat {
    /// Moves the user's read receipt and read marker to `event_id`: others see the
    /// receipt, the user's other tabs clear the room's unread count.
    pub async fn read(
        &self,
        user: &UserId,
        room: &RoomId,
        event_id: &EventId,
    ) -> Result<(), ChatError> {
        self.require(user, room, &[MembershipState::Join]).await?;
        self.homeserver
            .set_read_markers(user, room, event_id)
            .await?;
        if self.receipts.set_receipt(room, user, event_id).await? {
            let read = ReadChange {
                room_id: room.to_owned(),
                event_id: event_id.to_owned(),
            };
            let payload = serde_json::to_string(&read).map_err(ChatError::Encode)?;
            // The same key as the homeserver's echo of this receipt: delivered once.
            let delivery = Delivery {
                user_id: user.to_owned(),
                dedup_key: format!("read:{room}:{user}:{event_id}"),
                place: None,
                kind: StreamKind::Read,
                payload: payload.into(),
            };
            self.live.deliver(&[delivery]).await?;
        }
        Ok(())
    }

    /// Shows the user as typing in the room for `timeout_ms` (default 30 s, at most
    /// 120 s), or as not typing.
    pub async fn typing(
        &self,
        user: &UserId,
        room: &RoomId,
        typing: bool,
        timeout_ms: Option<u64>,
    ) -> Result<(), ChatError> {
        self.require(user, room, &[MembershipState::Join]).await?;
        let timeout = timeout_ms.map_or(DEFAULT_TYPING, Duration::from_millis);
        if timeout.is_zero() || timeout > MAX_TYPING {
            return Err(ChatError::InvalidParam(format!(
                "timeout_ms must be 1 to {}",
                MAX_TYPING.as_millis()
            )));
        }
        let timeout = typing.then_some(timeout);
        self.homeserver.typing(user, room, timeout).await?;
        Ok(())
    }
}
