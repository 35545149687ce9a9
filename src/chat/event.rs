//! Matrix room events, read once into the few kinds ChatSender acts on.
//!
//! Every event the daemon looks at comes through here: those Synapse pushes (first
//! their envelope, for the event log; later their content, for the feed), a room's
//! state when a user joins, and history pages. Content is read with ruma's types (a
//! message's type and body, all it shows, on their own); an event whose content those
//! refuse still counts (a message shows as `other`), so one odd event never stops the
//! rest.

use ruma::events::AnyTimelineEvent;
use ruma::events::room::member::{MembershipState, RoomMemberEventContent};
use ruma::events::room::name::RoomNameEventContent;
use ruma::serde::Raw;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::store::{EventRecord, MembershipRecord, RoomUpdate};

/// Longest event type the event log stores (a longer one would be cut).
const MAX_TYPE_LEN: usize = 255;

/// Why an event was not taken as a room event.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a valid room event: {0}")]
    Invalid(#[from] serde_json::Error),
    #[error("its type is over {MAX_TYPE_LEN} bytes")]
    TypeTooLong,
}

/// What every room event has around its content.
#[derive(Deserialize)]
struct Envelope {
    event_id: OwnedEventId,
    room_id: OwnedRoomId,
    sender: OwnedUserId,
    #[serde(rename = "type")]
    event_type: String,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    state_key: Option<String>,
}

/// Reads an event's envelope for the event log; its content is read when it is fed.
pub fn envelope<T>(raw: &Raw<T>) -> Result<EventRecord, EnvelopeError> {
    let e: Envelope = serde_json::from_str(raw.json().get())?;
    if e.event_type.len() > MAX_TYPE_LEN {
        return Err(EnvelopeError::TypeTooLong);
    }
    Ok(EventRecord {
        event_id: e.event_id,
        room_id: e.room_id,
        sender: e.sender,
        event_type: e.event_type,
        state_key: e.state_key,
        origin_server_ts: i64::from(e.origin_server_ts.get()),
        json: raw.clone().cast_unchecked::<AnyTimelineEvent>(),
    })
}

/// A room event ChatSender understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEvent {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    /// Milliseconds since the Unix epoch (the homeserver's timestamp).
    pub ts: i64,
    pub content: Content,
}

/// What an event says, for ChatSender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// `m.room.member`: `target`'s membership changed.
    Member(Member),
    /// `m.room.name`; an empty name clears it.
    Name(Option<String>),
    /// `m.room.encryption`: the room is encrypted from now on.
    Encryption,
    /// A message (`m.room.message`, `m.room.encrypted`, `m.sticker`).
    Message { kind: MessageKind, body: String },
    /// Anything else.
    Other,
}

/// A membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub target: OwnedUserId,
    pub membership: MembershipState,
    pub display_name: Option<String>,
    pub is_direct: Option<bool>,
    /// The room's name as an invite's stripped state gives it (`None`: not given).
    pub invite_name: Option<Option<String>>,
    /// Whether an invite's stripped state says the room is encrypted.
    pub invite_encrypted: bool,
}

/// How a message shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Text,
    Notice,
    Emote,
    /// Encrypted: the body is empty (the web client says "not supported yet").
    Encrypted,
    /// Anything else (images, files, stickers …): the body is their description.
    Other,
}

/// The parts of an event past its envelope, each read on its own so that an odd one
/// spoils nothing else.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    unsigned: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Unsigned<'a> {
    #[serde(borrow, default)]
    invite_room_state: Vec<&'a RawValue>,
}

/// A stripped state event sent along with an invite.
#[derive(Deserialize)]
struct Stripped<'a> {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(borrow)]
    content: &'a RawValue,
}

fn content_as<T: serde::de::DeserializeOwned>(content: Option<&RawValue>) -> Option<T> {
    serde_json::from_str(content?.get()).ok()
}

/// A content field read on its own, for content ruma's type refuses as a whole.
fn field(content: Option<&RawValue>, name: &str) -> Value {
    content_as::<Value>(content).map_or(Value::Null, |mut c| c[name].take())
}

/// The stripped state sent along with an invite; unreadable entries are left out.
fn invite_state<'a>(unsigned: Option<&'a RawValue>) -> Vec<Stripped<'a>> {
    let Some(unsigned) = unsigned else {
        return Vec::new();
    };
    let entries = serde_json::from_str::<Unsigned<'a>>(unsigned.get())
        .map(|u| u.invite_room_state)
        .unwrap_or_default();
    entries
        .into_iter()
        .filter_map(|e| serde_json::from_str(e.get()).ok())
        .collect()
}

fn name(content: Option<&RawValue>) -> Option<String> {
    content_as::<RoomNameEventContent>(content)
        .map(|c| c.name)
        .filter(|n| !n.is_empty())
}

impl RoomEvent {
    /// Reads a recorded event's content.
    pub fn from_record(record: &EventRecord) -> Self {
        let body: Option<Body<'_>> = serde_json::from_str(record.json.json().get()).ok();
        let (content, unsigned) = body.map_or((None, None), |b| (b.content, b.unsigned));
        let state_key = record.state_key.as_deref();
        let content = match (record.event_type.as_str(), state_key) {
            ("m.room.member", Some(target)) => match UserId::parse(target) {
                Ok(target) => Content::Member(member(target, content, unsigned)),
                Err(_) => Content::Other,
            },
            ("m.room.name", Some("")) => Content::Name(name(content)),
            ("m.room.encryption", Some("")) => Content::Encryption,
            ("m.room.message", None) => message(content),
            ("m.room.encrypted", None) => Content::Message {
                kind: MessageKind::Encrypted,
                body: String::new(),
            },
            ("m.sticker", None) => Content::Message {
                kind: MessageKind::Other,
                body: field(content, "body")
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            },
            _ => Content::Other,
        };
        Self {
            event_id: record.event_id.clone(),
            room_id: record.room_id.clone(),
            sender: record.sender.clone(),
            ts: record.origin_server_ts,
            content,
        }
    }

    /// Reads any event from the homeserver; `None` if it is not a room event.
    pub fn parse<T>(raw: &Raw<T>) -> Option<Self> {
        envelope(raw).ok().map(|record| Self::from_record(&record))
    }

    /// The changes to the room's record this event makes (none for most events).
    pub fn room_update(&self) -> RoomUpdate {
        match &self.content {
            Content::Name(name) => RoomUpdate {
                name: Some(name.clone()),
                ..RoomUpdate::default()
            },
            Content::Encryption => RoomUpdate {
                encrypted: Some(true),
                ..RoomUpdate::default()
            },
            _ => RoomUpdate::default(),
        }
    }

    /// The membership this event records, if it is a membership change.
    pub fn membership(&self) -> Option<MembershipRecord> {
        let Content::Member(m) = &self.content else {
            return None;
        };
        Some(MembershipRecord {
            room_id: self.room_id.clone(),
            user_id: m.target.clone(),
            membership: m.membership.clone(),
            display_name: m.display_name.clone(),
            sender: self.sender.clone(),
        })
    }
}

fn member(target: OwnedUserId, content: Option<&RawValue>, unsigned: Option<&RawValue>) -> Member {
    let stripped = invite_state(unsigned);
    let stripped = |event_type: &str| {
        stripped
            .iter()
            .find(|e| e.event_type == event_type)
            .map(|e| e.content)
    };
    let (membership, display_name, is_direct) = match content_as::<RoomMemberEventContent>(content)
    {
        Some(c) => (c.membership, c.displayname, c.is_direct),
        // Only the membership matters; one Synapse sent unreadable counts as left.
        None => (
            field(content, "membership")
                .as_str()
                .map_or(MembershipState::Leave, MembershipState::from),
            field(content, "displayname").as_str().map(str::to_owned),
            field(content, "is_direct").as_bool(),
        ),
    };
    Member {
        target,
        membership,
        display_name,
        is_direct,
        invite_name: stripped("m.room.name").map(|c| name(Some(c))),
        invite_encrypted: stripped("m.room.encryption").is_some(),
    }
}

/// The two fields of a message's content ChatSender shows, each read on its own, so
/// that one odd field elsewhere (say, in its mentions) spoils neither. They are all a
/// message needs, so ruma's full content type (which reads the whole content into a
/// tree first, and every field of it) is not asked.
#[derive(Deserialize)]
struct MessageFields<'a> {
    #[serde(borrow)]
    msgtype: Option<&'a RawValue>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
}

fn message(content: Option<&RawValue>) -> Content {
    let fields = content.and_then(|c| serde_json::from_str::<MessageFields<'_>>(c.get()).ok());
    let text = |v: Option<&RawValue>| {
        v.and_then(|v| serde_json::from_str::<std::borrow::Cow<'_, str>>(v.get()).ok())
    };
    let (msgtype, body) = fields.map_or((None, None), |f| (text(f.msgtype), text(f.body)));
    let kind = match msgtype.as_deref() {
        Some("m.text") => MessageKind::Text,
        Some("m.notice") => MessageKind::Notice,
        Some("m.emote") => MessageKind::Emote,
        _ => MessageKind::Other,
    };
    let body = body.map(std::borrow::Cow::into_owned).unwrap_or_default();
    Content::Message { kind, body }
}

/// What Synapse pushes besides room events, as ChatSender uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ephemeral {
    /// Who is typing in a room now.
    Typing {
        room_id: OwnedRoomId,
        user_ids: Vec<OwnedUserId>,
    },
    /// `user_id` has read the room up to `event_id` (a public `m.read` receipt).
    Receipt {
        room_id: OwnedRoomId,
        user_id: OwnedUserId,
        event_id: OwnedEventId,
    },
}

/// A pushed ephemeral event's outside.
#[derive(Deserialize)]
struct EphemeralEvent {
    #[serde(rename = "type")]
    event_type: String,
    room_id: Option<OwnedRoomId>,
    #[serde(default)]
    content: Value,
}

/// Reads a pushed ephemeral event (one receipt event can hold several receipts);
/// presence, private receipts and anything unreadable give nothing.
pub fn ephemeral<T>(raw: &Raw<T>) -> Vec<Ephemeral> {
    let Ok(event) = serde_json::from_str::<EphemeralEvent>(raw.json().get()) else {
        return Vec::new();
    };
    let Some(room_id) = event.room_id else {
        return Vec::new();
    };
    let users = |v: &Value| -> Vec<OwnedUserId> {
        let ids = v.as_array().map(Vec::as_slice).unwrap_or_default();
        ids.iter()
            .filter_map(|u| UserId::parse(u.as_str()?).ok())
            .collect()
    };
    match event.event_type.as_str() {
        "m.typing" => vec![Ephemeral::Typing {
            user_ids: users(&event.content["user_ids"]),
            room_id,
        }],
        "m.receipt" => {
            let Some(by_event) = event.content.as_object() else {
                return Vec::new();
            };
            let mut receipts = Vec::new();
            for (event_id, kinds) in by_event {
                let Ok(event_id) = OwnedEventId::try_from(event_id.as_str()) else {
                    continue;
                };
                let readers = kinds["m.read"].as_object().into_iter().flatten();
                for (user_id, _) in readers {
                    if let Ok(user_id) = UserId::parse(user_id) {
                        receipts.push(Ephemeral::Receipt {
                            room_id: room_id.clone(),
                            user_id,
                            event_id: event_id.clone(),
                        });
                    }
                }
            }
            receipts
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn raw(event: Value) -> Raw<AnyTimelineEvent> {
        Raw::from_json(serde_json::value::to_raw_value(&event).expect("json"))
    }

    fn event(event_type: &str, state_key: Option<&str>, content: Value) -> Raw<AnyTimelineEvent> {
        let mut e = json!({"type": event_type, "event_id": "$e", "room_id": "!r:x",
            "sender": "@a:x", "origin_server_ts": 5, "content": content});
        if let Some(key) = state_key {
            e["state_key"] = json!(key);
        }
        raw(e)
    }

    fn content(raw: Raw<AnyTimelineEvent>) -> Content {
        RoomEvent::parse(&raw).expect("a room event").content
    }

    fn message(kind: MessageKind, body: &str) -> Content {
        Content::Message {
            kind,
            body: body.into(),
        }
    }

    #[test]
    fn kinds_follow_type_and_msgtype() {
        let m = |msgtype: &str| {
            content(event(
                "m.room.message",
                None,
                json!({"msgtype": msgtype, "body": "b"}),
            ))
        };
        assert_eq!(m("m.text"), message(MessageKind::Text, "b"));
        assert_eq!(m("m.notice"), message(MessageKind::Notice, "b"));
        assert_eq!(m("m.emote"), message(MessageKind::Emote, "b"));
        assert_eq!(m("org.example.custom"), message(MessageKind::Other, "b"));
        assert_eq!(
            content(event(
                "m.room.encrypted",
                None,
                json!({"algorithm": "m.megolm.v1"})
            )),
            message(MessageKind::Encrypted, "")
        );
        assert_eq!(
            content(event(
                "m.room.message",
                None,
                json!({"msgtype": 5, "body": ["x"]})
            )),
            message(MessageKind::Other, ""),
            "unreadable content is still a message"
        );
        let odd = json!({"msgtype": "m.text", "body": "b", "m.mentions": {"user_ids": [5]}});
        assert_eq!(
            content(event("m.room.message", None, odd)),
            message(MessageKind::Text, "b"),
            "one odd field keeps a text a text"
        );
        let escaped = json!({"msgtype": "m.text", "body": "line\none \"quoted\" \u{e9}"});
        assert_eq!(
            content(event("m.room.message", None, escaped)),
            message(MessageKind::Text, "line\none \"quoted\" \u{e9}"),
            "escapes in the body are read"
        );
        let image = json!({"msgtype": "m.image", "body": "cat.png", "url": "mxc://x/y"});
        assert_eq!(
            content(event("m.room.message", None, image)),
            message(MessageKind::Other, "cat.png"),
            "anything else shows its description"
        );
        assert_eq!(
            content(event("m.room.message", None, json!({"msgtype": "m.text"}))),
            message(MessageKind::Text, ""),
            "a text without a body is an empty text"
        );
        assert_eq!(
            content(event("m.room.topic", Some(""), json!({}))),
            Content::Other
        );
        assert_eq!(
            content(event("m.room.message", Some("x"), json!({"body": "b"}))),
            Content::Other,
            "a state event is never a message"
        );
    }

    #[test]
    fn an_empty_room_name_is_no_name() {
        let name = |c: Value| content(event("m.room.name", Some(""), c));
        assert_eq!(
            name(json!({"name": "Tea"})),
            Content::Name(Some("Tea".into()))
        );
        assert_eq!(name(json!({"name": ""})), Content::Name(None));
        assert_eq!(name(json!({})), Content::Name(None));
    }

    #[test]
    fn an_invite_carries_the_rooms_stripped_state() {
        let mut invite = json!({"type": "m.room.member", "event_id": "$e", "room_id": "!r:x",
            "sender": "@a:x", "origin_server_ts": 5, "state_key": "@b:x",
            "content": {"membership": "invite", "is_direct": true, "displayname": "B"},
            "unsigned": {"invite_room_state": [
                {"type": "m.room.name", "state_key": "", "sender": "@a:x", "content": {"name": "Tea"}},
                {"type": "m.room.encryption", "state_key": "", "sender": "@a:x",
                 "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]}});
        let Content::Member(m) = content(raw(invite.clone())) else {
            panic!("a membership")
        };
        assert_eq!(m.membership, MembershipState::Invite);
        assert_eq!(m.target.as_str(), "@b:x");
        assert_eq!(m.display_name.as_deref(), Some("B"));
        assert_eq!(m.is_direct, Some(true));
        assert_eq!(m.invite_name, Some(Some("Tea".into())));
        assert!(m.invite_encrypted);
        invite["content"] = json!({"membership": "join", "displayname": 7, "reason": {}});
        invite["unsigned"]["invite_room_state"][1] = json!("not an event");
        let Content::Member(m) = content(raw(invite.clone())) else {
            panic!("a membership")
        };
        assert_eq!(
            m.membership,
            MembershipState::Join,
            "odd fields keep the membership"
        );
        assert_eq!(
            m.invite_name,
            Some(Some("Tea".into())),
            "the readable stripped state"
        );
        assert!(!m.invite_encrypted);
        invite["content"] = json!({"no": "membership"});
        let Content::Member(m) = content(raw(invite)) else {
            panic!("a membership")
        };
        assert_eq!(m.membership, MembershipState::Leave);
    }

    #[test]
    fn the_store_counts_as_messages_exactly_what_the_feed_shows_as_messages() {
        for (event_type, state_key) in [
            ("m.room.message", None),
            ("m.room.message", Some("")),
            ("m.room.encrypted", None),
            ("m.sticker", None),
            ("m.room.name", Some("")),
            ("m.room.member", Some("@a:x")),
            ("m.reaction", None),
        ] {
            let record = envelope(&event(event_type, state_key, json!({"body": "b"})))
                .expect("a room event");
            let shown = matches!(
                RoomEvent::from_record(&record).content,
                Content::Message { .. }
            );
            assert_eq!(record.is_message(), shown, "{event_type} {state_key:?}");
        }
    }

    #[test]
    fn envelopes_refuse_what_is_not_a_room_event() {
        assert!(envelope(&raw(json!({"type": "m.room.message"}))).is_err());
        assert!(envelope(&raw(json!("text"))).is_err());
        let long = event(&"x".repeat(256), None, json!({}));
        assert!(matches!(envelope(&long), Err(EnvelopeError::TypeTooLong)));
        let record = envelope(&event("m.room.message", None, json!({}))).expect("envelope");
        assert_eq!(
            (record.event_id.as_str(), record.origin_server_ts),
            ("$e", 5)
        );
    }

    #[test]
    fn ephemeral_events_give_typing_and_public_receipts() {
        let typing = raw(json!({"type": "m.typing", "room_id": "!r:x",
            "content": {"user_ids": ["@a:x", "not a user"]}}));
        assert_eq!(
            ephemeral(&typing),
            [Ephemeral::Typing {
                room_id: OwnedRoomId::try_from("!r:x").expect("room"),
                user_ids: vec![UserId::parse("@a:x").expect("user")],
            }]
        );
        let receipt = raw(json!({"type": "m.receipt", "room_id": "!r:x", "content": {
            "$e": {"m.read": {"@a:x": {"ts": 1}}, "m.read.private": {"@b:x": {"ts": 1}}}}}));
        let got = ephemeral(&receipt);
        assert!(
            matches!(&got[..], [Ephemeral::Receipt { user_id, event_id, .. }]
                if user_id == "@a:x" && event_id == "$e"),
            "{got:?}"
        );
        let presence = raw(json!({"type": "m.presence", "sender": "@a:x", "content": {}}));
        assert!(ephemeral(&presence).is_empty());
    }
}
