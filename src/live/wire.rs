//! What Redis mode's live channel carries: the entries one delivery call appended.

use std::sync::Arc;

use ruma::OwnedUserId;

use super::StreamKind;

/// One payload and the entries appended for it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Wire {
    pub(super) kind: StreamKind,
    pub(super) payload: Arc<str>,
    /// Each user it was appended for, with the entry's id.
    pub(super) entries: Vec<(OwnedUserId, String)>,
}

impl Wire {
    /// A channel message: one block per payload, apart by an empty line. A block's
    /// lines are the kind, the payload (JSON, on one line, so never empty), then a
    /// line per entry, its user and its id apart by a space (neither a user id nor a
    /// stream id has one). `None` for anything else.
    pub(super) fn parse_all(message: &str) -> Option<Vec<Self>> {
        message.split("\n\n").map(Self::parse).collect()
    }

    /// One block of a message (see [`Wire::parse_all`]).
    fn parse(block: &str) -> Option<Self> {
        let mut lines = block.split('\n');
        let kind = StreamKind::parse(lines.next()?)?;
        let payload = lines.next()?;
        if payload.is_empty() {
            return None;
        }
        let entries = lines
            .map(|line| {
                let (user, id) = line.split_once(' ')?;
                Some((OwnedUserId::try_from(user).ok()?, id.to_owned()))
            })
            .collect::<Option<Vec<_>>>()?;
        if entries.is_empty() {
            return None;
        }
        Some(Self {
            kind,
            payload: payload.into(),
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: &str, id: &str) -> (OwnedUserId, String) {
        (OwnedUserId::try_from(user).expect("user id"), id.into())
    }

    #[test]
    fn a_channel_message_names_each_payloads_kind_and_entries() {
        let one = "message\n{\"body\":\"a b\\nc\"}\n@a:x 1-0\n@b:x 1-1";
        let wires = Wire::parse_all(one).expect("parses");
        assert_eq!(wires.len(), 1);
        assert_eq!(wires[0].kind, StreamKind::Message);
        assert_eq!(&*wires[0].payload, r#"{"body":"a b\nc"}"#);
        assert_eq!(
            wires[0].entries,
            [entry("@a:x", "1-0"), entry("@b:x", "1-1")]
        );

        let two = format!("{one}\n\nroom\n{{\"name\":\"n\"}}\n@c:x 2-0");
        let wires = Wire::parse_all(&two).expect("parses");
        assert_eq!(wires.len(), 2);
        assert_eq!(wires[0].entries.len(), 2);
        assert_eq!(wires[1].kind, StreamKind::Room);
        assert_eq!(&*wires[1].payload, r#"{"name":"n"}"#);
        assert_eq!(wires[1].entries, [entry("@c:x", "2-0")]);
    }

    #[test]
    fn a_channel_message_of_another_form_is_none() {
        for other in [
            "",
            "message",
            "message\n{}",
            "unknown\n{}\n@a:x 1-0",
            "message\n{}\n@a:x",
            "message\n{}\nnot-a-user 1-0",
            "message\n\n@a:x 1-0",
            "message\n{}\n@a:x 1-0\n\n",
            "message\n{}\n@a:x 1-0\n\nunknown\n{}\n@b:x 1-1",
            r#"{"users":["@a:x"],"ids":["1-0"],"kind":"message","payload":"{}"}"#,
        ] {
            assert_eq!(Wire::parse_all(other), None, "{other:?}");
        }
    }
}
