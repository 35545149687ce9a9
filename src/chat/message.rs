//! What the API and the live stream say about room events.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// A message as the web client shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Message {
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    /// The sender's display name in the room, if known.
    pub sender_name: Option<String>,
    /// The text; empty for kinds without one (`encrypted`).
    pub body: String,
    /// Milliseconds since the Unix epoch (the homeserver's timestamp).
    pub ts: i64,
    /// `text`, `notice`, `emote`, `encrypted` or `other`.
    pub kind: &'static str,
}

/// A membership change, as the live stream reports it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MembershipChange {
    pub room_id: String,
    pub user_id: String,
    pub membership: String,
    pub sender: String,
}

/// A room's name changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoomChange {
    pub room_id: String,
    pub name: Option<String>,
}

/// Whether an event of this type is shown as a message.
pub fn is_message_type(event_type: &str) -> bool {
    matches!(
        event_type,
        "m.room.message" | "m.room.encrypted" | "m.sticker"
    )
}

/// The message an event (JSON as the homeserver sends it) shows as, if it is one.
pub fn from_event_json(
    json: &str,
    sender_name: impl FnOnce(&str) -> Option<String>,
) -> Option<Message> {
    let event: Value = serde_json::from_str(json).ok()?;
    let event_type = event["type"].as_str()?;
    if !is_message_type(event_type) || event.get("state_key").is_some() {
        return None;
    }
    let content = &event["content"];
    let kind = match (event_type, content["msgtype"].as_str()) {
        ("m.room.encrypted", _) => "encrypted",
        ("m.room.message", Some("m.text")) => "text",
        ("m.room.message", Some("m.notice")) => "notice",
        ("m.room.message", Some("m.emote")) => "emote",
        _ => "other",
    };
    let sender = event["sender"].as_str()?.to_owned();
    Some(Message {
        event_id: event["event_id"].as_str()?.to_owned(),
        room_id: event["room_id"].as_str()?.to_owned(),
        sender_name: sender_name(&sender),
        sender,
        body: content["body"].as_str().unwrap_or_default().to_owned(),
        ts: event["origin_server_ts"].as_i64().unwrap_or_default(),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, content: Value) -> String {
        serde_json::json!({"type": kind, "event_id": "$e", "room_id": "!r", "sender": "@a:x",
            "origin_server_ts": 5, "content": content})
        .to_string()
    }

    #[test]
    fn kinds_follow_type_and_msgtype() {
        let kind = |t: &str, c: Value| from_event_json(&event(t, c), |_| None).map(|m| m.kind);
        assert_eq!(
            kind(
                "m.room.message",
                serde_json::json!({"msgtype": "m.text", "body": "hi"})
            ),
            Some("text")
        );
        assert_eq!(
            kind(
                "m.room.message",
                serde_json::json!({"msgtype": "m.notice", "body": "n"})
            ),
            Some("notice")
        );
        assert_eq!(
            kind(
                "m.room.message",
                serde_json::json!({"msgtype": "m.emote", "body": "e"})
            ),
            Some("emote")
        );
        assert_eq!(
            kind(
                "m.room.message",
                serde_json::json!({"msgtype": "m.image", "body": "i"})
            ),
            Some("other")
        );
        assert_eq!(
            kind(
                "m.room.encrypted",
                serde_json::json!({"algorithm": "m.megolm.v1.aes-sha2"})
            ),
            Some("encrypted")
        );
        assert_eq!(kind("m.room.topic", serde_json::json!({})), None);
        let m = from_event_json(
            &event(
                "m.room.message",
                serde_json::json!({"msgtype": "m.text", "body": "hi"}),
            ),
            |s| Some(format!("name of {s}")),
        );
        assert_eq!(
            m.map(|m| (m.body, m.sender_name, m.ts)),
            Some(("hi".into(), Some("name of @a:x".into()), 5))
        );
    }
}
