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

/// The most a channel message holds, unless one block is larger: Redis's default
/// limits on a subscriber's pending output are 8 MB for a minute, 32 MB at once.
pub(super) const MESSAGE_MAX: usize = 1 << 20;

/// Joins blocks (see [`Wire::parse_all`]) into channel messages of at most
/// [`MESSAGE_MAX`] bytes each; a larger block is a message of its own.
pub(super) fn join_blocks(blocks: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut messages: Vec<String> = Vec::new();
    for block in blocks {
        match messages.last_mut() {
            Some(message) if message.len() + 2 + block.len() <= MESSAGE_MAX => {
                message.push_str("\n\n");
                message.push_str(&block);
            }
            _ => messages.push(block),
        }
    }
    messages
}

impl Wire {
    /// One block: `kind`, `payload` and an entry per (user, id).
    pub(super) fn block<'a>(
        kind: StreamKind,
        payload: &str,
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> String {
        let mut block = String::with_capacity(kind.as_str().len() + 1 + payload.len() + 64);
        block.push_str(kind.as_str());
        block.push('\n');
        block.push_str(payload);
        for (user, id) in entries {
            block.push('\n');
            block.push_str(user);
            block.push(' ');
            block.push_str(id);
        }
        block
    }

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
    fn blocks_join_into_messages_of_at_most_a_mib_that_parse_back() {
        let big = "x".repeat(400_000);
        let blocks: Vec<String> = (0..5)
            .map(|n| {
                let payload = format!(r#"{{"n":{n},"body":"{big}"}}"#);
                Wire::block(StreamKind::Message, &payload, [("@a:x", "7-0")])
            })
            .chain([Wire::block(
                StreamKind::Room,
                "{}",
                [("@b:x", "8-0"), ("@c:x", "8-0")],
            )])
            .collect();
        let messages = join_blocks(blocks.clone());
        assert_eq!(
            messages.len(),
            3,
            "two blocks of 400 KB a message, the small one with the last"
        );
        assert!(messages.iter().all(|m| m.len() <= MESSAGE_MAX));
        let parsed: Vec<Wire> = messages
            .iter()
            .flat_map(|m| Wire::parse_all(m).expect("parses"))
            .collect();
        assert_eq!(parsed.len(), 6);
        assert_eq!(parsed[4].entries, [entry("@a:x", "7-0")]);
        assert!(parsed[4].payload.starts_with(r#"{"n":4,"#));
        assert_eq!(parsed[5].kind, StreamKind::Room);
        assert_eq!(
            parsed[5].entries,
            [entry("@b:x", "8-0"), entry("@c:x", "8-0")]
        );
        let huge = "y".repeat(MESSAGE_MAX + 1);
        let alone = join_blocks([
            Wire::block(StreamKind::Message, &huge, [("@a:x", "9-0")]),
            blocks[5].clone(),
        ]);
        assert_eq!(alone.len(), 2, "a block over a MiB is a message of its own");
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
